/**
 * The pieces both text formats write their sample lines with: a data point's label bytes copied from the series
 * table, the label parts every line of a metric shares, the `le` tails of histogram buckets, and the loop that
 * fills chunks point by point.
 */

import type { Attributes } from '@opentelemetry/api';
import type { DataPoint, Histogram } from '@opentelemetry/sdk-metrics';
import { HistogramValues, type HistogramRows } from '../collect/histogram-rows.js';
import { type ByteSink, MAX_NUMBER_BYTES, maxUtf8Bytes, utf8, writeNumber } from './byte-sink.js';
import { emptyOwnLabels, type OwnLabels, type SeriesTable } from './series-text-cache.js';
import { formatBucketBound, formatLabels, formatValue } from './text-syntax.js';

const OPEN_BRACE = 0x7b;

/** Writes one data point's lines at a time into a sink: `prepare` says how many bytes, `write` writes them. */
export interface PointWriter<P> {
  /** Loads the point (`index` in its stream); returns an upper bound of the bytes `write` needs. */
  prepare(point: P, table: SeriesTable, index: number): number;
  write(sink: ByteSink): void;
  /** After the stream's last point: `points` were written. */
  finish?(points: number): void;
  /**
   * What a point's lines are written from besides the point, looked up anew (OpenMetrics: its exemplars' bytes),
   * in the order `write` records them as chunk inputs: a histogram page's kept text is used only while these are
   * the same objects (see `page-text-cache.ts`).
   */
  extraInputs?(point: P, index: number): readonly unknown[];
}

/** Text (metadata, `target_info`) written whole, after making room for it. */
export function* writeText(sink: ByteSink, text: string): Generator<Buffer, void, undefined> {
  const done = sink.room(maxUtf8Bytes(text));
  if (done !== undefined) yield done;
  sink.input(text);
  sink.text(text);
}

/** Writes each point's lines, yielding a chunk whenever the sink fills; `table` keeps the points' label bytes. */
export function* writePoints<P>(sink: ByteSink, writer: PointWriter<P>, points: readonly P[], table: SeriesTable): Generator<Buffer, void, undefined> {
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
  writer.finish?.(points.length);
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
 * Marks `at` as not written yet and returns it. Each writer reuses one: an object per data point would be a
 * short-lived object per series a scrape, which V8 pretenures into the old generation, where only a full
 * collection frees them.
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

/** How a format ends a gauge's or counter's line: what it derives from the point, and how it writes that. */
export interface SampleLineEnd<E> {
  /** Bytes the end takes at most. */
  readonly maxBytes: number;
  of(point: DataPoint<number>, appendTimestamp: boolean): E;
  write(buf: Buffer, pos: number, end: E): number;
}

/** Gauges and counters: one line per data point, `name{labels} value` and the format's line end. */
export class SampleWriter<E> implements PointWriter<DataPoint<number>> {
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
 * What a histogram writer of either format knows of the point it is on: the metric's line names and label
 * parts, built once per metric, and the point's values and label bytes, loaded per point. The `le` label tails
 * depend only on the metric's scope/resource labels and the boundary array (one per instrument), so they are
 * built once per metric too.
 */
export class HistogramPoint {
  readonly countName: Buffer;
  readonly sumName: Buffer;
  /** `name_bucket{`. */
  readonly bucketOpen: Buffer;
  readonly suffix: LabelSuffix;
  /** The point being written: from its row when the stream has rows (`histogramRowsOf`), else from the point. */
  readonly values: HistogramValues;
  readonly own: OwnLabels = emptyOwnLabels();
  table: SeriesTable | undefined;
  index = 0;
  readonly #additional: Attributes;
  #buckets: BucketLabels | undefined;

  constructor(name: string, additional: Attributes, rows: HistogramRows | undefined) {
    this.countName = utf8(name + '_count');
    this.sumName = utf8(name + '_sum');
    this.bucketOpen = utf8(name + '_bucket{');
    this.#additional = additional;
    this.suffix = new LabelSuffix(formatLabels(additional));
    this.values = new HistogramValues(rows);
  }

  /** Loads point `index`; returns the bytes its lines take at most when each ends in at most `lineEndBytes`. */
  load(point: DataPoint<Histogram>, table: SeriesTable, index: number, lineEndBytes: number): number {
    const values = this.values;
    values.load(point, index);
    table.prepare(index, values.attributes, this.own);
    this.table = table;
    this.index = index;
    const buckets = this.bucketLabels(values.boundaries);
    const lines = 2 + values.countsLength;
    const perLine =
      this.bucketOpen.length +
      2 +
      this.own.length +
      Math.max(buckets.longestTail, this.suffix.afterOwn.length, this.suffix.withoutOwn.length) +
      MAX_NUMBER_BYTES +
      lineEndBytes;
    return lines * perLine;
  }

  bucketLabels(boundaries: readonly number[]): BucketLabels {
    const cached = this.#buckets;
    if (cached !== undefined && cached.boundaries === boundaries) return cached;
    const built = bucketLabelsFor(boundaries, this.#additional);
    this.#buckets = built;
    return built;
  }
}

/** How many bucket lines the point gets: upstream stops at a boundary array's own `Infinity`. */
export function bucketLineCount(values: HistogramValues, buckets: BucketLabels): number {
  const limit = values.countsLength;
  return buckets.hasInfinity && limit > values.boundaries.length ? values.boundaries.length : limit;
}

/** Writes bucket `i`'s `le` rest (`0.5"} `) at `pos` in a loop: for these few bytes a builtin call costs more. */
export function writeBucketRest(buf: Buffer, pos: number, rests: readonly Buffer[], i: number): number {
  const rest = i < rests.length ? rests[i] : rests[rests.length - 1];
  if (rest === undefined) return pos;
  for (let k = 0; k < rest.length; k++) buf[pos + k] = rest[k] as number;
  return pos + rest.length;
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
