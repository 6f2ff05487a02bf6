import type { Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  type DataPoint,
  type Histogram,
  type MetricData,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import { diagLogger, type Logger } from '../logger.js';
import {
  braceLabels,
  escapeHelp,
  formatBucketBound,
  formatLabels,
  formatValue,
  NO_REGISTERED_METRICS,
  sanitizeName,
} from './text-syntax.js';
import { emptyOwnLabels, seriesTable, type OwnLabels, type SeriesTable } from './series-text-cache.js';
import { histogramRowsOf, HistogramValues, type HistogramRows } from '../collect/histogram-rows.js';
import { ByteSink, type ChunkOptions, type ChunkPool, MAX_NUMBER_BYTES, maxUtf8Bytes, NEWLINE, utf8, writeNumber } from './byte-sink.js';

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

/** See `PrometheusTextSerializer.plan`. */
export interface ExpositionPlan {
  readonly families: ReadonlyMap<string, Family>;
  readonly resourceLabels: Attributes | undefined;
  additionalLabels(scope: ScopeMetrics['scope'], resourceLabels: Attributes | undefined): Attributes;
  warnUnsupported(name: string): void;
}

/** Bytes per chunk handed to the consumer: large enough that per-write overhead vanishes. */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;

const OPEN_BRACE = 0x7b;
/** A plain newline, or ` <timestamp>\n` (upstream's millisecond timestamps fit in 30 characters). */
const LINE_END_BYTES = 32;

export type PrometheusType = 'counter' | 'gauge' | 'histogram' | 'untyped';

export interface FamilyMember {
  readonly metric: MetricData;
  readonly scope: ScopeMetrics['scope'];
}

export interface Family {
  help: string;
  unit: string;
  readonly type: PrometheusType;
  /** Set when two instruments map to one name with different types: upstream then drops the whole family. */
  dropped: boolean;
  readonly members: FamilyMember[];
}

/** Label strings that depend on the boundary set of a histogram, built once per metric and boundary array. */
export interface BucketLabels {
  readonly boundaries: readonly number[];
  /** `le` for each count index as a label tail: `…,le="0.5"} ` (`+Inf` for the last), as UTF-8. */
  readonly tails: readonly Buffer[];
  /** The same with the comma that follows a data point's own labels. */
  readonly tailsAfterOwn: readonly Buffer[];
  readonly longestTail: number;
  /** A boundary array with `Infinity` in it already has its `+Inf` bucket: upstream stops there. */
  readonly hasInfinity: boolean;
  /** `tails` split into the bytes they all start with (`…,le="`) and each one's rest (`0.5"} `). */
  readonly split: SplitTails;
  /** The same for `tailsAfterOwn`. */
  readonly splitAfterOwn: SplitTails;
}

/**
 * Label tails as one part common to every bucket line of a metric and a short rest per bucket. The common part
 * goes into a data point's bucket-line head once; each line then copies the head and writes its few rest bytes.
 */
export interface SplitTails {
  readonly common: Buffer;
  readonly rests: readonly Buffer[];
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
 * 0.301 does (same families, order, names, labels and values), but without an object or a string per line:
 * each data point's label text is built and UTF-8-encoded once and its other lines copy those bytes, the
 * `le` label tails are encoded once per metric and boundary set, and the bytes come out in chunks, so a
 * scrape of 100k series never exists as one string or one buffer.
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
  /** Problems that repeat on every scrape (bad names, unsupported data) are logged once per metric. */
  readonly #warnedOnce = new Set<string>();

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
    return Buffer.concat([...this.chunks(resourceMetrics)]).toString('utf8');
  }

  /**
   * The exposition as UTF-8 chunks of about `chunkBytes` bytes (never splitting a line; a data point larger
   * than that gets a chunk of its own size). Lazy: nothing is written before the first `next()`, so a consumer
   * can pause between chunks for backpressure. Without a `pool` each chunk is a buffer of its own the consumer
   * may keep; with one, the consumer hands each chunk back with `pool.release(chunk)` once done with it. With
   * `recordInputs`, each chunk's inputs can be read with `chunkInputsOf` (what a gzip scrape reuses segments by).
   */
  *chunks(
    resourceMetrics: ResourceMetrics,
    chunkBytes: number = DEFAULT_CHUNK_BYTES,
    pool?: ChunkPool,
    options: ChunkOptions = {},
  ): Generator<Buffer, void, undefined> {
    const families = this.#collectFamilies(resourceMetrics);
    const resourceLabels = this.#resourceConstantLabels(resourceMetrics.resource.attributes);
    const sink = new ByteSink(chunkBytes, pool, options);
    let wroteMetric = false;
    for (const [name, family] of families) {
      if (family.dropped) continue;
      let writeMetadata = true;
      if (name === TARGET_INFO && !this.#withoutTargetInfo) {
        const labels = formatLabels(resourceMetrics.resource.attributes);
        yield* writeText(sink, this.#metadata(name, family, TARGET_INFO_HELP) + TARGET_INFO + braceLabels(labels, '') + ' 1\n');
        writeMetadata = false;
      }
      for (const { metric, scope } of family.members) {
        if (writeMetadata) {
          yield* writeText(sink, this.#metadata(name, family, 'description missing'));
          writeMetadata = false;
          wroteMetric = true;
        } else if (metric.dataPoints.length === 0 || metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
          // Nothing to write; upstream also keeps the metadata pending only when it wrote nothing at all.
          if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) this.#warnUnsupported(name);
          continue;
        }
        const additional = this.#additionalLabels(scope, resourceLabels);
        switch (metric.dataPointType) {
          case DataPointType.SUM:
          case DataPointType.GAUGE:
            yield* writePoints(sink, new SampleWriter(name, additional, this.#appendTimestamp, TEXT_SAMPLE_LINE_END), metric.dataPoints, seriesTable(metric.descriptor));
            break;
          case DataPointType.HISTOGRAM:
            yield* writePoints(
              sink,
              new HistogramWriter(name, additional, this.#appendTimestamp, histogramRowsOf(metric)),
              metric.dataPoints,
              seriesTable(metric.descriptor),
            );
            break;
          default:
            this.#warnUnsupported(name);
        }
        wroteMetric = true;
      }
    }
    if (!wroteMetric) yield* writeText(sink, NO_REGISTERED_METRICS);
    const last = sink.finish();
    if (last !== undefined) yield last;
  }

  /**
   * The families of one `collect()` result, grouped by Prometheus name with upstream's conflict rules, and
   * each scope's additional labels: what the OpenMetrics writer needs to say the same thing in its format.
   */
  plan(resourceMetrics: ResourceMetrics): ExpositionPlan {
    return {
      families: this.#collectFamilies(resourceMetrics),
      resourceLabels: this.#resourceConstantLabels(resourceMetrics.resource.attributes),
      additionalLabels: (scope, resourceLabels) => this.#additionalLabels(scope, resourceLabels),
      warnUnsupported: (name) => this.#warnUnsupported(name),
    };
  }

  #metadata(name: string, family: Family, missingHelp: string): string {
    let text = '# HELP ' + name + ' ' + escapeHelp(family.help || missingHelp) + '\n';
    if (family.unit) text += '# UNIT ' + name + ' ' + escapeHelp(family.unit) + '\n';
    return text + '# TYPE ' + name + ' ' + family.type + '\n';
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
      if (!this.#warnedOnce.has(original)) {
        this.#warnedOnce.add(original);
        this.#logger.error('Prometheus metric name is empty or "_" after sanitization; metric dropped', {
          metric_name: original,
        });
      }
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
    if (this.#warnedOnce.has(name)) return;
    this.#warnedOnce.add(name);
    this.#logger.error('Prometheus exposition has no text form for this data point type; only metadata written', {
      metric_name: name,
    });
  }
}

