/**
 * The rendered text of histogram row pages, kept between scrapes. A row page is never written again once a
 * collection holds it (a change copies the page first, see `collect/histogram-rows.ts`), and a series' lines are a
 * function of its row, its attributes object (in the page), the writer's fixed parts (name, scope labels,
 * boundaries) and, in OpenMetrics, its exemplars: so while a page object comes back with the same exemplars, its
 * text is the same bytes, and writing it is one copy instead of twelve lines per series. Between two scrapes
 * almost every page comes back (0.1 % of the series changing a minute touches a few of 1 600 pages at 100k
 * series), which leaves a scrape mostly the copying that serving pre-rendered bytes costs too.
 *
 * Memory: the text of the histogram series, about the size of their part of the body (2.5 KB a series with the
 * four labels of Coder PR #24179), once: a page holds the text of one serializer (one format), the first to write
 * it, until that one has not written for `IDLE_MILLIS`; another format's scrapes meanwhile write the page as
 * usual (so an occasional curl in the text format next to a Prometheus asking for OpenMetrics neither doubles the
 * memory nor makes the two take turns rewriting every page). A page that leaves the rows takes its text along.
 */

import type { DataPoint, Histogram } from '@opentelemetry/sdk-metrics';
import { PAGE_ROWS, rowPage, type HistogramRows, type RowPage } from '../collect/histogram-rows.js';
import type { ByteSink } from './byte-sink.js';
import type { PointWriter } from './line-writers.js';
import type { SeriesTable } from './series-text-cache.js';

interface PageText {
  /** The serializer whose text this is. */
  readonly holder: PageTexts;
  readonly bytes: Uint8Array;
  /** The inputs the points' lines took besides the points (`extraInputs`): per point their count, then them. */
  readonly extras: readonly unknown[];
}

/** How long a serializer keeps its hold on page texts after its last rendering, against another one's. */
export const IDLE_MILLIS = 5 * 60_000;

/**
 * By page object: a page a collection held is never written again, not even its last rows (a new series on it
 * copies it too), so the same object means the same rows, attributes and numbers. Pages belong to one reader's rows.
 */
const pageTexts = new WeakMap<RowPage, PageText>();

/** One serializer's claim on page texts (it fixes the format and the options the text was written with). */
export class PageTexts {
  #lastUsed = Number.NEGATIVE_INFINITY;

  /** A rendering starts at `now`. */
  use(now: number = Date.now()): void {
    this.#lastUsed = now;
  }

  /** The text this serializer wrote for `page`, if the page holds it. */
  get(page: RowPage): PageText | undefined {
    const text = pageTexts.get(page);
    return text?.holder === this ? text : undefined;
  }

  /** Keeps the text of `page`, unless another serializer that wrote within `IDLE_MILLIS` holds it. */
  set(page: RowPage, bytes: Uint8Array, extras: readonly unknown[], now: number = Date.now()): void {
    const held = pageTexts.get(page);
    if (held !== undefined && held.holder !== this && now - held.holder.#lastUsed <= IDLE_MILLIS) return;
    pageTexts.set(page, { holder: this, bytes, extras });
  }
}

/**
 * `writePoints` for a histogram stream with rows: a page whose text is cached (and whose extra inputs are the
 * same) is copied whole; another is written point by point and, when it landed in one chunk, its text kept for the
 * next scrape. Either way the chunk's inputs are the page and the points' extra inputs (see `ByteSink.input`).
 */
export function* writeHistogramPages(
  sink: ByteSink,
  writer: PointWriter<DataPoint<Histogram>>,
  points: readonly DataPoint<Histogram>[],
  table: SeriesTable,
  rows: HistogramRows,
  texts: PageTexts,
): Generator<Buffer, void, undefined> {
  const extras: unknown[] = [];
  for (let base = 0; base < points.length; base += PAGE_ROWS) {
    const end = Math.min(points.length, base + PAGE_ROWS);
    const page = rowPage(rows, base);
    const cached = texts.get(page);
    extras.length = 0;
    if (writer.extraInputs !== undefined) {
      for (let i = base; i < end; i++) {
        const inputs = writer.extraInputs(points[i] as DataPoint<Histogram>, i);
        // Each point's count first: they differ by point (a bucket without an exemplar at the end is left out).
        extras.push(inputs.length);
        for (let k = 0; k < inputs.length; k++) extras.push(inputs[k]);
      }
    }
    if (cached !== undefined && sameInputs(cached.extras, extras)) {
      const done = sink.room(cached.bytes.length);
      if (done !== undefined) yield done;
      // The inputs a fresh rendering of the page records: the page (its points' rows), then each point's extras.
      sink.input(page);
      for (let e = 0; e < extras.length; ) {
        const count = extras[e++] as number;
        for (let k = 0; k < count; k++) sink.input(extras[e++]);
      }
      sink.buf.set(cached.bytes, sink.pos);
      sink.pos += cached.bytes.length;
      if (sink.full) yield sink.take();
      continue;
    }
    let whole = true;
    let pageBuf: Buffer | undefined;
    let pageStart = 0;
    for (let i = base; i < end; i++) {
      const point = points[i] as DataPoint<Histogram>;
      const bound = writer.prepare(point, table, i);
      // The first point's bound for the whole page (bounds are generous): the page most likely lands in one chunk.
      const done = sink.room(i === base ? bound * (end - base) : bound);
      if (done !== undefined) {
        if (i > base) whole = false;
        yield done;
      }
      if (i === base) {
        pageBuf = sink.buf;
        pageStart = sink.pos;
      }
      // The page stands for its points' rows (a chunk's inputs must determine its bytes); a chunk that starts
      // inside the page records it again.
      if (i === base || done !== undefined) sink.input(page);
      writer.write(sink);
    }
    if (whole && sink.buf === pageBuf) {
      const bytes = new Uint8Array(sink.pos - pageStart);
      bytes.set(sink.buf.subarray(pageStart, sink.pos));
      texts.set(page, bytes, extras.slice());
    }
    if (sink.full) yield sink.take();
  }
  table.trim(points.length);
  writer.finish?.(points.length);
}

function sameInputs(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
