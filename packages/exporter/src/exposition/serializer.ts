import type { Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  type DataPoint,
  type Histogram,
  type MetricData,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import { diagLogger, type Logger } from '@agentconn/core';
import {
  braceLabels,
  escapeHelp,
  formatBucketBound,
  formatLabels,
  formatValue,
  NO_REGISTERED_METRICS,
  sanitizeName,
} from './format.js';

export interface PrometheusSerializerOptions {
  /** Prepended to every metric name as `prefix_` (not to `target_info`). Default none. */
  readonly prefix?: string;
  /** Append the data point's end time (Unix ms) to each sample. Default false. */
  readonly appendTimestamp?: boolean;
  /** Resource attributes whose key matches become labels on every sample. Default none. */
  readonly withResourceConstantLabels?: RegExp;
  /** Leave out the `otel_scope_name`, `otel_scope_version` (and `otel_scope_schema_url`) labels. Default false. */
  readonly withoutScopeInfo?: boolean;
  /** Leave out the `target_info` series built from the resource. Default false. */
  readonly withoutTargetInfo?: boolean;
  /** Where metadata conflicts and unsupported data are reported. Default: OpenTelemetry `diag`. */
  readonly logger?: Logger;
}

/** Characters per chunk handed to the consumer: large enough that per-write overhead vanishes. */
export const DEFAULT_CHUNK_CHARS = 256 * 1024;

type PrometheusType = 'counter' | 'gauge' | 'histogram' | 'untyped';

interface FamilyMember {
  readonly metric: MetricData;
  readonly scope: ScopeMetrics['scope'];
}

interface Family {
  help: string;
  unit: string;
  readonly type: PrometheusType;
  /** Set when two instruments map to one name with different types: upstream then drops the whole family. */
  dropped: boolean;
  readonly members: FamilyMember[];
}

/** Label strings that depend on the boundary set of a histogram, built once per metric and boundary array. */
interface BucketLabels {
  readonly boundaries: readonly number[];
  /** `le` for each count index as a label tail: `…,le="0.5"} ` (`+Inf` for the last). */
  readonly tails: readonly string[];
  /** A boundary array with `Infinity` in it already has its `+Inf` bucket: upstream stops there. */
  readonly hasInfinity: boolean;
}

const TARGET_INFO = 'target_info';
const TARGET_INFO_HELP = 'Target metadata';
const ATTR_SCOPE_NAME = 'otel.scope.name';
const ATTR_SCOPE_VERSION = 'otel.scope.version';
const ATTR_SCOPE_SCHEMA_URL = 'otel.scope.schema_url';

function prometheusType(metric: MetricData): PrometheusType {
  switch (metric.dataPointType) {
    case DataPointType.SUM:
      return metric.isMonotonic ? 'counter' : 'gauge';
    case DataPointType.GAUGE:
      return 'gauge';
    case DataPointType.HISTOGRAM:
      return 'histogram';
    default:
      return 'untyped';
  }
}

function quote(value: string): string {
  return JSON.stringify(value);
}

/**
 * Writes the text exposition format of one `collect()` result, the way `@opentelemetry/exporter-prometheus`
 * 0.301 does (same families, order, names, labels and values), but without building an object per line:
 * each data point's label string is built once and shared by its lines, `le` tails once per boundary set,
 * and the text comes out in chunks so a scrape of 100k series never exists as one string.
 */
export class PrometheusTextSerializer {
  readonly #prefix: string;
  readonly #appendTimestamp: boolean;
  readonly #resourceLabelPattern: RegExp | undefined;
  readonly #withoutScopeInfo: boolean;
  readonly #withoutTargetInfo: boolean;
  readonly #logger: Logger;
  /** Conflicts warned about in the previous serialization: warned once while they persist. */
  #previousConflicts = new Set<string>();
  readonly #unsupportedWarned = new Set<string>();

  constructor(options: PrometheusSerializerOptions = {}) {
    this.#prefix = options.prefix ? options.prefix + '_' : '';
    this.#appendTimestamp = options.appendTimestamp ?? false;
    this.#resourceLabelPattern = options.withResourceConstantLabels;
    this.#withoutScopeInfo = options.withoutScopeInfo ?? false;
    this.#withoutTargetInfo = options.withoutTargetInfo ?? false;
    this.#logger = options.logger ?? diagLogger;
  }

  /** The whole exposition as one string (tests, small registries). */
  serialize(resourceMetrics: ResourceMetrics): string {
    let text = '';
    for (const chunk of this.chunks(resourceMetrics, Number.POSITIVE_INFINITY)) text += chunk;
    return text;
  }

  /**
   * The exposition as chunks of about `chunkChars` characters (never splitting a line). Lazy: nothing is
   * written before the first `next()`, so a consumer can pause between chunks for backpressure.
   */
  *chunks(resourceMetrics: ResourceMetrics, chunkChars: number = DEFAULT_CHUNK_CHARS): Generator<string, void, undefined> {
    const families = this.#collectFamilies(resourceMetrics);
    const resourceLabels = this.#resourceConstantLabels(resourceMetrics.resource.attributes);
    let out = '';
    let wroteMetric = false;
    for (const [name, family] of families) {
      if (family.dropped) continue;
      let writeMetadata = true;
      if (name === TARGET_INFO && !this.#withoutTargetInfo) {
        out += this.#metadata(name, family, TARGET_INFO_HELP);
        const labels = formatLabels(resourceMetrics.resource.attributes);
        out += TARGET_INFO + braceLabels(labels, '') + ' 1\n';
        writeMetadata = false;
      }
      for (const { metric, scope } of family.members) {
        const additional = this.#additionalLabels(scope, resourceLabels);
        if (writeMetadata) {
          out += this.#metadata(name, family, 'description missing');
          writeMetadata = false;
          wroteMetric = true;
        } else if (metric.dataPoints.length === 0 || metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
          // Nothing to write; upstream also keeps the metadata pending only when it wrote nothing at all.
          if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) this.#warnUnsupported(name);
          continue;
        }
        switch (metric.dataPointType) {
          case DataPointType.SUM:
          case DataPointType.GAUGE: {
            const additionalText = formatLabels(additional);
            for (const point of metric.dataPoints) {
              out +=
                name +
                braceLabels(formatLabels(point.attributes), additionalText) +
                ' ' +
                formatValue(point.value) +
                this.#lineEnd(point);
              if (out.length >= chunkChars) {
                yield out;
                out = '';
              }
            }
            break;
          }
          case DataPointType.HISTOGRAM: {
            const histogram = new HistogramWriter(name, additional);
            for (const point of metric.dataPoints) {
              out += histogram.point(point, this.#lineEnd(point));
              if (out.length >= chunkChars) {
                yield out;
                out = '';
              }
            }
            break;
          }
          default:
            this.#warnUnsupported(name);
        }
        wroteMetric = true;
        if (out.length >= chunkChars) {
          yield out;
          out = '';
        }
      }
    }
    if (!wroteMetric) out += NO_REGISTERED_METRICS;
    if (out.length > 0) yield out;
  }

  #metadata(name: string, family: Family, missingHelp: string): string {
    let text = '# HELP ' + name + ' ' + escapeHelp(family.help || missingHelp) + '\n';
    if (family.unit) text += '# UNIT ' + name + ' ' + escapeHelp(family.unit) + '\n';
    return text + '# TYPE ' + name + ' ' + family.type + '\n';
  }

  #lineEnd(point: DataPoint<unknown>): string {
    if (!this.#appendTimestamp) return '\n';
    const [seconds, nanos] = point.endTime;
    return ' ' + String(seconds * 1e3 + nanos / 1e6) + '\n';
  }

  /** Scope labels then resource constant labels, in upstream's order (a later key overrides in place). */
  #additionalLabels(scope: ScopeMetrics['scope'], resourceLabels: Attributes | undefined): Attributes {
    if (this.#withoutScopeInfo) return resourceLabels ?? {};
    const labels: Attributes = { [ATTR_SCOPE_NAME]: scope.name };
    if (scope.schemaUrl) labels[ATTR_SCOPE_SCHEMA_URL] = scope.schemaUrl;
    if (scope.version) labels[ATTR_SCOPE_VERSION] = scope.version;
    return resourceLabels === undefined ? labels : Object.assign(labels, resourceLabels);
  }

  #resourceConstantLabels(attributes: Attributes): Attributes | undefined {
    const pattern = this.#resourceLabelPattern;
    if (pattern === undefined) return undefined;
    const labels: Attributes = {};
    for (const key of Object.keys(attributes)) {
      if (key.match(pattern)) labels[key] = attributes[key];
    }
    return labels;
  }

  #metricName(metric: MetricData): string | undefined {
    const original = metric.descriptor.name;
    let name = this.#prefix + sanitizeName(escapeHelp(original));
    if (name === '' || name === '_') {
      this.#logger.error('Prometheus metric name is empty or "_" after sanitization; metric dropped', {
        metric_name: original,
      });
      return undefined;
    }
    const first = name.charCodeAt(0);
    if (first >= 48 && first <= 57) name = '_' + name;
    if (metric.dataPointType === DataPointType.SUM && metric.isMonotonic && !name.endsWith('_total')) {
      name += '_total';
    }
    return name;
  }

  /** Groups instruments by their Prometheus name, as upstream does, with its conflict rules. */
  #collectFamilies(resourceMetrics: ResourceMetrics): Map<string, Family> {
    const families = new Map<string, Family>();
    const conflicts = new Set<string>();
    if (!this.#withoutTargetInfo) {
      families.set(TARGET_INFO, { help: TARGET_INFO_HELP, unit: '', type: 'gauge', dropped: false, members: [] });
    }
    for (const scopeMetrics of resourceMetrics.scopeMetrics) {
      for (const metric of scopeMetrics.metrics) {
        const name = this.#metricName(metric);
        if (name === undefined) continue;
        const type = prometheusType(metric);
        const family = families.get(name);
        if (family === undefined) {
          families.set(name, {
            help: metric.descriptor.description,
            unit: metric.descriptor.unit,
            type,
            dropped: false,
            members: [{ metric, scope: scopeMetrics.scope }],
          });
        } else if (!family.dropped) {
          if (family.type === type) {
            family.members.push({ metric, scope: scopeMetrics.scope });
          } else {
            this.#warnConflict(conflicts, 'TYPE', name, family.type, type, undefined);
            family.dropped = true;
            family.members.length = 0;
          }
        }
      }
    }
    for (const [name, family] of families) {
      if (family.dropped) continue;
      for (const { metric } of family.members) {
        const { description, unit } = metric.descriptor;
        if (description) {
          if (!family.help) family.help = description;
          else if (family.help !== description) {
            this.#warnConflict(conflicts, 'HELP', name, family.help, description, family.help);
          }
        }
        if (unit) {
          if (!family.unit) family.unit = unit;
          else if (family.unit !== unit) this.#warnConflict(conflicts, 'UNIT', name, family.unit, unit, family.unit);
        }
      }
    }
    this.#previousConflicts = conflicts;
    return families;
  }

  #warnConflict(
    current: Set<string>,
    kind: 'TYPE' | 'HELP' | 'UNIT',
    name: string,
    first: string,
    second: string,
    selected: string | undefined,
  ): void {
    const key = `${kind}:${name}:${selected ?? ''}`;
    if (current.has(key)) return;
    current.add(key);
    if (this.#previousConflicts.has(key)) return;
    const values = `${quote(first)}, ${quote(second)}`;
    if (selected === undefined) {
      this.#logger.warn(`Conflicting ${kind} comments for metric "${name}": ${values}; dropping the metric.`, {
        metric_name: name,
      });
    } else {
      this.#logger.warn(
        `Conflicting ${kind} comments for metric "${name}": ${values}; exporting ${quote(selected)}.`,
        { metric_name: name },
      );
    }
  }

  #warnUnsupported(name: string): void {
    if (this.#unsupportedWarned.has(name)) return;
    this.#unsupportedWarned.add(name);
    this.#logger.error('Prometheus exposition has no text form for this data point type; only metadata written', {
      metric_name: name,
    });
  }
}