export function* writeText(sink: ByteSink, text: string): Generator<Buffer, void, undefined> {
  const done = sink.room(maxUtf8Bytes(text));
  if (done !== undefined) yield done;
  sink.input(text);
  sink.text(text);
}

/** ` <ms>\n` with upstream's millisecond arithmetic, or undefined for a plain newline. */
function timestampLineEnd(point: DataPoint<unknown>, appendTimestamp: boolean): string | undefined {
  if (!appendTimestamp) return undefined;
  const [seconds, nanos] = point.endTime;
  return ' ' + String(seconds * 1e3 + nanos / 1e6) + '\n';
}

/**
 * The label parts that follow a data point's own labels, as bytes: with own labels `,<additional>} ` (or
 * `} `), without them `{<additional>} ` (or a bare space).
 */
export class LabelSuffix {
  readonly afterOwn: Buffer;
  readonly withoutOwn: Buffer;

  constructor(additionalText: string) {
    this.afterOwn = utf8(additionalText.length > 0 ? ',' + additionalText + '} ' : '} ');
    this.withoutOwn = utf8(additionalText.length > 0 ? '{' + additionalText + '} ' : ' ');
  }
}

/** Where a data point's own labels were first written in the chunk, so that its other lines copy them. */
export interface OwnAt {
  start: number;
  end: number;
}

