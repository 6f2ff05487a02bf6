/**
 * OpenMetrics 1.0 text: the same families, names, labels and values as the Prometheus text format (so a
 * scraper gets the same series whichever it asks for), plus what only OpenMetrics can say: exemplars on
 * histogram bucket lines, `# UNIT`, counters as counter families (`# TYPE x counter`, sample `x_total`),
 * `target_info` as an info family, timestamps in seconds, and the closing `# EOF`.
 */

import type { Attributes } from '@opentelemetry/api';
import { DataPointType, type DataPoint, type Histogram, type MetricDescriptor, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { diagLogger, type Logger } from '../logger.js';
import type { Exemplar, ExemplarLookup } from './exemplar.js';
import { ExemplarBytes } from './exemplar-bytes.js';
import { escapeLabelValue, formatLabels, formatValue, sanitizeLabelName } from './text-syntax.js';
import {
  bucketLabelsFor,
  DEFAULT_CHUNK_BYTES,
  LabelSuffix,
  PrometheusTextSerializer,
  SampleWriter,
  unwritten,
  writeOwn,
  writePoints,
  writeSeries,
  writeText,
  type BucketLabels,
  type SampleLineEnd,
  type Family,
  type OwnAt,
  type PrometheusSerializerOptions,
} from './prometheus-text.js';
import { emptyOwnLabels, seriesTable, type OwnLabels, type SeriesTable } from './series-text-cache.js';
import { histogramRowsOf, HistogramValues, type HistogramRows } from '../collect/histogram-rows.js';
import { ByteSink, type ChunkOptions, type ChunkPool, MAX_NUMBER_BYTES, NEWLINE, utf8, writeNumber } from './byte-sink.js';

export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

export interface OpenMetricsSerializerOptions extends PrometheusSerializerOptions {
  /** Where histogram exemplars come from. Default none: bucket lines without exemplars. */
  readonly exemplars?: ExemplarLookup;
}

const EOF = '# EOF\n';
const TARGET_INFO = 'target_info';
const TARGET_FAMILY = 'target';
const TOTAL = '_total';
/** ` <seconds>` of a sample timestamp; the newline is written apart, after any exemplar. */
const TIMESTAMP_BYTES = 32;

/** OpenMetrics units are words that end the family name; UCUM units the SDK carries map to them. */
const UNIT_WORDS: Readonly<Record<string, string>> = {
  s: 'seconds',
  ms: 'milliseconds',
  us: 'microseconds',
  ns: 'nanoseconds',
  By: 'bytes',
  '1': 'ratio',
};

/** HELP text escapes backslash, newline and (unlike the Prometheus text format) double quote. */
export function escapeOpenMetricsHelp(text: string): string {
  return /[\\\n"]/.test(text) ? text.replace(/[\\\n"]/g, (ch) => (ch === '\\' ? '\\\\' : ch === '\n' ? '\\n' : '\\"')) : text;
}

/** The `# UNIT` word for a family, when its name ends with it (OpenMetrics requires the suffix). */
export function openMetricsUnit(familyName: string, unit: string): string | undefined {
  const word = UNIT_WORDS[unit] ?? (/^[a-z][a-z0-9_]*$/.test(unit) ? unit : undefined);
  return word !== undefined && familyName.endsWith('_' + word) ? word : undefined;
}

/** ` # {k="v",…} value [timestamp]`, the exemplar of one bucket line. */
export function formatExemplar(exemplar: Exemplar): string {
  let labels = '';
  for (const key of Object.keys(exemplar.labels)) {
    const pair = sanitizeLabelName(key) + '="' + escapeLabelValue(exemplar.labels[key]) + '"';
    labels = labels.length > 0 ? labels + ',' + pair : pair;
  }
  let text = ' # {' + labels + '} ' + formatValue(exemplar.value);
  if (exemplar.timestampSeconds !== undefined && Number.isFinite(exemplar.timestampSeconds)) {
    text += ' ' + formatValue(exemplar.timestampSeconds);
  }
  return text;
}

