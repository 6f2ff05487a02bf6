/**
 * Seeded random metric workloads for the differential test: instruments of every kind across several
 * scopes, hostile label values and keys, custom and default buckets, cardinality overflow, metadata
 * conflicts. A scenario is a recipe: `views` go into the MeterProvider, `record` then drives it (or
 * `recordInRounds`, for scrapes in between).
 */
import type { Attributes, AttributeValue, Meter, MeterProvider } from '@opentelemetry/api';
import { AggregationType, InstrumentType, type ViewOptions } from '@opentelemetry/sdk-metrics';

/** mulberry32: small, fast and good enough to pick test cases reproducibly from a seed. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  subset<T>(items: readonly T[], max: number): T[] {
    const pool = [...items];
    const out: T[] = [];
    const n = this.int(Math.min(max, pool.length) + 1);
    for (let i = 0; i < n; i++) out.push(pool.splice(this.int(pool.length), 1)[0] as T);
    return out;
  }
}

export interface ScenarioOptions {
  /**
   * Stay inside what promtool's linter accepts (lower-case snake-case names without unit abbreviations,
   * label names that do not start with a digit): the exposition itself must then pass `promtool check metrics`.
   */
  readonly promtoolSafe: boolean;
  /**
   * Also Views that turn a histogram instrument into a sum or a last value (streams a reader collecting
   * histograms as deltas must add up or replace). Off by default, so the other tests keep their seeds' cases.
   */
  readonly histogramAggregations?: boolean;
}

export interface RoundOptions {
  /** Some synchronous instruments record nothing before the second round (they appear in a later scrape). */
  readonly lateInstruments: boolean;
}

/** Records one more round; `everyInstrument` makes every synchronous instrument record at least once. */
export type NextRound = (everyInstrument?: boolean) => void;

export interface Scenario {
  readonly resourceAttributes: Attributes;
  readonly views: ViewOptions[];
  record(provider: MeterProvider): void;
}

/** A generated scenario, which can also record in rounds. */
export interface RandomScenario extends Scenario {
  /**
   * Creates the instruments and records the first round as `record` does (without the late instruments'
   * points); each call of the returned function records another: a random part of each synchronous
   * instrument's series again, now and then a new series, and some instruments nothing at all.
   */
  recordInRounds(provider: MeterProvider, rng: Rng, options: RoundOptions): NextRound;
}

type Kind =
  | 'counter'
  | 'upDownCounter'
  | 'gauge'
  | 'histogram'
  | 'observableCounter'
  | 'observableUpDownCounter'
  | 'observableGauge';

const KINDS: readonly Kind[] = [
  'counter',
  'upDownCounter',
  'gauge',
  'histogram',
  'histogram',
  'observableCounter',
  'observableUpDownCounter',
  'observableGauge',
];

// No unit abbreviations, no type names, no _total/_count/_sum/_bucket: promtool lints those in names.
const WORDS = [
  'agent', 'queue', 'depth', 'jobs', 'widgets', 'requests', 'latency', 'seconds', 'bytes', 'open', 'files',
  'cache', 'hits', 'misses', 'workspace', 'builds', 'pending', 'active', 'connections', 'retries', 'alpha',
  'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'lambda', 'omega',
];
const SEPARATORS = ['.', '_', '-', '/', '..', '__'];

const SAFE_KEYS = [
  'template_name', 'agent.name', 'user-name', 'workspace name', 'http.request.method', 'k', 'region',
  'été', '日本', 'a..b', 'x_y_z', 'tenant/id', 'zone', 'shard',
];
const RESOURCE_KEYS = ['host.name', 'cloud.region', 'process.pid', 'k8s.pod.name', 'service.instance.id'];
const WILD_KEYS = ['1st', 'Upper.Case', '9', 'ümlaut-Key', '🔥', 'CamelKey'];

const LONG = 'L'.repeat(10_000);
const HOSTILE_VALUES: readonly AttributeValue[] = [
  '', 'plain', 'with "quotes"', 'back\\slash', 'new\nline', 'trailing\\', '\\n literal', '"', '\\', '\n\n',
  '\\"', LONG, 'Grüße 👋 日本語 \u202ertl', 'tab\there', 'cr\rhere', '{a="b"},=', '# not a comment',
  'lone \ud800 surrogate', ' leading and trailing ', 'le', '+Inf', 'NaN', 'unicode line\u2028sep',
  42, 1.5, -0, 1e21, true, false, ['a', 'b"c'], [1, 2], [true],
];
const SPECIALS = ['\\', '"', '\n', 'a', 'é', '👋', ' ', '{', '}', '=', ','];