/**
 * Marks `at` as not written yet and returns it. Each writer reuses one: an object per data point would be
 * 100k short-lived objects a scrape, and V8 pretenured them into the old generation, where only a full
 * collection frees them (measured: ~11 MB of heap a scrape at 100k series, a mark-compact every other scrape).
 */
export function unwritten(at: OwnAt): OwnAt {
  at.start = -1;
  at.end = -1;
  return at;
}

/** The own labels at `pos`: from the series table the first time, then as a copy of that first write. */
export function writeOwn(buf: Buffer, pos: number, own: OwnLabels, at: OwnAt): number {
  if (at.start < 0) {
    at.start = pos;
    at.end = pos + own.slab.copy(buf, pos, own.start, own.start + own.length);
    return at.end;
  }
  buf.copyWithin(pos, at.start, at.end);
  return pos + (at.end - at.start);
}

/** Writes `name{own,additional} ` for one data point; returns the new position. */
export function writeSeries(buf: Buffer, pos: number, name: Buffer, own: OwnLabels, at: OwnAt, suffix: LabelSuffix): number {
  buf.set(name, pos);
  pos += name.length;
  if (own.length === 0) {
    buf.set(suffix.withoutOwn, pos);
    return pos + suffix.withoutOwn.length;
  }
  buf[pos++] = OPEN_BRACE;
  pos = writeOwn(buf, pos, own, at);
  buf.set(suffix.afterOwn, pos);
  return pos + suffix.afterOwn.length;
}

/**
 * `length` bytes of `buf` from `start`, as a plain `Uint8Array`: a `Buffer`'s `subarray` builds a `FastBuffer`,
 * which costs about twice as much, and these views are only ever a source to copy from.
 */
function view(buf: Buffer, start: number, length: number): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset + start, length);
}

/** Writes a point's label block: `{` own `,additional} ` (`suffix` is `afterOwn`), or `withoutOwn` alone. */
function writeLabelBlock(buf: Buffer, pos: number, own: Uint8Array | undefined, suffix: Buffer): number {
  if (own !== undefined) {
    buf[pos++] = OPEN_BRACE;
    buf.set(own, pos);
    pos += own.length;
  }
  buf.set(suffix, pos);
  return pos + suffix.length;
}

export function writeLineEnd(buf: Buffer, pos: number, lineEnd: string | undefined): number {
  if (lineEnd === undefined) {
    buf[pos] = NEWLINE;
    return pos + 1;
  }
  return pos + buf.write(lineEnd, pos, 'latin1');
}

/** Writes each point's lines, yielding a chunk whenever the sink fills; `table` keeps the points' label bytes. */
export function* writePoints<P>(
  sink: ByteSink,
  writer: { prepare(point: P, table: SeriesTable, index: number): number; write(sink: ByteSink): void },
  points: readonly P[],
  table: SeriesTable,
): Generator<Buffer, void, undefined> {
  for (let i = 0; i < points.length; i++) {
    const point = points[i] as P;
    const done = sink.room(writer.prepare(point, table, i));
    if (done !== undefined) yield done;
    // A point's lines are a function of the point object alone (its attributes, value, times) and the writer's
    // options, fixed per stream; the SDK and `CumulativeState` never change a point they handed out.
    sink.input(point);
    writer.write(sink);
    if (sink.full) yield sink.take();
  }
  table.trim(points.length);
}

/** How a format ends a gauge's or counter's line: what it derives from the point, and how it writes that. */
export interface SampleLineEnd<E> {
  /** Bytes the end takes at most. */
  readonly maxBytes: number;
  of(point: DataPoint<number>, appendTimestamp: boolean): E;
  write(buf: Buffer, pos: number, end: E): number;
}

const TEXT_SAMPLE_LINE_END: SampleLineEnd<string | undefined> = {
  maxBytes: LINE_END_BYTES,
  of: timestampLineEnd,
  write: writeLineEnd,
};

