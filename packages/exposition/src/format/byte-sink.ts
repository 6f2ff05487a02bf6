/**
 * UTF-8 bytes written straight into chunk buffers. Building the text as JavaScript strings costs more in
 * flattening and encoding those strings than in building them; writing bytes once, and copying repeated parts (a
 * data point's labels appear on every line of a histogram) as bytes, removes that second pass.
 */

import { ChunkPool, chunkCapacity } from './chunk-pool.js';

/** Bytes per chunk handed to the consumer: large enough that per-write overhead vanishes. */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;

/** A JavaScript string takes at most 3 UTF-8 bytes per UTF-16 unit (a lone surrogate becomes U+FFFD). */
export function maxUtf8Bytes(text: string): number {
  return text.length * 3;
}

/** Bytes a formatted number can take: `-1.2345678901234567e-308` is 24 characters; `String()` never exceeds 25. */
export const MAX_NUMBER_BYTES = 25;

const NEWLINE = 10;
const MINUS = 45;
const ZERO = 48;

const SPENT = Buffer.alloc(0);

/** What each chunk a sink closed was written from, for as long as the chunk object lives (see `ByteSink.input`). */
const chunkInputs = new WeakMap<Uint8Array, readonly unknown[]>();

/**
 * The inputs a chunk was written from, in order (`ByteSink.input`), or undefined for a chunk whose sink did not
 * record them (`recordInputs`) or that no sink closed. Two chunks of one serializer with the same inputs hold the
 * same bytes: that is how a gzip scrape knows a chunk is unchanged without reading it.
 */
export function chunkInputsOf(chunk: Uint8Array): readonly unknown[] | undefined {
  return chunkInputs.get(chunk);
}

/** True when two input lists hold the very same values in the same order. */
export function sameInputs(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface ChunkOptions {
  /**
   * Record what each chunk is written from (`chunkInputsOf`), for a consumer that reuses work done on an unchanged
   * chunk (gzip). Default false: a plain rendering pays nothing for it.
   */
  readonly recordInputs?: boolean;
}

export class ByteSink {
  /** The chunk being filled; `pos` is the next free byte. Public for the hot loops (read, write, store back). */
  buf: Buffer;
  pos = 0;
  readonly #chunkBytes: number;
  readonly #pool: ChunkPool;
  /** The inputs of the chunk being filled, when recorded (`chunkInputsOf`); undefined when not. */
  #inputs: unknown[] | undefined;

  constructor(chunkBytes: number, pool: ChunkPool = new ChunkPool(chunkCapacity(chunkBytes), 0), options: ChunkOptions = {}) {
    this.#chunkBytes = chunkBytes;
    this.#pool = pool;
    if (options.recordInputs === true) this.#inputs = [];
    this.buf = pool.acquire(chunkBytes);
  }

  /** True once the chunk has reached its size: hand it out with `take()`. */
  get full(): boolean {
    return this.pos >= this.#chunkBytes;
  }

  /**
   * Makes sure `bytes` more fit. When they do not, the current chunk is closed and returned (to be handed out
   * before writing on) and a new buffer, large enough, takes its place.
   */
  room(bytes: number): Buffer | undefined {
    if (this.pos + bytes <= this.buf.length) return undefined;
    const done = this.pos > 0 ? this.#close() : undefined;
    this.buf = this.#pool.acquire(bytes);
    this.pos = 0;
    return done;
  }

  /** The bytes written so far as a chunk; the sink starts a fresh buffer (the consumer may hold this one). */
  take(): Buffer {
    const done = this.#close();
    this.buf = this.#pool.acquire(this.#chunkBytes);
    this.pos = 0;
    return done;
  }

  /**
   * Ends the rendering: the last chunk if bytes are left in it, without taking a fresh buffer (an empty one goes
   * back to the pool), so that a rendering takes from the pool only buffers it hands out. The sink is spent.
   */
  finish(): Buffer | undefined {
    const done = this.pos > 0 ? this.#close() : undefined;
    if (done === undefined) this.#pool.release(this.buf);
    this.buf = SPENT;
    this.pos = 0;
    return done;
  }

  /**
   * Records a value the next bytes are written from (a data point object, a text, an exemplar's bytes), after
   * `room()` and before writing them. The contract that makes `chunkInputsOf` safe: everything a chunk holds is
   * written from its recorded inputs alone (and the serializer's fixed options), and an input object is never
   * changed once written, so the same inputs make the same bytes.
   */
  input(value: unknown): void {
    this.#inputs?.push(value);
  }

  #close(): Buffer {
    const done = this.buf.subarray(0, this.pos);
    if (this.#inputs !== undefined) {
      chunkInputs.set(done, this.#inputs);
      this.#inputs = [];
    }
    return done;
  }

  /** Writes text as UTF-8; the caller made room for `maxUtf8Bytes(text)`. */
  text(text: string): void {
    this.pos += this.buf.write(text, this.pos, 'utf8');
  }
}

/** Encodes ASCII-only or arbitrary text once, for parts copied into every line that needs them. */
export function utf8(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/**
 * Writes `value` as the text format prints it (`formatValue`'s output) at `pos`, returns the new position.
 * Non-negative integers below 1e15 (counts, cumulative bucket counts) take a digit loop, everything else
 * JavaScript's own number formatting, so the bytes are exactly `String(value)`.
 */
export function writeNumber(buf: Buffer, pos: number, value: number, formatted: (value: number) => string): number {
  if (value >= 0 && value < 1e15 && Number.isInteger(value)) {
    if (value < 10) {
      buf[pos] = ZERO + value;
      return pos + 1;
    }
    let digits = 1;
    for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
    let at = pos + digits;
    let rest = value;
    while (rest >= 10) {
      const next = Math.floor(rest / 10);
      buf[--at] = ZERO + (rest - next * 10);
      rest = next;
    }
    buf[--at] = ZERO + rest;
    return pos + digits;
  }
  if (value < 0 && value > -1e15 && Number.isInteger(value)) {
    buf[pos] = MINUS;
    return writeNumber(buf, pos + 1, -value, formatted);
  }
  return pos + buf.write(formatted(value), pos, 'latin1');
}

export { NEWLINE };
