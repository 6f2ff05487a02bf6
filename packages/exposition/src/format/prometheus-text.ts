import type { Attributes } from '@opentelemetry/api';
import type { DataPoint, Histogram, MetricData } from '@opentelemetry/sdk-metrics';
import { histogramRowsOf } from '../collect/histogram-rows.js';
import { type ByteSink, NEWLINE, writeNumber } from './byte-sink.js';
import { TARGET_INFO, TARGET_INFO_HELP, type Family, type FamilyOptions } from './families.js';
import { FamilySerializer, type FamilyFormat } from './family-walk.js';
import { bucketLineCount, HistogramPoint, SampleWriter, writeBucketRest, type PointWriter, type SampleLineEnd } from './line-writers.js';
import type { SeriesTable } from './series-text-cache.js';
import { braceLabels, escapeHelp, formatValue, NO_REGISTERED_METRICS } from './text-syntax.js';

export interface PrometheusSerializerOptions extends FamilyOptions {
  /** Append the data point's end time (Unix ms) to each sample. Default false. */
  readonly appendTimestamp?: boolean;
}

/** A plain newline, or ` <timestamp>\n` (upstream's millisecond timestamps fit in 30 characters). */
const LINE_END_BYTES = 32;

/**
 * Writes the text exposition format of one `collect()` result, the way `@opentelemetry/exporter-prometheus`
 * 0.301 does (same families, order, names, labels and values), but without an object or a string per line:
 * each data point's label text is built and UTF-8-encoded once and its other lines copy those bytes, the
 * `le` label tails are encoded once per metric and boundary set, and the bytes come out in chunks, so a
 * large scrape never exists as one string or one buffer.
 */
export class PrometheusTextSerializer extends FamilySerializer {
  readonly #format: FamilyFormat;

  constructor(options: PrometheusSerializerOptions = {}) {
    super(options);
    this.#format = prometheusTextFormat(options.appendTimestamp ?? false);
  }

  protected override format(): FamilyFormat {
    return this.#format;
  }
}

function prometheusTextFormat(appendTimestamp: boolean): FamilyFormat {
  const sampleLineEnd: SampleLineEnd<string | undefined> = { maxBytes: LINE_END_BYTES, of: timestampLineEnd, write: writeLineEnd };
  return {
    familyName: (name) => name,
    targetInfo: (name, family, resourceLabels) => metadata(name, family, TARGET_INFO_HELP) + TARGET_INFO + braceLabels(resourceLabels, '') + ' 1\n',
    metadata: (name, family) => metadata(name, family, 'description missing'),
    samples: (name, additional) => new SampleWriter(name, additional, appendTimestamp, sampleLineEnd),
    histogram: (name, additional, metric) => new HistogramWriter(name, additional, appendTimestamp, metric),
    end: (wroteMetric) => (wroteMetric ? '' : NO_REGISTERED_METRICS),
  };
}

function metadata(name: string, family: Family, missingHelp: string): string {
  let text = '# HELP ' + name + ' ' + escapeHelp(family.help || missingHelp) + '\n';
  if (family.unit) text += '# UNIT ' + name + ' ' + escapeHelp(family.unit) + '\n';
  return text + '# TYPE ' + name + ' ' + family.type + '\n';
}

/** ` <ms>\n` with upstream's millisecond arithmetic, or undefined for a plain newline. */
function timestampLineEnd(point: DataPoint<unknown>, appendTimestamp: boolean): string | undefined {
  if (!appendTimestamp) return undefined;
  const [seconds, nanos] = point.endTime;
  return ' ' + String(seconds * 1e3 + nanos / 1e6) + '\n';
}

function writeLineEnd(buf: Buffer, pos: number, lineEnd: string | undefined): number {
  if (lineEnd === undefined) {
    buf[pos] = NEWLINE;
    return pos + 1;
  }
  return pos + buf.write(lineEnd, pos, 'latin1');
}

const OPEN_BRACE = 0x7b;

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

/**
 * Histograms: `_count`, `_sum`, then cumulative `_bucket` lines. A data point's own label text is encoded once
 * and copied as bytes to its other lines.
 */
class HistogramWriter implements PointWriter<DataPoint<Histogram>> {
  readonly #point: HistogramPoint;
  readonly #appendTimestamp: boolean;
  #lineEnd: string | undefined;

  constructor(name: string, additional: Attributes, appendTimestamp: boolean, metric: MetricData) {
    this.#point = new HistogramPoint(name, additional, histogramRowsOf(metric));
    this.#appendTimestamp = appendTimestamp;
  }

  prepare(point: DataPoint<Histogram>, table: SeriesTable, index: number): number {
    this.#lineEnd = timestampLineEnd(point, this.#appendTimestamp);
    return this.#point.load(point, table, index, LINE_END_BYTES);
  }

  /**
   * Builtin calls, not bytes, are what a line costs here: a `copyWithin` or `Buffer.copy` with offsets costs
   * about twice a `set`. So the own labels are one view set where they appear, and each bucket line is one `set`
   * of the point's head (`name_bucket{own,additional,le="`) plus the few bytes of its `le` rest written in a loop.
   */
  write(sink: ByteSink): void {
    const point = this.#point;
    const table = point.table;
    if (table === undefined) return;
    const values = point.values;
    const own = point.own;
    const lineEnd = this.#lineEnd;
    const suffix = own.length > 0 ? point.suffix.afterOwn : point.suffix.withoutOwn;
    const buf = sink.buf;
    let pos = sink.pos;
    const ownBytes = own.length > 0 ? view(own.slab, own.start, own.length) : undefined;
    // Upstream writes `_count` then `_sum`, and skips `_sum` when the SDK leaves it out (instruments that
    // may record negative values).
    const count = values.count;
    const sum = values.sum;
    if (count !== undefined) {
      buf.set(point.countName, pos);
      pos = writeLabelBlock(buf, pos + point.countName.length, ownBytes, suffix);
      pos = writeLineEnd(buf, writeNumber(buf, pos, count, formatValue), lineEnd);
    }
    if (sum !== undefined) {
      buf.set(point.sumName, pos);
      pos = writeLabelBlock(buf, pos + point.sumName.length, ownBytes, suffix);
      pos = writeLineEnd(buf, table.writeSum(buf, pos, point.index, sum), lineEnd);
    }
    const counts = values.counts;
    const countsAt = values.countsAt;
    const buckets = point.bucketLabels(values.boundaries);
    const limit = bucketLineCount(values, buckets);
    if (limit === 0) {
      sink.pos = pos;
      return;
    }
    const { common, rests } = ownBytes !== undefined ? buckets.splitAfterOwn : buckets.split;
    // The head, written once: `name_bucket{`, the own labels, `…,le="`.
    const headStart = pos;
    buf.set(point.bucketOpen, pos);
    pos += point.bucketOpen.length;
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
      pos = writeBucketRest(buf, pos, rests, i);
      pos = writeLineEnd(buf, writeNumber(buf, pos, cumulative, formatValue), lineEnd);
    }
    sink.pos = pos;
  }
}