function sampleTimestamp(point: DataPoint<unknown>, appendTimestamp: boolean): string | undefined {
  if (!appendTimestamp) return undefined;
  const [seconds, nanos] = point.endTime;
  return ' ' + String(seconds + nanos / 1e9);
}

function writeEnd(buf: Buffer, pos: number, timestamp: string | undefined, exemplar?: Buffer): number {
  if (timestamp !== undefined) pos += buf.write(timestamp, pos, 'latin1');
  if (exemplar !== undefined) {
    buf.set(exemplar, pos);
    pos += exemplar.length;
  }
  buf[pos] = NEWLINE;
  return pos + 1;
}

/**
 * Writes the OpenMetrics exposition of one `collect()` result in UTF-8 chunks, the way
 * `PrometheusTextSerializer` writes the text format (it groups the families, so both agree on what a scrape
 * contains): each data point's label text is encoded once, `le` tails once per metric, and each exemplar
 * once for as long as it stays the bucket's latest.
 */
export class OpenMetricsSerializer {
  readonly #plan: PrometheusTextSerializer;
  readonly #appendTimestamp: boolean;
  readonly #withoutTargetInfo: boolean;
  readonly #exemplars: ExemplarLookup | undefined;
  readonly #logger: Logger;
  /** Encoded exemplars per histogram stream (see `ExemplarBytes`). */
  readonly #exemplarBytes = new WeakMap<MetricDescriptor, ExemplarBytes>();
  readonly #warnedCollisions = new Set<string>();

  constructor(options: OpenMetricsSerializerOptions = {}) {
    this.#plan = new PrometheusTextSerializer(options);
    this.#appendTimestamp = options.appendTimestamp ?? false;
    this.#withoutTargetInfo = options.withoutTargetInfo ?? false;
    this.#exemplars = options.exemplars;
    this.#logger = options.logger ?? diagLogger;
  }

  /** The whole exposition as one string (tests, small registries). */
  serialize(resourceMetrics: ResourceMetrics): string {
    return Buffer.concat([...this.chunks(resourceMetrics)]).toString('utf8');
  }

  /** As `PrometheusTextSerializer.chunks`: lazy, about `chunkBytes` per chunk, recycled through `pool`. */
  *chunks(
    resourceMetrics: ResourceMetrics,
    chunkBytes: number = DEFAULT_CHUNK_BYTES,
    pool?: ChunkPool,
    options: ChunkOptions = {},
  ): Generator<Buffer, void, undefined> {
    const plan = this.#plan.plan(resourceMetrics);
    const sink = new ByteSink(chunkBytes, pool, options);
    const familyNames = new Set<string>();
    for (const [name, family] of plan.families) {
      if (family.dropped) continue;
      const omName = family.type === 'counter' && name.endsWith(TOTAL) ? name.slice(0, -TOTAL.length) : name;
      const isTarget = name === TARGET_INFO && !this.#withoutTargetInfo;
      const familyName = isTarget ? TARGET_FAMILY : omName;
      if (familyNames.has(familyName)) {
        this.#warnCollision(familyName, name);
        continue;
      }
      familyNames.add(familyName);
      let writeMetadata = true;
      if (isTarget) {
        const labels = formatLabels(resourceMetrics.resource.attributes);
        yield* writeText(sink, metadata(familyName, 'info', family.help || 'Target metadata', '') + TARGET_INFO + (labels ? '{' + labels + '}' : '') + ' 1\n');
        writeMetadata = false;
      }
      for (const { metric, scope } of family.members) {
        if (writeMetadata) {
          yield* writeText(sink, metadata(familyName, openMetricsType(family), family.help || 'description missing', family.unit));
          writeMetadata = false;
        } else if (metric.dataPoints.length === 0 || metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
          if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) plan.warnUnsupported(name);
          continue;
        }
        const additional = plan.additionalLabels(scope, plan.resourceLabels);
        switch (metric.dataPointType) {
          case DataPointType.SUM:
          case DataPointType.GAUGE:
            yield* writePoints(sink, new SampleWriter(name, additional, this.#appendTimestamp, OPENMETRICS_SAMPLE_LINE_END), metric.dataPoints, seriesTable(metric.descriptor));
            break;
          case DataPointType.HISTOGRAM: {
            const exemplarBytes = this.#exemplarBytesOf(metric.descriptor);
            const writer = new OpenMetricsHistogramWriter(
              name,
              additional,
              this.#appendTimestamp,
              this.#exemplars,
              metric.descriptor.name,
              exemplarBytes,
              histogramRowsOf(metric),
            );
            yield* writePoints(sink, writer, metric.dataPoints, seriesTable(metric.descriptor));
            exemplarBytes.trim(metric.dataPoints.length);
            break;
          }
          default:
            plan.warnUnsupported(name);
        }
      }
    }
    yield* writeText(sink, EOF);
    const last = sink.finish();
    if (last !== undefined) yield last;
  }

  #exemplarBytesOf(descriptor: MetricDescriptor): ExemplarBytes {
    let table = this.#exemplarBytes.get(descriptor);
    if (table === undefined) {
      table = new ExemplarBytes((exemplar) => utf8(formatExemplar(exemplar)));
      this.#exemplarBytes.set(descriptor, table);
    }
    return table;
  }