/** Gauges and counters: one line per data point, `name{labels} value` and the format's line end. */
export class SampleWriter<E = string | undefined> {
  readonly #name: Buffer;
  readonly #suffix: LabelSuffix;
  readonly #appendTimestamp: boolean;
  readonly #lineEnds: SampleLineEnd<E>;
  #point: DataPoint<number> | undefined;
  readonly #own: OwnLabels = emptyOwnLabels();
  readonly #ownAt: OwnAt = { start: -1, end: -1 };
  #lineEnd: E | undefined;

  constructor(name: string, additional: Attributes, appendTimestamp: boolean, lineEnds: SampleLineEnd<E>) {
    this.#name = utf8(name);
    this.#suffix = new LabelSuffix(formatLabels(additional));
    this.#appendTimestamp = appendTimestamp;
    this.#lineEnds = lineEnds;
  }

  /** Looks up the point's label bytes; returns an upper bound of the bytes `write` needs. */
  prepare(point: DataPoint<number>, table: SeriesTable, index: number): number {
    this.#point = point;
    table.prepare(index, point.attributes, this.#own);
    this.#lineEnd = this.#lineEnds.of(point, this.#appendTimestamp);
    const suffix = Math.max(this.#suffix.afterOwn.length, this.#suffix.withoutOwn.length);
    return this.#name.length + 1 + this.#own.length + suffix + MAX_NUMBER_BYTES + this.#lineEnds.maxBytes;
  }

  write(sink: ByteSink): void {
    const point = this.#point;
    if (point === undefined) return;
    const buf = sink.buf;
    let pos = writeSeries(buf, sink.pos, this.#name, this.#own, unwritten(this.#ownAt), this.#suffix);
    pos = writeNumber(buf, pos, point.value, formatValue);
    sink.pos = this.#lineEnds.write(buf, pos, this.#lineEnd as E);
  }
}

/**
 * Histograms: `_count`, `_sum`, then cumulative `_bucket` lines. A data point's own label text is encoded once
 * and copied as bytes to its other lines; the `le` label tails depend only on the metric's scope/resource
 * labels and the boundary array (one per instrument), so they are built once per metric.
 */
class HistogramWriter {
  readonly #countName: Buffer;
  readonly #sumName: Buffer;
  readonly #bucketOpen: Buffer;
  readonly #suffix: LabelSuffix;
  readonly #additional: Attributes;
  readonly #appendTimestamp: boolean;
  #buckets: BucketLabels | undefined;
  /** The point being written: from its row when the stream has rows (`histogramRowsOf`), else from the point. */
  readonly #values: HistogramValues;
  readonly #own: OwnLabels = emptyOwnLabels();
  #table: SeriesTable | undefined;
  #index = 0;
  #lineEnd: string | undefined;

  constructor(name: string, additional: Attributes, appendTimestamp: boolean, rows?: HistogramRows) {
    this.#countName = utf8(name + '_count');
    this.#sumName = utf8(name + '_sum');
    this.#bucketOpen = utf8(name + '_bucket{');
    this.#additional = additional;
    this.#suffix = new LabelSuffix(formatLabels(additional));
    this.#appendTimestamp = appendTimestamp;
    this.#values = new HistogramValues(rows);
  }

  prepare(point: DataPoint<Histogram>, table: SeriesTable, index: number): number {
    const values = this.#values;
    values.load(point, index);
    table.prepare(index, values.attributes, this.#own);
    this.#table = table;
    this.#index = index;
    this.#lineEnd = timestampLineEnd(point, this.#appendTimestamp);
    const buckets = this.#bucketLabels(values.boundaries);
    const lines = 2 + values.countsLength;
    const perLine =
      this.#bucketOpen.length +
      2 +
      this.#own.length +
      Math.max(buckets.longestTail, this.#suffix.afterOwn.length, this.#suffix.withoutOwn.length) +
      MAX_NUMBER_BYTES +
      LINE_END_BYTES;
    return lines * perLine;
  }

  /**
   * Builtin calls, not bytes, are what a line costs here: ~25 ns a `set` for lines of ~200 bytes, about twice that
   * a `copyWithin` or `Buffer.copy` with offsets. So the own labels are one view set where they appear, and each
   * bucket line is one `set` of the point's head (`name_bucket{own,additional,le="`) plus the few bytes of its `le`
   * rest written in a loop.
   */
  write(sink: ByteSink): void {
    const table = this.#table;
    if (table === undefined) return;
    const values = this.#values;
    const own = this.#own;
    const lineEnd = this.#lineEnd;
    const suffix = own.length > 0 ? this.#suffix.afterOwn : this.#suffix.withoutOwn;
    const buf = sink.buf;
    let pos = sink.pos;
    // One view of the own labels, set three times: `set` is the cheap builtin here; `Buffer.copy` with offsets
    // and `copyWithin` cost about twice as much a call.
    const ownBytes = own.length > 0 ? view(own.slab, own.start, own.length) : undefined;
    // Upstream writes `_count` then `_sum`, and skips `_sum` when the SDK leaves it out (instruments that
    // may record negative values).
    const count = values.count;
    const sum = values.sum;
    if (count !== undefined) {
      buf.set(this.#countName, pos);
      pos = writeLabelBlock(buf, pos + this.#countName.length, ownBytes, suffix);
      pos = writeLineEnd(buf, writeNumber(buf, pos, count, formatValue), lineEnd);
    }
    if (sum !== undefined) {
      buf.set(this.#sumName, pos);
      pos = writeLabelBlock(buf, pos + this.#sumName.length, ownBytes, suffix);
      pos = writeLineEnd(buf, table.writeSum(buf, pos, this.#index, sum), lineEnd);
    }
    const boundaries = values.boundaries;
    const counts = values.counts;
    const countsAt = values.countsAt;
    const buckets = this.#bucketLabels(boundaries);
    let limit = values.countsLength;
    if (buckets.hasInfinity && limit > boundaries.length) limit = boundaries.length;
    if (limit === 0) {
      sink.pos = pos;
      return;
    }
    const { common, rests } = ownBytes !== undefined ? buckets.splitAfterOwn : buckets.split;
    const lastRest = rests[rests.length - 1];
    // The head, written once: `name_bucket{`, the own labels, `…,le="`.
    const headStart = pos;
    buf.set(this.#bucketOpen, pos);
    pos += this.#bucketOpen.length;
    if (ownBytes !== undefined) {
      buf.set(ownBytes, pos);
      pos += ownBytes.length;
    }
    buf.set(common, pos);
    pos += common.length;
    const head = view(buf, headStart, pos - headStart);
    let cumulative = 0;
    for (let i = 0; i < limit; i++) {
      cumulative += counts[countsAt + i] ?? 0;
      if (i > 0) {
        buf.set(head, pos);
        pos += head.length;
      }
      const rest = i < rests.length ? rests[i] : lastRest;
      if (rest !== undefined) {
        for (let k = 0; k < rest.length; k++) buf[pos + k] = rest[k] as number;
        pos += rest.length;
      }
      pos = writeLineEnd(buf, writeNumber(buf, pos, cumulative, formatValue), lineEnd);
    }
    sink.pos = pos;
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

export function bucketLabelsFor(boundaries: readonly number[], additional: Attributes): BucketLabels {
  let bounds = boundStrings.get(boundaries);
  if (bounds === undefined || bounds.length !== boundaries.length + 1) {
    const built: string[] = [];
    for (let i = 0; i <= boundaries.length; i++) built.push(formatBucketBound(boundaries[i]));
    bounds = built;
    boundStrings.set(boundaries, bounds);
  }
  const texts = bounds.map((le) => formatLabels(Object.assign({}, additional, { le })) + '} ');
  const tails = texts.map(utf8);
  const tailsAfterOwn = texts.map((text) => utf8(',' + text));
  let longestTail = 0;
  for (const tail of tailsAfterOwn) longestTail = Math.max(longestTail, tail.length);
  return {
    boundaries,
    tails,
    tailsAfterOwn,
    longestTail,
    hasInfinity: boundaries.includes(Infinity),
    split: splitTails(tails),
    splitAfterOwn: splitTails(tailsAfterOwn),
  };
}

/** The bytes every tail starts with, and what is left of each. */
export function splitTails(tails: readonly Buffer[]): SplitTails {
  const first = tails[0];
  if (first === undefined) return { common: Buffer.alloc(0), rests: [] };
  let common = first.length;
  for (const tail of tails) {
    let same = 0;
    while (same < common && same < tail.length && tail[same] === first[same]) same++;
    common = same;
  }
  return { common: first.subarray(0, common), rests: tails.map((tail) => tail.subarray(common)) };
}
