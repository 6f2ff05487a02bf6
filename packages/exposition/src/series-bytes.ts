/**
 * What a scrape would otherwise rebuild for every series although it rarely changes: the UTF-8 bytes of a data
 * point's own labels (`k="v",k="v"`) and the text of a histogram's sum. Between scrapes almost every series is
 * unchanged, and the SDK hands out the same attributes object for a series on every collection (its
 * cumulative storage keeps the first attributes object a series was recorded with, and hashes it only once,
 * so it treats that object as immutable too), so both are kept per attributes object and built only for a
 * series seen for the first time (labels) or whose sum changed (sum). At 100k series with four labels this
 * takes the label formatting, UTF-8 encoding and float printing out of the scrape, for about 15 MB.
 *
 * Nothing here can go stale: the label bytes are a function of the attributes object alone (not of the scope,
 * resource, prefix or options, which live in the per-metric label parts), and a sum's text is reused only for
 * the very same number. A series that goes away takes its entry with it (the map is weak).
 */

import type { Attributes } from '@opentelemetry/api';
import { formatLabels, formatValue } from './format.js';

export interface SeriesBytes {
  /** `k="v",k="v"` as UTF-8; empty for no attributes. */
  readonly own: Buffer;
  /** The last sum written for this series and its text (latin1: digits, `.`, `e`, `+`, `-`, `Inf`, `NaN`). */
  sum: number;
  sumBytes: Buffer | undefined;
}

/** The own labels of a data point without attributes. */
export const EMPTY_LABELS: Buffer = Buffer.alloc(0);

const cache = new WeakMap<Attributes, SeriesBytes>();

/** The cached bytes of a data point's own labels (built on first sight of this attributes object). */
export function seriesBytes(attributes: Attributes): SeriesBytes {
  let entry = cache.get(attributes);
  if (entry === undefined) {
    const text = formatLabels(attributes);
    entry = { own: text.length === 0 ? EMPTY_LABELS : Buffer.from(text, 'utf8'), sum: Number.NaN, sumBytes: undefined };
    cache.set(attributes, entry);
  }
  return entry;
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
