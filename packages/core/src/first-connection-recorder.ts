import {
  metrics,
  type Attributes,
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
} from '@opentelemetry/api';
import { diagLogger, type Logger } from './logger.js';
import {
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_DESCRIPTION,
  FIRST_CONNECTION_METRIC_NAME,
  FIRST_CONNECTION_METRIC_UNIT,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  DROP_REASONS,
  SELF_METRICS,
  instrumentOptions,
  type DropReason,
  type LabelKey,
} from './metric.js';
import type { AgentFirstConnection } from './first-connection-source.js';
import type { HandledAgent } from './poller/poller-state.js';
import { durationSeconds, formatEpochMicros, toEpochMicros } from './timestamp.js';
import { validateMetricOptions, type FirstConnectionMetricOptions } from './metric-options.js';
import { exemplarLabels, FirstConnectionExemplars, seriesKey } from './exemplars.js';
import { LabelSetLimit, OVERFLOW_ATTRIBUTES } from './label-set-limit.js';

export type RecordOutcome = 'observed' | 'duplicate' | 'not_connected' | DropReason;

export interface FirstConnectionRecorderOptions extends FirstConnectionMetricOptions {
  /** The meter to create instruments on. Takes precedence over `meterProvider`. */
  readonly meter?: Meter;
  /** Default: the global provider (`metrics.getMeterProvider()`), a no-op until one is registered. */
  readonly meterProvider?: MeterProvider;
  /** Default: OpenTelemetry `diag`. */
  readonly logger?: Logger;
  /**
   * Upper bound on the agent ids remembered for observe-once; the oldest are forgotten first.
   * A poller prunes far below it; this only protects event-driven use that never prunes.
   */
  readonly maxTrackedAgents?: number;
}

/** A label set as recorded: the attributes given to the SDK and the key of its exemplars. */
interface RecordedSeries {
  readonly attributes: Attributes;
  readonly exemplarKey: string;
}

/** Label values level by level; the last level maps to the series. */
type LabelTrie = Map<string, LabelTrie | RecordedSeries>;

export const DEFAULT_MAX_TRACKED_AGENTS = 1_000_000;

/**
 * Observes `first_connected_at - created_at` exactly once per agent id into
 * `coderd_agents_first_connection_seconds`. Never throws into the caller: bad input is logged and counted.
 */
export class FirstConnectionRecorder {
  readonly #histogram: Histogram;
  readonly #observed: Counter;
  readonly #dropped: Counter;
  readonly #logger: Logger;
  readonly #labels: readonly LabelKey[];
  readonly #maxTracked: number;
  /** agent id → epoch µs of its first connection (or of when it was handled, for invalid rows). */
  #handled = new Map<string, number>();
  /**
   * Label sets seen so far, to tell when the SDK starts folding new ones into the overflow series: a trie
   * over the label values in label order (one Map per level; the last level holds the frozen attributes
   * recorded under the set, reused for all its later samples, and the key of its exemplars). A sample's
   * lookup builds no key string, and the trie shares the value strings the attributes hold anyway.
   */
  readonly #labelSets: LabelTrie = new Map();
  readonly #limit: LabelSetLimit;
  readonly #overflowSeries: RecordedSeries;
  readonly #exemplars: FirstConnectionExemplars;