const DESCRIPTIONS = [
  '', 'Plain description.', 'With a backslash \\ and\na newline.', 'Quotes "are" fine in HELP.',
  'Unicode: 日本語 👋', 'Trailing backslash \\', 'Looks like an escape: \\n',
];
const UNITS = ['', 's', 'By', '{request}', '1', 'ms', '{a\\b}', 'By/s'];

const BOUNDARY_POOL = [0, 0.001, 0.005, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100, 1800, 3600, 1e-7, 1e21];

const SCOPE_NAMES = ['@agentconn/core', 'my-lib', 'scope with space', 'quoted "scope"\\', 'ünïcødé', 'x'];
const SCOPE_VERSIONS = [undefined, '1.2.3', '0.1.0-beta', 'v"2"'];
const SCHEMA_URLS = [undefined, undefined, 'https://opentelemetry.io/schemas/1.30.0'];

function randomString(rng: Rng): string {
  let out = '';
  const n = rng.int(12);
  for (let i = 0; i < n; i++) out += rng.pick(SPECIALS);
  return out;
}

function labelValue(rng: Rng): AttributeValue {
  return rng.chance(0.3) ? randomString(rng) : rng.pick(HOSTILE_VALUES);
}

function sanitized(name: string): string {
  return name.replace(/[^a-z0-9_]/gi, '_').replace(/_{2,}/g, '_');
}

function counterValue(rng: Rng): number {
  return rng.pick([0, 1, 2, 7, 0.1, 0.2, 1e-300, 123456.789, 1e300, rng.int(1_000_000), rng.next()]);
}

function anyValue(rng: Rng): number {
  return rng.pick([
    0, -0, 1, -1, 0.1, -2.5, NaN, Infinity, -Infinity, 1e-300, -1e300, 1e21, rng.next() * 1e6 - 5e5,
    rng.int(100),
  ]);
}

function histogramValue(rng: Rng, bounds: readonly number[]): number {
  if (bounds.length > 0 && rng.chance(0.3)) return rng.pick(bounds); // exactly on a bound: inclusive upper bound
  return rng.pick([0, 0.0005, 0.003, 0.7, 3, 42, 1799.999, 3600.001, 1e6, 1e22, rng.next() * 5000, Infinity, NaN]);
}

interface InstrumentPlan {
  readonly name: string;
  readonly kind: Kind;
  readonly description: string;
  readonly unit: string;
  readonly scope: number;
  readonly boundaries: number[] | undefined;
  readonly keys: readonly string[];
  readonly points: Array<{ attributes: Attributes; values: number[] }>;
}

type RecordValue = (value: number, attributes: Attributes) => void;

