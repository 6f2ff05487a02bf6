/**
 * What a scrape would otherwise rebuild for every series although it rarely changes: the UTF-8 bytes of a data
 * point's own labels (`k="v",k="v"`) and the text of a histogram's sum. Between scrapes almost every series is
 * unchanged, and the SDK hands out the same attributes object for a series on every collection (its
 * cumulative storage keeps the first attributes object a series was recorded with and hashes it only once, so
 * it treats that object as immutable too), in the same order (its storage is an insertion-ordered map). So the
 * bytes are kept per metric stream, by position, each entry checked against the data point's attributes object
 * before it is used: a series seen for the first time, or moved, gets its labels formatted again; a sum is
 * printed again only when it changed.
 *
 * Nothing here can go stale: the label bytes are a function of the attributes object alone (not of the scope,
 * resource, prefix or options, which live in the per-metric label parts), and a sum's text is reused only for
 * the very same number. Series past the end of the last rendering are dropped, and a metric stream that goes
 * away takes its table with it (the map is weak).
 */

import type { Attributes } from '@opentelemetry/api';
import type { MetricDescriptor } from '@opentelemetry/sdk-metrics';
import { formatLabels, formatValue } from './format.js';

export interface SeriesBytes {
  readonly attributes: Attributes;
  /** `k="v",k="v"` as UTF-8; empty for no attributes. */
  readonly own: Buffer;
  /** The last sum written for this series and its text (latin1: digits, `.`, `e`, `+`, `-`, `Inf`, `NaN`). */
  sum: number;
  sumBytes: Buffer | undefined;
}

/** The own labels of a data point without attributes. */
export const EMPTY_LABELS: Buffer = Buffer.alloc(0);

/** Per metric stream (the SDK keeps one descriptor object per stream): its series' bytes, by data point index. */
const tables = new WeakMap<MetricDescriptor, SeriesBytes[]>();

/** The series table of one metric stream; `seriesAt` reads and fills it. */
export function seriesTable(descriptor: MetricDescriptor): SeriesBytes[] {
  let table = tables.get(descriptor);
  if (table === undefined) {
    table = [];
    tables.set(descriptor, table);
  }
  return table;
}

/** The bytes of the series at `index` of a metric stream, rebuilt when another attributes object is there now. */
export function seriesAt(table: SeriesBytes[], index: number, attributes: Attributes): SeriesBytes {
  const cached = table[index];
  if (cached !== undefined && cached.attributes === attributes) return cached;
  const text = formatLabels(attributes);
  const entry: SeriesBytes = {
    attributes,
    own: text.length === 0 ? EMPTY_LABELS : Buffer.from(text, 'utf8'),
    sum: Number.NaN,
    sumBytes: undefined,
  };
  table[index] = entry;
  return entry;
}

/** After a metric stream of `points` data points was written: entries past its end belong to no series now. */
export function trimSeriesTable(table: SeriesBytes[], points: number): void {
  if (table.length > points) table.length = points;
}

/** Writes `sum` as `formatValue` prints it, reusing the series' bytes of the same number; returns the new position. */
export function writeSum(buf: Buffer, pos: number, entry: SeriesBytes, sum: number): number {
  let bytes = entry.sumBytes;
  if (bytes === undefined || entry.sum !== sum) {
    bytes = Buffer.from(formatValue(sum), 'latin1');
    entry.sum = sum;
    entry.sumBytes = bytes;
  }
  buf.set(bytes, pos);
  return pos + bytes.length;
}