  constructor(options: FirstConnectionRecorderOptions = {}) {
    const { labels, cardinalityLimit } = validateMetricOptions(options);
    this.#labels = labels;
    this.#exemplars = new FirstConnectionExemplars(labels, cardinalityLimit);
    this.#overflowSeries = { attributes: OVERFLOW_ATTRIBUTES, exemplarKey: seriesKey(OVERFLOW_ATTRIBUTES, labels) };
    this.#maxTracked = options.maxTrackedAgents ?? DEFAULT_MAX_TRACKED_AGENTS;
    if (!Number.isSafeInteger(this.#maxTracked) || this.#maxTracked < 1) {
      throw new RangeError(`maxTrackedAgents must be a positive integer, got ${String(options.maxTrackedAgents)}`);
    }
    this.#logger = options.logger ?? diagLogger;
    const meter =
      options.meter ??
      (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION);
    this.#histogram = createFirstConnectionHistogram(meter);
    this.#observed = meter.createCounter(SELF_METRICS.samplesObserved.name, instrumentOptions(SELF_METRICS.samplesObserved));
    this.#dropped = meter.createCounter(SELF_METRICS.samplesDropped.name, instrumentOptions(SELF_METRICS.samplesDropped));
    this.#limit = new LabelSetLimit({
      instrument: FIRST_CONNECTION_METRIC_NAME,
      cardinalityLimit,
      meter,
      logger: this.#logger,
      logFields: { labels: labels.join(',') },
    });
    // Series that exist at 0 from the start, so rate() and increase() see the first drop.
    this.#observed.add(0);
    for (const reason of DROP_REASONS) this.#dropped.add(0, { reason });
  }

  /** Label keys attached to each sample, in Coder PR #24179's order. */
  get labels(): readonly LabelKey[] {
    return this.#labels;
  }

  /**
   * The latest observation of each bucket of each series, with the agent's id, workspace and user: hand it
   * to the exposition (`FastPrometheusReader`'s `exemplars` option) to serve OpenMetrics exemplars.
   */
  get exemplars(): FirstConnectionExemplars {
    return this.#exemplars;
  }

  /** How many agent ids the observe-once state holds. */
  get trackedAgents(): number {
    return this.#handled.size;
  }

  /** Whether this agent id was already handled (observed or dropped). */
  hasHandled(agentId: string): boolean {
    return this.#handled.has(agentId);
  }

  /**
   * Observe one agent's first connection, once per agent id. An agent without `firstConnectedAt` is
   * not observed and not remembered, so it is observed when it connects later.
   */
  record(agent: AgentFirstConnection): RecordOutcome {
    if (agent === null || typeof agent !== 'object') {
      return this.#drop('invalid', undefined, 'agent record is not an object', {});
    }
    const agentId = agent.agentId;
    if (typeof agentId !== 'string' || agentId.length === 0) {
      return this.#drop('invalid', undefined, 'agent record has no agentId', {});
    }
    if (this.#handled.has(agentId)) return 'duplicate';
    if (agent.firstConnectedAt === null || agent.firstConnectedAt === undefined) return 'not_connected';

    const createdMicros = toEpochMicros(agent.createdAt);
    const connectedMicros = toEpochMicros(agent.firstConnectedAt);
    if (createdMicros === undefined || connectedMicros === undefined) {
      const field = createdMicros === undefined ? 'created_at' : 'first_connected_at';
      // An unreadable first_connected_at (e.g. `infinity`) is returned by every incremental query, so it is
      // remembered until the agent leaves the source (a full scan's pruning), never pruned by time.
      const rememberUntil = connectedMicros ?? Number.POSITIVE_INFINITY;
      return this.#drop('invalid', agentId, `agent ${field} is not a valid timestamp; dropping sample`, {
        agent_id: agentId,
        field,
        value: String(createdMicros === undefined ? agent.createdAt : agent.firstConnectedAt),
      }, rememberUntil);
    }
    const duration = durationSeconds(createdMicros, connectedMicros);
    if (!Number.isFinite(duration)) {
      return this.#drop('invalid', agentId, 'agent first connection duration is not finite; dropping sample', {
        agent_id: agentId,
        duration_s: duration,
      }, connectedMicros);
    }
    if (duration < 0) {
      return this.#drop(
        'negative_duration',
        agentId,
        'negative agent first connection duration (possible clock skew); dropping sample',
        {
          agent_id: agentId,
          created_at: formatEpochMicros(createdMicros),
          first_connected_at: formatEpochMicros(connectedMicros),
          duration_s: duration,
        },
        connectedMicros,
      );
    }

    const series = this.#series(agent.labels);
    if (series === undefined) {
      return this.#drop('invalid', agentId, 'agent labels are missing or not strings; dropping sample', {
        agent_id: agentId,
      }, connectedMicros);
    }
    this.#remember(agentId, connectedMicros);
    this.#histogram.record(duration, series.attributes);
    const timestampSeconds = connectedMicros / 1e6;
    // Most samples of a series do not replace its bucket's exemplar: build the labels only for those that do.
    if (this.#exemplars.accepts(series.exemplarKey, duration, timestampSeconds)) {
      this.#exemplars.observe(series.exemplarKey, {
        labels: exemplarLabels(agentId, agent.labels, this.#labels),
        value: duration,
        timestampSeconds,
      });
    }
    this.#observed.add(1);
    return 'observed';
  }

  /** Coder PR #24179's pruning rule: forget every agent id that is not in `currentIds`. */
  retainOnly(currentIds: ReadonlySet<string>): void {
    this.#forget((id) => !currentIds.has(id));
  }

  /**
   * Incremental pruning: forget agents whose first connection is before `instant`; a source queried
   * from `instant` on never returns them again.
   */
  forgetConnectedBefore(instant: Date): void {
    const limit = instant.getTime() * 1000;
    this.#forget((_, micros) => micros < limit);
  }

  /** Forgets the agents that `drop` picks, keeping the others in the order they were handled. */
  #forget(drop: (agentId: string, micros: number) => boolean): void {
    const handled = this.#handled;
    const gone: string[] = [];
    // forEach, not for-of over entries: no [id, micros] array per agent while the code is still cold.
    handled.forEach((micros, id) => {
      if (drop(id, micros)) gone.push(id);
    });
    if (gone.length === 0) return;
    if (gone.length * 2 < handled.size) {
      for (const id of gone) handled.delete(id);
      return;
    }
    // Most go (a first poll's history before the window): copying the rest is several times cheaper
    // than deleting entry by entry, which rehashes the map again and again as it shrinks.
    const kept = new Map<string, number>();
    handled.forEach((micros, id) => {
      if (!drop(id, micros)) kept.set(id, micros);
    });
    this.#handled = kept;
  }

  /** Remember an agent as handled without observing it (e.g. connected before a backfill bound). */
  markHandled(agentId: string, firstConnectedAt: Date | string): void {
    this.#remember(agentId, toEpochMicros(firstConnectedAt) ?? Date.now() * 1000);
  }

  /**
   * The agents handled whose first connection is at or after `micros` (epoch µs), plus those whose
   * first connection could not be read: the observe-once state a restart needs (see `PollerState`).
   */
  handledSince(micros: number): HandledAgent[] {
    const result: HandledAgent[] = [];
    for (const [agentId, connected] of this.#handled) {
      if (connected >= micros) result.push({ agentId, firstConnectedMicros: Number.isFinite(connected) ? connected : null });
    }
    return result;
  }

  /**
   * The ids of the agents handled whose first connection is at or after `micros` (epoch µs) or could
   * not be read, at most `limit` of them, the most recently handled kept: what an incremental query
   * from `micros` on would return again.
   */
  handledIdsSince(micros: number, limit: number): string[] {
    const ids: string[] = [];
    for (const [agentId, connected] of this.#handled) {
      if (connected >= micros) ids.push(agentId);
    }
    return ids.length > limit ? ids.slice(ids.length - limit) : ids;
  }

  /** Remembers agents a previous run handled (from `handledSince`), so they are not counted again. */
  restoreHandled(agents: Iterable<HandledAgent>): void {
    for (const { agentId, firstConnectedMicros } of agents) {
      this.#remember(agentId, firstConnectedMicros ?? Number.POSITIVE_INFINITY);
    }
  }

  #remember(agentId: string, micros: number): void {
    this.#handled.set(agentId, micros);
    if (this.#handled.size > this.#maxTracked) {
      const oldest = this.#handled.keys().next();
      if (!oldest.done) this.#handled.delete(oldest.value);
    }
  }

  /**
   * The attributes to record under, or undefined when a label is missing or not a string. Capped over
   * the process's lifetime by the `LabelSetLimit` (sdk-metrics applies its limit per collection, so with
   * cumulative temporality the series would keep growing); past it, new label sets go to the overflow set.
   */
  #series(labels: AgentFirstConnection['labels']): RecordedSeries | undefined {
    if (labels === null || typeof labels !== 'object') return undefined;
    const names = this.#labels;
    const last = names.length - 1;
    let node = this.#labelSets;
    let depth = 0;
    for (; depth < last; depth++) {
      const value = labels[names[depth]!];
      if (typeof value !== 'string') return undefined;
      const next = node.get(value) as LabelTrie | undefined;
      if (next === undefined) break;
      node = next;
    }
    if (depth >= last) {
      const value = last < 0 ? '' : labels[names[last]!];
      if (typeof value !== 'string') return undefined;
      const known = node.get(value) as RecordedSeries | undefined;
      if (known !== undefined) return known;
    }
    for (const name of names) if (typeof labels[name] !== 'string') return undefined;
    if (this.#limit.admit()) {
      const attributes: Attributes = {};
      for (const name of names) attributes[name] = labels[name];
      const series = { attributes: Object.freeze(attributes), exemplarKey: seriesKey(attributes, names) };
      for (; depth < last; depth++) {
        const next: LabelTrie = new Map();
        node.set(labels[names[depth]!], next);
        node = next;
      }
      node.set(last < 0 ? '' : labels[names[last]!], series);
      return series;
    }
    this.#limit.overflowed(1);
    return this.#overflowSeries;
  }

  #drop(
    reason: DropReason,
    agentId: string | undefined,
    message: string,
    fields: Readonly<Record<string, unknown>>,
    micros: number = Date.now() * 1000,
  ): RecordOutcome {
    // Remember the agent so the warning and the count happen once per agent, not once per tick.
    if (agentId !== undefined) this.#remember(agentId, micros);
    this.#dropped.add(1, { reason });
    this.#logger.warn(message, fields);
    return reason;
  }
}


/**
 * Creates the histogram with its bucket bounds as `advice`, so a MeterProvider without our View
 * still uses the right buckets.
 */
export function createFirstConnectionHistogram(meter: Meter): Histogram {
  return meter.createHistogram(FIRST_CONNECTION_METRIC_NAME, {
    description: FIRST_CONNECTION_METRIC_DESCRIPTION,
    unit: FIRST_CONNECTION_METRIC_UNIT,
    advice: { explicitBucketBoundaries: [...FIRST_CONNECTION_BUCKET_BOUNDARIES] },
  });
}


