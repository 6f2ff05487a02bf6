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
 * the very same number. The bytes live in a few large buffers, not in an object per series, so the garbage
 * collector never has to walk them.
 */

import type { Attributes } from '@opentelemetry/api';
import type { MetricDescriptor } from '@opentelemetry/sdk-metrics';
import { formatLabels, formatValue } from './text-syntax.js';
import { MAX_NUMBER_BYTES } from './byte-sink.js';

/** Where `prepare` found a series' label bytes: valid until the next `prepare` of the same writer. */
export interface OwnLabels {
  slab: Buffer;
  start: number;
  length: number;
}

const INITIAL_SERIES = 16;
const INITIAL_SLAB_BYTES = 4096;
/** Garbage (bytes of series replaced at their position) tolerated in a slab before it is compacted. */
const MIN_GARBAGE_BYTES = 1024 * 1024;

/** The series of one metric stream by data point index: their label bytes and their last sum's text. */
export class SeriesTable {
  #attributes: Array<Attributes | undefined> = [];
  #start = new Int32Array(INITIAL_SERIES);
  #length = new Int32Array(INITIAL_SERIES);
  #slab: Buffer = Buffer.allocUnsafeSlow(INITIAL_SLAB_BYTES);
  #used = 0;
  #live = 0;
  #sums = new Float64Array(INITIAL_SERIES);
  /** Bytes of the sum's text in its slot; 0 when there is none. */
  #sumLength = new Uint8Array(INITIAL_SERIES);
  #sumText: Buffer = Buffer.allocUnsafeSlow(INITIAL_SERIES * MAX_NUMBER_BYTES);

  /** Series entries held (tests). */
  get size(): number {
    return this.#attributes.length;
  }

  /** Points `own` at the label bytes of the series at `index`, formatting them when another series was there. */
  prepare(index: number, attributes: Attributes, own: OwnLabels): void {
    if (this.#attributes[index] !== attributes) this.#replace(index, attributes);
    own.slab = this.#slab;
    own.start = this.#start[index] ?? 0;
    own.length = this.#length[index] ?? 0;
  }

  /** Writes the series' `sum` as `formatValue` prints it, reusing its text while the number stays the same. */
  writeSum(buf: Buffer, pos: number, index: number, sum: number): number {
    if (index >= this.#sums.length) this.#grow(index + 1);
    const slot = index * MAX_NUMBER_BYTES;
    let length = this.#sumLength[index] ?? 0;
    if (length === 0 || this.#sums[index] !== sum) {
      length = this.#sumText.write(formatValue(sum), slot, MAX_NUMBER_BYTES, 'latin1');
      this.#sums[index] = sum;
      this.#sumLength[index] = length;
    }
    // A loop, not `Buffer.copy`: for these few bytes the builtin call costs more than the copy.
    const text = this.#sumText;
    for (let k = 0; k < length; k++) buf[pos + k] = text[slot + k] as number;
    return pos + length;
  }

  /** After a rendering of `points` data points: entries past the end belong to no series now. */
  trim(points: number): void {
    const attributes = this.#attributes;
    for (let i = points; i < attributes.length; i++) this.#live -= this.#length[i] ?? 0;
    if (attributes.length > points) attributes.length = points;
    if (this.#used - this.#live > Math.max(MIN_GARBAGE_BYTES, this.#live)) this.#compact();
  }

  #replace(index: number, attributes: Attributes): void {
    if (index >= this.#start.length) this.#grow(index + 1);
    const text = formatLabels(attributes);
    const bytes = Buffer.byteLength(text, 'utf8');
    if (this.#used + bytes > this.#slab.length) {
      const slab = Buffer.allocUnsafeSlow(Math.max(2 * this.#slab.length, this.#used + bytes));
      this.#slab.copy(slab, 0, 0, this.#used);
      this.#slab = slab;
    }
    // Earlier bytes are never overwritten (a writer that prepared them may not have copied them yet).
    const start = this.#used;
    this.#slab.write(text, start, bytes, 'utf8');
    this.#used += bytes;
    if (this.#attributes[index] !== undefined) this.#live -= this.#length[index] ?? 0;
    for (let i = this.#attributes.length; i < index; i++) this.#attributes[i] = undefined;
    this.#attributes[index] = attributes;
    this.#start[index] = start;
    this.#length[index] = bytes;
    this.#live += bytes;
    this.#sumLength[index] = 0;
  }

  #grow(count: number): void {
    const capacity = Math.max(count, 2 * this.#start.length);
    const grown = <T extends Int32Array | Float64Array | Uint8Array>(from: T, to: T): T => {
      to.set(from);
      return to;
    };
    this.#start = grown(this.#start, new Int32Array(capacity));
    this.#length = grown(this.#length, new Int32Array(capacity));
    this.#sums = grown(this.#sums, new Float64Array(capacity));
    this.#sumLength = grown(this.#sumLength, new Uint8Array(capacity));
    const sumText = Buffer.allocUnsafeSlow(capacity * MAX_NUMBER_BYTES);
    this.#sumText.copy(sumText);
    this.#sumText = sumText;
  }

  /** A new slab with only the live series' bytes (the old one stays intact for writers that still read it). */
  #compact(): void {
    const slab = Buffer.allocUnsafeSlow(Math.max(INITIAL_SLAB_BYTES, Math.ceil(this.#live * 1.25)));
    let used = 0;
    for (let i = 0; i < this.#attributes.length; i++) {
      if (this.#attributes[i] === undefined) continue;
      const start = this.#start[i] ?? 0;
      const length = this.#length[i] ?? 0;
      this.#slab.copy(slab, used, start, start + length);
      this.#start[i] = used;
      used += length;
    }
    this.#slab = slab;
    this.#used = used;
    this.#live = used;
  }
}

/** Per metric stream (the SDK keeps one descriptor object per stream); a stream that goes away takes its table. */
const tables = new WeakMap<MetricDescriptor, SeriesTable>();

export function seriesTable(descriptor: MetricDescriptor): SeriesTable {
  let table = tables.get(descriptor);
  if (table === undefined) {
    table = new SeriesTable();
    tables.set(descriptor, table);
  }
  return table;
}

export function emptyOwnLabels(): OwnLabels {
  return { slab: EMPTY, start: 0, length: 0 };
}

const EMPTY = Buffer.alloc(0);
