/**
 * A histogram stream's cumulative values as flat arrays, one row per series, beside the data point objects a
 * collection hands out. Rendering from the points chases four pointers a series (point, value, buckets, counts)
 * through a large heap, and those cache misses, not the bytes, are most of a big scrape's rendering time. Rows
 * are read front to back.
 *
 * A collection's rows are its own: they are pages no later collection writes (a change copies its page first), so a
 * scrape still being written reads what it collected, whatever later collections change.
 */

import type { Attributes } from '@opentelemetry/api';
import type { DataPoint, Histogram, MetricData } from '@opentelemetry/sdk-metrics';

/** Rows a page holds. A collection shares the pages nothing changed since the last one; a change copies its page. */
export const PAGE_ROWS = 64;
const PAGE_SHIFT = 6;
const PAGE_MASK = PAGE_ROWS - 1;

/** `PAGE_ROWS` rows: never written again once a collection holds the page. */
export interface RowPage {
  /** `stride` numbers per row, rows one after another. */
  readonly values: Float64Array;
  /** 1 where the series has a sum (the SDK leaves it out for instruments that may record negative values). */
  readonly hasSum: Uint8Array;
  /** Each row's attributes object: the data point's own. */
  readonly attributes: readonly Attributes[];
}

export interface HistogramRows {
  /** Rows held: row `i` is the series of the stream's data point `i`. */
  readonly length: number;
  /** The bucket boundaries of every row (one array for the whole stream). */
  readonly boundaries: readonly number[];
  /** Numbers per row: `count`, `sum`, then one per bucket. */
  readonly stride: number;
  /** Row `i` is row `i % PAGE_ROWS` of page `i / PAGE_ROWS` (see `rowPage`, `rowSlot`). */
  readonly pages: readonly RowPage[];
}

/** The page that holds row `index`. */
export function rowPage(rows: HistogramRows, index: number): RowPage {
  return rows.pages[index >> PAGE_SHIFT] as RowPage;
}

/** Row `index`'s place in its page. */
export function rowSlot(index: number): number {
  return index & PAGE_MASK;
}

/** The offset of a row's first bucket count in `values`. */
export const ROW_COUNTS_OFFSET = 2;

const rowsOfMetric = new WeakMap<MetricData, HistogramRows>();

/** The rows of a collection's histogram stream, or undefined when it has none (render from its points). */
export function histogramRowsOf(metric: MetricData): HistogramRows | undefined {
  const rows = rowsOfMetric.get(metric);
  return rows !== undefined && rows.length === metric.dataPoints.length ? rows : undefined;
}

/** Says that `metric`'s data points are exactly `rows` (same series, same order, same numbers). */
export function attachHistogramRows(metric: MetricData, rows: HistogramRows): void {
  rowsOfMetric.set(metric, rows);
}

interface WritablePage {
  readonly values: Float64Array;
  readonly hasSum: Uint8Array;
  readonly attributes: Attributes[];
}

/**
 * Growing rows of one stream, written as its series change; `snapshot` hands a collection the pages as they are.
 * A page a snapshot holds is copied before its next write, so a collection after a few series changed copies a
 * few pages, not every row.
 */
export class HistogramRowStore {
  readonly boundaries: readonly number[];
  readonly stride: number;
  readonly #pages: WritablePage[] = [];
  /** 1 where a snapshot holds page `i`. */
  #held = new Uint8Array(16);
  #length = 0;

  constructor(boundaries: readonly number[], buckets: number) {
    this.boundaries = boundaries;
    this.stride = ROW_COUNTS_OFFSET + buckets;
  }

  get length(): number {
    return this.#length;
  }

  /** True when a series with these boundaries and bucket count fits the rows. */
  fits(boundaries: readonly number[], buckets: number): boolean {
    if (buckets + ROW_COUNTS_OFFSET !== this.stride) return false;
    if (boundaries === this.boundaries) return true;
    if (boundaries.length !== this.boundaries.length) return false;
    for (let i = 0; i < boundaries.length; i++) if (!Object.is(boundaries[i], this.boundaries[i])) return false;
    return true;
  }

  /** Writes row `index` (the next new one, or an existing one). */
  set(index: number, attributes: Attributes, count: number, sum: number | undefined, counts: readonly number[]): void {
    if (index > this.#length) throw new RangeError(`row ${index} after ${this.#length} rows`);
    if (index === this.#length) this.#length++;
    const page = this.#writable(index >> PAGE_SHIFT);
    const slot = index & PAGE_MASK;
    page.attributes[slot] = attributes;
    const values = page.values;
    const at = slot * this.stride;
    values[at] = count;
    values[at + 1] = sum ?? 0;
    page.hasSum[slot] = sum === undefined ? 0 : 1;
    for (let i = 0; i < this.stride - ROW_COUNTS_OFFSET; i++) values[at + ROW_COUNTS_OFFSET + i] = counts[i] ?? 0;
  }

  snapshot(): HistogramRows {
    this.#held.fill(1, 0, this.#pages.length);
    return { length: this.#length, boundaries: this.boundaries, stride: this.stride, pages: this.#pages.slice() };
  }

  /** Page `at`, new or copied when a snapshot holds it. */
  #writable(at: number): WritablePage {
    const page = this.#pages[at];
    if (page !== undefined && this.#held[at] === 0) return page;
    if (at >= this.#held.length) {
      const held = new Uint8Array(Math.max(at + 1, 2 * this.#held.length));
      held.set(this.#held);
      this.#held = held;
    }
    const fresh: WritablePage =
      page === undefined
        ? { values: new Float64Array(PAGE_ROWS * this.stride), hasSum: new Uint8Array(PAGE_ROWS), attributes: [] }
        : { values: page.values.slice(), hasSum: page.hasSum.slice(), attributes: page.attributes.slice() };
    this.#pages[at] = fresh;
    this.#held[at] = 0;
    return fresh;
  }
}

/**
 * The numbers of the histogram point a writer is on, from its row when the stream has rows (nothing of the point
 * is read then), otherwise from the point. One per writer, loaded per point: no object per series.
 */
export class HistogramValues {
  readonly #rows: HistogramRows | undefined;
  attributes: Attributes = {};
  count: number | undefined;
  sum: number | undefined;
  boundaries: readonly number[] = [];
  /** The bucket counts are `counts[countsAt]` to `counts[countsAt + countsLength - 1]`. */
  counts: ArrayLike<number> = [];
  countsAt = 0;
  countsLength = 0;

  constructor(rows: HistogramRows | undefined) {
    this.#rows = rows;
  }

  /** Loads data point `index` of the stream (`point`). */
  load(point: DataPoint<Histogram>, index: number): void {
    const rows = this.#rows;
    if (rows === undefined) {
      const value = point.value;
      this.attributes = point.attributes;
      this.count = value.count ?? undefined;
      this.sum = value.sum ?? undefined;
      this.boundaries = value.buckets.boundaries;
      this.counts = value.buckets.counts;
      this.countsAt = 0;
      this.countsLength = value.buckets.counts.length;
      return;
    }
    const page = rowPage(rows, index);
    const slot = rowSlot(index);
    const at = slot * rows.stride;
    this.attributes = page.attributes[slot] as Attributes;
    this.count = page.values[at];
    this.sum = page.hasSum[slot] === 1 ? page.values[at + 1] : undefined;
    this.boundaries = rows.boundaries;
    this.counts = page.values;
    this.countsAt = at + ROW_COUNTS_OFFSET;
    this.countsLength = rows.stride - ROW_COUNTS_OFFSET;
  }
}
