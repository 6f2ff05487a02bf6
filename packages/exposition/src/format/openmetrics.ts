/**
 * OpenMetrics 1.0 text: the same families, names, labels and values as the Prometheus text format (so a
 * scraper gets the same series whichever it asks for), plus what only OpenMetrics can say: exemplars on
 * histogram bucket lines, `# UNIT`, counters as counter families (`# TYPE x counter`, sample `x_total`),
 * `target_info` as an info family, timestamps in seconds, and the closing `# EOF`.
 */

import type { Attributes } from '@opentelemetry/api';
import type { DataPoint, Histogram, MetricData, MetricDescriptor } from '@opentelemetry/sdk-metrics';
import { histogramRowsOf } from '../collect/histogram-rows.js';
import { diagLogger, type Logger } from '../logger.js';
import { type ByteSink, NEWLINE, utf8, writeNumber } from './byte-sink.js';
import type { Exemplar, ExemplarLookup } from './exemplar.js';
import { ExemplarBytes } from './exemplar-bytes.js';
import { TARGET_INFO, type Family } from './families.js';
import { FamilySerializer, type FamilyFormat } from './family-walk.js';
import { bucketLineCount, HistogramPoint, SampleWriter, unwritten, writeBucketRest, writeOwn, writeSeries, type OwnAt, type PointWriter, type SampleLineEnd } from './line-writers.js';
import type { PrometheusSerializerOptions } from './prometheus-text.js';
import type { SeriesTable } from './series-text-cache.js';
import { escapeLabelValue, formatValue, sanitizeLabelName } from './text-syntax.js';

export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

export interface OpenMetricsSerializerOptions extends PrometheusSerializerOptions {
  /** Where histogram exemplars come from. Default none: bucket lines without exemplars. */
  readonly exemplars?: ExemplarLookup;
}

const EOF = '# EOF\n';
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
 * `PrometheusTextSerializer` writes the text format (the same family walk, so both agree on what a scrape
 * contains): each data point's label text is encoded once, `le` tails once per metric, and each exemplar
 * once for as long as it stays the bucket's latest.
 */
export class OpenMetricsSerializer extends FamilySerializer {
  readonly #appendTimestamp: boolean;
  readonly #exemplars: ExemplarLookup | undefined;
  readonly #logger: Logger;
  /** Encoded exemplars per histogram stream (see `ExemplarBytes`). */
  readonly #exemplarBytes = new WeakMap<MetricDescriptor, ExemplarBytes>();
  readonly #warnedCollisions = new Set<string>();

  constructor(options: OpenMetricsSerializerOptions = {}) {
    super(options);
    this.#appendTimestamp = options.appendTimestamp ?? false;
    this.#exemplars = options.exemplars;
    this.#logger = options.logger ?? diagLogger;
  }