  #warnCollision(familyName: string, name: string): void {
    if (this.#warnedCollisions.has(name)) return;
    this.#warnedCollisions.add(name);
    this.#logger.warn('OpenMetrics family name already taken (a counter without _total and a metric of that name); dropping it from OpenMetrics', {
      metric_name: name,
      family: familyName,
    });
  }
}

function openMetricsType(family: Family): string {
  return family.type === 'untyped' ? 'unknown' : family.type;
}

function metadata(familyName: string, type: string, help: string, unit: string): string {
  let text = '# HELP ' + familyName + ' ' + escapeOpenMetricsHelp(help) + '\n# TYPE ' + familyName + ' ' + type + '\n';
  const word = unit ? openMetricsUnit(familyName, unit) : undefined;
  if (word !== undefined) text += '# UNIT ' + familyName + ' ' + word + '\n';
  return text;
}

/** Gauges and counters end with the point's time in seconds when asked, then the newline. */
const OPENMETRICS_SAMPLE_LINE_END: SampleLineEnd<string | undefined> = {
  maxBytes: TIMESTAMP_BYTES + 1,
  of: sampleTimestamp,
  write: (buf, pos, timestamp) => writeEnd(buf, pos, timestamp),
};

/** Histograms: cumulative `_bucket` lines with their exemplars, then `_count` and `_sum`. */
class OpenMetricsHistogramWriter {
  readonly #countName: Buffer;
  readonly #sumName: Buffer;
  readonly #bucketOpen: Buffer;
  readonly #suffix: LabelSuffix;
  readonly #additional: Attributes;
  readonly #appendTimestamp: boolean;
  readonly #lookup: ExemplarLookup | undefined;
  readonly #metricName: string;
  readonly #exemplarBytes: ExemplarBytes;
  #buckets: BucketLabels | undefined;
  /** The point being written: from its row when the stream has rows (`histogramRowsOf`), else from the point. */
  readonly #values: HistogramValues;
  readonly #own: OwnLabels = emptyOwnLabels();
  readonly #ownAt: OwnAt = { start: -1, end: -1 };
  #table: SeriesTable | undefined;
  #index = 0;
  #timestamp: string | undefined;
  /** Per bucket of the current point: its exemplar's bytes, or undefined. */
  readonly #lineExemplars: Array<Buffer | undefined> = [];

  constructor(
    name: string,
    additional: Attributes,
    appendTimestamp: boolean,
    lookup: ExemplarLookup | undefined,
    metricName: string,
    exemplarBytes: ExemplarBytes,
    rows?: HistogramRows,
  ) {
    this.#values = new HistogramValues(rows);
    this.#countName = utf8(name + '_count');
    this.#sumName = utf8(name + '_sum');
    this.#bucketOpen = utf8(name + '_bucket{');
    this.#additional = additional;
    this.#suffix = new LabelSuffix(formatLabels(additional));
    this.#appendTimestamp = appendTimestamp;
    this.#lookup = lookup;
    this.#metricName = metricName;
    this.#exemplarBytes = exemplarBytes;
  }