/**
 * Writes the lines of one histogram metric's data points. The label tails with `le` depend only on the
 * metric's scope/resource labels and the boundary array (shared by every data point of an instrument), so
 * they are built once; per data point only its own attribute string is built.
 */
class HistogramWriter {
  readonly #countName: string;
  readonly #sumName: string;
  readonly #bucketOpen: string;
  readonly #additional: Attributes;
  readonly #additionalText: string;
  #buckets: BucketLabels | undefined;

  constructor(name: string, additional: Attributes) {
    this.#countName = name + '_count';
    this.#sumName = name + '_sum';
    this.#bucketOpen = name + '_bucket{';
    this.#additional = additional;
    this.#additionalText = formatLabels(additional);
  }

  point(point: DataPoint<Histogram>, lineEnd: string): string {
    const value = point.value;
    const own = formatLabels(point.attributes);
    const labels = braceLabels(own, this.#additionalText);
    let out = '';
    // Upstream writes `_count` then `_sum`, and skips `_sum` when the SDK leaves it out (instruments that
    // may record negative values).
    if (value.count != null) out += this.#countName + labels + ' ' + formatValue(value.count) + lineEnd;
    if (value.sum != null) out += this.#sumName + labels + ' ' + formatValue(value.sum) + lineEnd;
    const { boundaries, counts } = value.buckets;
    const buckets = this.#bucketLabels(boundaries);
    const head = own.length > 0 ? this.#bucketOpen + own + ',' : this.#bucketOpen;
    let limit = counts.length;
    if (buckets.hasInfinity && limit > boundaries.length) limit = boundaries.length;
    const tails = buckets.tails;
    const lastTail = tails[tails.length - 1];
    let cumulative = 0;
    for (let i = 0; i < limit; i++) {
      cumulative += counts[i] ?? 0;
      out += head + (i < tails.length ? tails[i] : lastTail) + formatValue(cumulative) + lineEnd;
    }
    return out;
  }

  #bucketLabels(boundaries: readonly number[]): BucketLabels {
    const cached = this.#buckets;
    if (cached !== undefined && cached.boundaries === boundaries) return cached;
    const built = bucketLabelsFor(boundaries, this.#additional);
    this.#buckets = built;
    return built;
  }
}

/** Per boundary array: the `le` strings, so that each metric only joins them with its own labels. */
const boundStrings = new WeakMap<readonly number[], readonly string[]>();

function bucketLabelsFor(boundaries: readonly number[], additional: Attributes): BucketLabels {
  let bounds = boundStrings.get(boundaries);
  if (bounds === undefined || bounds.length !== boundaries.length + 1) {
    const built: string[] = [];
    for (let i = 0; i <= boundaries.length; i++) built.push(formatBucketBound(boundaries[i]));
    bounds = built;
    boundStrings.set(boundaries, bounds);
  }
  const tails = bounds.map((le) => formatLabels(Object.assign({}, additional, { le })) + '} ');
  return { boundaries, tails, hasInfinity: boundaries.includes(Infinity) };
}