export function randomScenario(rng: Rng, options: ScenarioOptions): RandomScenario {
  const keyPool = options.promtoolSafe ? SAFE_KEYS : [...SAFE_KEYS, ...WILD_KEYS];
  // One key per sanitized label name, so no series ever carries the same label twice.
  const keys: string[] = [];
  const seenLabels = new Set(['le', 'otel_scope_name', 'otel_scope_version', 'otel_scope_schema_url', 'otel_metric_overflow']);
  for (const key of keyPool) {
    const label = sanitized(key);
    if (seenLabels.has(label)) continue;
    seenLabels.add(label);
    keys.push(key);
  }

  const scopeCount = 1 + rng.int(4);
  const scopes: Array<{ name: string; version: string | undefined; schemaUrl: string | undefined }> = [];
  const scopeIds = new Set<string>();
  while (scopes.length < scopeCount) {
    const scope = { name: rng.pick(SCOPE_NAMES), version: rng.pick(SCOPE_VERSIONS), schemaUrl: rng.pick(SCHEMA_URLS) };
    const id = `${scope.name}|${scope.version ?? ''}|${scope.schemaUrl ?? ''}`;
    if (scopeIds.has(id)) continue;
    scopeIds.add(id);
    scopes.push(scope);
  }

  const plans: InstrumentPlan[] = [];
  const usedNames = new Set<string>();
  const scopedNames = new Set<string>();
  const instrumentCount = 1 + rng.int(14);
  for (let i = 0; i < instrumentCount; i++) {
    const scope = rng.int(scopes.length);
    let name: string;
    let kind: Kind;
    const earlier = plans.length > 0 && rng.chance(0.25) ? rng.pick(plans) : undefined;
    if (earlier !== undefined && earlier.scope !== scope) {
      // The same instrument name in another scope: one family, two scopes (or a TYPE conflict upstream drops).
      name = earlier.name;
      kind = rng.chance(0.8) ? earlier.kind : rng.pick(KINDS);
    } else {
      const words = rng.subset(WORDS, 3);
      if (words.length === 0) words.push(rng.pick(WORDS));
      name = words.join(rng.pick(SEPARATORS));
      if (!/^[a-z]/.test(name)) name = 'm' + name;
      // Distinct sanitized names, so no two instruments of one scope write the same series.
      if (usedNames.has(sanitized(name))) continue;
      kind = rng.pick(KINDS);
    }
    if (scopedNames.has(`${scope}|${name}`)) continue;
    scopedNames.add(`${scope}|${name}`);
    usedNames.add(sanitized(name));
    const boundaries =
      kind === 'histogram' && rng.chance(0.6)
        ? [...new Set(rng.subset(BOUNDARY_POOL, 8))].sort((a, b) => a - b)
        : undefined;
    const instrumentKeys = rng.subset(keys, 4);
    const points: InstrumentPlan['points'] = [];
    const pointCount = rng.int(9);
    for (let p = 0; p < pointCount; p++) {
      const attributes: Attributes = {};
      for (const key of instrumentKeys) if (rng.chance(0.85)) attributes[key] = labelValue(rng);
      const values: number[] = [];
      const n = 1 + rng.int(4);
      for (let v = 0; v < n; v++) {
        // Observable sums are deltas between callbacks inside the SDK: a non-finite value there turns into NaN
        // for whichever reader collects second (Inf - Inf), an SDK trait, not the exposition's.
        if (kind === 'observableCounter' || kind === 'observableUpDownCounter') values.push(rng.int(1000) / 4);
        else if (kind === 'counter') values.push(counterValue(rng));
        else if (kind === 'histogram') values.push(histogramValue(rng, boundaries ?? [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000]));
        else values.push(anyValue(rng));
      }
      points.push({ attributes, values });
    }
    plans.push({
      name,
      kind,
      description: rng.pick(DESCRIPTIONS),
      unit: rng.pick(UNITS),
      scope,
      boundaries,
      keys: instrumentKeys,
      points,
    });
  }

  const views: ViewOptions[] = [];
  for (const plan of plans) {
    const scope = scopes[plan.scope];
    if (scope === undefined) continue;
    const selector = { instrumentName: plan.name, meterName: scope.name };
    const observable = plan.kind.startsWith('observable');
    // Not on observable instruments: the SDK's overflow series of an async sum grows with each reader's
    // collect, so two readers disagree (an SDK trait, outside the exposition).
    if (!observable && plan.points.length > 2 && rng.chance(0.15)) {
      // Fewer label sets allowed than recorded: the rest fold into otel_metric_overflow="true".
      views.push({ ...selector, aggregationCardinalityLimit: 2 + rng.int(2) });
    } else if (plan.kind === 'histogram' && plan.boundaries === undefined && rng.chance(0.2)) {
      views.push({
        ...selector,
        aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [0.005, 0.5, 1, 60] } },
      });
    } else if (plan.kind === 'upDownCounter' && rng.chance(0.2)) {
      // A histogram over an instrument that may record negatives: the SDK leaves out the sum.
      views.push({
        ...selector,
        instrumentType: InstrumentType.UP_DOWN_COUNTER,
        aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [-1, 0, 1] } },
      });
    } else if (plan.kind === 'histogram' && rng.chance(0.05)) {
      // No text form upstream: HELP and TYPE untyped only.
      views.push({ ...selector, aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM } });
    } else if (plan.kind === 'counter' && rng.chance(0.1)) {
      views.push({ ...selector, aggregation: { type: AggregationType.LAST_VALUE } });
    } else if (options.histogramAggregations === true && plan.kind === 'histogram' && rng.chance(0.2)) {
      views.push({ ...selector, aggregation: { type: rng.pick([AggregationType.SUM, AggregationType.LAST_VALUE]) } });
    }
  }

  const resourceAttributes: Attributes = { 'service.name': rng.chance(0.5) ? 'agentconn' : randomString(rng) };
  // Keys of their own: with withResourceConstantLabels they join data point labels and must not collide.
  for (const key of rng.subset(RESOURCE_KEYS, 3)) resourceAttributes[key] = labelValue(rng);
  if (rng.chance(0.5)) resourceAttributes['deployment.environment'] = labelValue(rng);

  /** Creates every instrument (in plan order) and returns how to record into each synchronous one. */
  function createInstruments(provider: MeterProvider): Map<InstrumentPlan, RecordValue> {
    const meters = scopes.map((scope): Meter => {
      const meterOptions = scope.schemaUrl === undefined ? {} : { schemaUrl: scope.schemaUrl };
      return provider.getMeter(scope.name, scope.version, meterOptions);
    });
    const recorders = new Map<InstrumentPlan, RecordValue>();
    for (const plan of plans) {
      const meter = meters[plan.scope];
      if (meter === undefined) continue;
      const meta = { description: plan.description, unit: plan.unit };
      switch (plan.kind) {
        case 'counter': {
          const counter = meter.createCounter(plan.name, meta);
          recorders.set(plan, (v, attributes) => counter.add(v, attributes));
          break;
        }
        case 'upDownCounter': {
          const counter = meter.createUpDownCounter(plan.name, meta);
          recorders.set(plan, (v, attributes) => counter.add(v, attributes));
          break;
        }
        case 'gauge': {
          const gauge = meter.createGauge(plan.name, meta);
          recorders.set(plan, (v, attributes) => gauge.record(v, attributes));
          break;
        }
        case 'histogram': {
          const histogram = meter.createHistogram(
            plan.name,
            plan.boundaries === undefined ? meta : { ...meta, advice: { explicitBucketBoundaries: plan.boundaries } },
          );
          recorders.set(plan, (v, attributes) => histogram.record(v, attributes));
          break;
        }
        case 'observableCounter':
        case 'observableUpDownCounter':
        case 'observableGauge': {
          const observable =
            plan.kind === 'observableCounter'
              ? meter.createObservableCounter(plan.name, meta)
              : plan.kind === 'observableUpDownCounter'
                ? meter.createObservableUpDownCounter(plan.name, meta)
                : meter.createObservableGauge(plan.name, meta);
          // The same observations on every collect, so two readers collecting one after the other agree.
          observable.addCallback((result) => {
            for (const { attributes, values } of plan.points) result.observe(values[values.length - 1] ?? 0, attributes);
          });
          break;
        }
      }
    }
    return recorders;
  }

  function valueFor(plan: InstrumentPlan, rng: Rng): number {
    if (plan.kind === 'counter') return counterValue(rng);
    if (plan.kind === 'histogram') return histogramValue(rng, plan.boundaries ?? [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000]);
    return anyValue(rng);
  }

  return {
    resourceAttributes,
    views,
    record(provider: MeterProvider): void {
      for (const [plan, record] of createInstruments(provider)) {
        for (const { attributes, values } of plan.points) for (const v of values) record(v, attributes);
      }
    },
    recordInRounds(provider: MeterProvider, rng: Rng, roundOptions: RoundOptions): NextRound {
      const recorders = createInstruments(provider);
      const series = new Map<InstrumentPlan, Attributes[]>();
      const newSeries = (plan: InstrumentPlan): Attributes => {
        const attributes: Attributes = {};
        for (const key of plan.keys) if (rng.chance(0.85)) attributes[key] = labelValue(rng);
        series.get(plan)?.push(attributes);
        return attributes;
      };
      for (const [plan, record] of recorders) {
        series.set(plan, plan.points.map((point) => point.attributes));
        if (roundOptions.lateInstruments && rng.chance(0.3)) continue;
        for (const { attributes, values } of plan.points) for (const v of values) record(v, attributes);
        // Without late instruments every one reports in the first scrape, even one planned without points.
        if (!roundOptions.lateInstruments && plan.points.length === 0) record(valueFor(plan, rng), newSeries(plan));
      }
      return (everyInstrument = false) => {
        for (const [plan, record] of recorders) {
          const known = series.get(plan) ?? [];
          if (!everyInstrument && rng.chance(0.4)) continue;
          if (known.length === 0 || rng.chance(0.25)) newSeries(plan);
          const again = rng.subset(known, 3);
          if (again.length === 0) again.push(rng.pick(known));
          // Now and then the same series through another attributes object, its keys in another order.
          for (const attributes of again) {
            record(valueFor(plan, rng), rng.chance(0.3) ? Object.fromEntries(Object.entries(attributes).reverse()) : attributes);
          }
        }
      };
    },
  };
}