  /** The format of one rendering: OpenMetrics family names are unique within a body, so they are tracked per rendering. */
  protected override format(): FamilyFormat {
    const appendTimestamp = this.#appendTimestamp;
    const familyNames = new Set<string>();
    return {
      familyName: (name, family, isTargetInfo) => {
        const omName = family.type === 'counter' && name.endsWith(TOTAL) ? name.slice(0, -TOTAL.length) : name;
        const familyName = isTargetInfo ? TARGET_FAMILY : omName;
        if (familyNames.has(familyName)) {
          this.#warnCollision(familyName, name);
          return undefined;
        }
        familyNames.add(familyName);
        return familyName;
      },
      targetInfo: (familyName, family, resourceLabels) =>
        metadata(familyName, 'info', family.help || 'Target metadata', '') + TARGET_INFO + (resourceLabels ? '{' + resourceLabels + '}' : '') + ' 1\n',
      metadata: (familyName, family) => metadata(familyName, openMetricsType(family), family.help || 'description missing', family.unit),
      samples: (name, additional) => new SampleWriter(name, additional, appendTimestamp, OPENMETRICS_SAMPLE_LINE_END),
      histogram: (name, additional, metric) =>
        new OpenMetricsHistogramWriter(name, additional, appendTimestamp, this.#exemplars, metric, this.#exemplarBytesOf(metric.descriptor)),
      end: () => EOF,
    };
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
class OpenMetricsHistogramWriter implements PointWriter<DataPoint<Histogram>> {
  readonly #point: HistogramPoint;
  readonly #appendTimestamp: boolean;
  readonly #lookup: ExemplarLookup | undefined;
  readonly #metricName: string;
  readonly #exemplarBytes: ExemplarBytes;
  readonly #ownAt: OwnAt = { start: -1, end: -1 };
  #timestamp: string | undefined;
  /** Per bucket of the current point: its exemplar's bytes, or undefined. */
  readonly #lineExemplars: Array<Buffer | undefined> = [];

  constructor(
    name: string,
    additional: Attributes,
    appendTimestamp: boolean,
    lookup: ExemplarLookup | undefined,
    metric: MetricData,
    exemplarBytes: ExemplarBytes,
  ) {
    this.#point = new HistogramPoint(name, additional, histogramRowsOf(metric));
    this.#appendTimestamp = appendTimestamp;
    this.#lookup = lookup;
    this.#metricName = metric.descriptor.name;
    this.#exemplarBytes = exemplarBytes;
  }

  prepare(point: DataPoint<Histogram>, table: SeriesTable, index: number): number {
    const bytes = this.#point.load(point, table, index, TIMESTAMP_BYTES + 1);
    this.#timestamp = sampleTimestamp(point, this.#appendTimestamp);
    const values = this.#point.values;
    return bytes + this.#prepareExemplars(index, values.attributes, values.boundaries, values.countsLength);
  }

  /** Slots past the stream's points belong to no series now. */
  finish(points: number): void {
    this.#exemplarBytes.trim(points);
  }

  /** The point's exemplars' bytes by bucket, as `write` records them. */
  extraInputs(point: DataPoint<Histogram>, index: number): readonly unknown[] {
    const values = this.#point.values;
    values.load(point, index);
    this.#prepareExemplars(index, values.attributes, values.boundaries, values.countsLength);
    return this.#lineExemplars;
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
    const point = this.#point;
    const table = point.table;
    if (table === undefined) return;
    const values = point.values;
    const own = point.own;
    const ownAt = unwritten(this.#ownAt);
    const timestamp = this.#timestamp;
    const exemplars = this.#lineExemplars;
    // Exemplars come from outside the point: each encoded one is an input of the chunk too (by bucket).
    for (let i = 0; i < exemplars.length; i++) sink.input(exemplars[i]);
    const buf = sink.buf;
    let pos = sink.pos;
    const counts = values.counts;
    const countsAt = values.countsAt;
    const buckets = point.bucketLabels(values.boundaries);
    const limit = bucketLineCount(values, buckets);
    const { common, rests } = own.length > 0 ? buckets.splitAfterOwn : buckets.split;
    // As in the text format: the head `name_bucket{own,additional,le="` once, then one copy of it a line.
    let head: Buffer | undefined;
    let cumulative = 0;
    for (let i = 0; i < limit; i++) {
      cumulative += counts[countsAt + i] ?? 0;
      if (head === undefined) {
        const headStart = pos;
        buf.set(point.bucketOpen, pos);
        pos += point.bucketOpen.length;
        pos = writeOwn(buf, pos, own, ownAt);
        buf.set(common, pos);
        pos += common.length;
        head = buf.subarray(headStart, pos);
      } else {
        buf.set(head, pos);
        pos += head.length;
      }
      pos = writeBucketRest(buf, pos, rests, i);
      pos = writeEnd(buf, writeNumber(buf, pos, cumulative, formatValue), timestamp, exemplars[i]);
    }
    const count = values.count;
    const sum = values.sum;
    if (count !== undefined) {
      pos = writeSeries(buf, pos, point.countName, own, ownAt, point.suffix);
      pos = writeEnd(buf, writeNumber(buf, pos, count, formatValue), timestamp);
    }
    if (sum !== undefined) {
      pos = writeSeries(buf, pos, point.sumName, own, ownAt, point.suffix);
      pos = writeEnd(buf, table.writeSum(buf, pos, point.index, sum), timestamp);
    }
    sink.pos = pos;
  }
}