  prepare(point: DataPoint<Histogram>, table: SeriesTable, index: number): number {
    const values = this.#values;
    values.load(point, index);
    const attributes = values.attributes;
    table.prepare(index, attributes, this.#own);
    this.#table = table;
    this.#index = index;
    this.#timestamp = sampleTimestamp(point, this.#appendTimestamp);
    const boundaries = values.boundaries;
    const buckets = this.#bucketLabels(boundaries);
    const exemplarBytes = this.#prepareExemplars(index, attributes, boundaries, values.countsLength);
    const lines = 2 + values.countsLength;
    const perLine =
      this.#bucketOpen.length +
      2 +
      this.#own.length +
      Math.max(buckets.longestTail, this.#suffix.afterOwn.length, this.#suffix.withoutOwn.length) +
      MAX_NUMBER_BYTES +
      TIMESTAMP_BYTES +
      1;
    return lines * perLine + exemplarBytes;
  }

  /** Looks the point's exemplars up and keeps the bytes of those that lie in their bucket; returns their size. */
  #prepareExemplars(index: number, attributes: Attributes, boundaries: readonly number[], buckets: number): number {
    const lines = this.#lineExemplars;
    lines.length = 0;
    const found = this.#lookup?.histogramExemplars(this.#metricName, attributes);
    if (found === undefined) return 0;
    let bytes = 0;
    for (let i = 0; i < buckets && i < found.length; i++) {
      const exemplar = found[i];
      if (exemplar === undefined) continue;
      const encoded = this.#exemplarBytes.bytes(index, i, exemplar, boundaries, buckets);
      if (encoded === undefined) continue;
      lines[i] = encoded;
      bytes += encoded.length;
    }
    return bytes;
  }

  write(sink: ByteSink): void {
    const table = this.#table;
    if (table === undefined) return;
    const values = this.#values;
    const own = this.#own;
    const ownAt = unwritten(this.#ownAt);
    const timestamp = this.#timestamp;
    const exemplars = this.#lineExemplars;
    // Exemplars come from outside the point: each encoded one is an input of the chunk too (by bucket).
    for (let i = 0; i < exemplars.length; i++) sink.input(exemplars[i]);
    const buf = sink.buf;
    let pos = sink.pos;
    const boundaries = values.boundaries;
    const counts = values.counts;
    const countsAt = values.countsAt;
    const buckets = this.#bucketLabels(boundaries);
    let limit = values.countsLength;
    if (buckets.hasInfinity && limit > boundaries.length) limit = boundaries.length;
    const { common, rests } = own.length > 0 ? buckets.splitAfterOwn : buckets.split;
    const lastRest = rests[rests.length - 1];
    // As in the text format: the head `name_bucket{own,additional,le="` once, then one copy of it a line.
    let head: Buffer | undefined;
    let cumulative = 0;
    for (let i = 0; i < limit; i++) {
      cumulative += counts[countsAt + i] ?? 0;
      if (head === undefined) {
        const headStart = pos;
        buf.set(this.#bucketOpen, pos);
        pos += this.#bucketOpen.length;
        pos = writeOwn(buf, pos, own, ownAt);
        buf.set(common, pos);
        pos += common.length;
        head = buf.subarray(headStart, pos);
      } else {
        buf.set(head, pos);
        pos += head.length;
      }
      const rest = i < rests.length ? rests[i] : lastRest;
      if (rest !== undefined) {
        for (let k = 0; k < rest.length; k++) buf[pos + k] = rest[k] as number;
        pos += rest.length;
      }
      pos = writeEnd(buf, writeNumber(buf, pos, cumulative, formatValue), timestamp, exemplars[i]);
    }
    const count = values.count;
    const sum = values.sum;
    if (count !== undefined) {
      pos = writeSeries(buf, pos, this.#countName, own, ownAt, this.#suffix);
      pos = writeEnd(buf, writeNumber(buf, pos, count, formatValue), timestamp);
    }
    if (sum !== undefined) {
      pos = writeSeries(buf, pos, this.#sumName, own, ownAt, this.#suffix);
      pos = writeEnd(buf, table.writeSum(buf, pos, this.#index, sum), timestamp);
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
