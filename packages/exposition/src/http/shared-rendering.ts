import type { Writable } from 'node:stream';
import type { ChunkSource } from '../format/chunk-source.js';
import type { BufferedBytes, ByteHolder } from './buffered-bytes.js';
import type { DrainMeter } from './drain-meter.js';
import type { WriteOutcome } from './write-chunks.js';
import { PROCESS_WRITE_TURNS, type WriteTurns } from './write-turns.js';

/** Bytes every reader is done with that a young rendering keeps for responses that may still join. */
export const DEFAULT_KEEP_BYTES = 16 * 1024 * 1024;

/** A response reading a rendering: where it is, and how to cut it when it holds bytes others need. */
export class RenderingReader {
  readonly rendering: SharedRendering;
  /** Chunks its socket has taken, in order: it still needs chunk `taken` and after. */
  taken = 0;
  /** How fast its socket takes bytes, when the reader is a response (not in tests). */
  readonly meter: DrainMeter | undefined;
  /** Resets the response's connection (to free what it holds). */
  readonly cut: (() => void) | undefined;
  left = false;

  constructor(rendering: SharedRendering, meter?: DrainMeter, cut?: () => void) {
    this.rendering = rendering;
    this.meter = meter;
    this.cut = cut;
  }
}

export interface SharedRenderingOptions {
  /** Bytes every reader is done with that a young rendering keeps for responses that may still join. */
  readonly keepBytes?: number;
  /** How long a new response may still join. Default: as long as every chunk from the first is kept. */
  readonly maxAgeMillis?: number;
  readonly now?: number;
  /** The process's budget of bytes held for readers (see `BufferedBytes`). */
  readonly budget?: BufferedBytes;
}

/**
 * One rendering of the exposition written to every response that joined it. Chunks are produced at the pace of
 * the fastest reader and kept until every reader's socket is done with them; without slow readers that is a few
 * chunks. A response may join while every chunk from the first is still kept: for that, chunks every reader is
 * done with are kept too, up to `keepBytes` and while the rendering is young (a socket's kernel buffers take
 * megabytes at once, so without this a reader arriving a moment later would find the start gone). With a
 * `budget`, what all renderings hold together is bounded: a rendering at the limit gives up its kept chunks, then
 * its reader lagging furthest behind, or waits (see `BufferedBytes`).
 */
export class SharedRendering implements ByteHolder {
  readonly #source: ChunkSource;
  readonly #release: ((chunk: Uint8Array) => void) | undefined;
  readonly #startedAt: number;
  /** Chunk i, until every reader has written it (then `undefined`). */
  readonly #chunks: Array<Uint8Array | undefined> = [];
  /** Readers that still have to finish writing chunk i. */
  readonly #pending: number[] = [];
  /** Bytes before chunk i (one more entry than chunks): how far apart two readers are. */
  readonly #offsets: number[] = [0];
  readonly #readers = new Set<RenderingReader>();
  #done = false;
  #failure: { error: unknown } | undefined;
  #producing: Promise<void> | undefined;
  /** No response may join any more: chunks go as soon as their readers are done with them. */
  #joinClosed = false;
  /** Bytes of chunks no reader needs, kept for responses that may still join. */
  #keptBytes = 0;
  /** Bytes of the chunks held now (counted in the budget). */
  #heldBytes = 0;
  readonly #keepBytes: number;
  readonly #maxAgeMillis: number;
  readonly #budget: BufferedBytes | undefined;

  constructor(source: ChunkSource, release?: (chunk: Uint8Array) => void, options: SharedRenderingOptions = {}) {
    this.#source = source;
    this.#release = release;
    this.#startedAt = options.now ?? Date.now();
    this.#keepBytes = options.keepBytes ?? DEFAULT_KEEP_BYTES;
    this.#maxAgeMillis = options.maxAgeMillis ?? Number.POSITIVE_INFINITY;
    this.#budget = options.budget;
  }

  /** True while a new response can still get every byte (and the rendering is younger than its maximum age). */
  joinable(now = Date.now()): boolean {
    if (!this.#joinClosed && now - this.#startedAt > this.#maxAgeMillis) this.#closeJoin();
    return !this.#joinClosed && this.#failure === undefined;
  }

  /** Responses writing it now. */
  get readers(): number {
    return this.#readers.size;
  }

  /** Chunks kept in memory now (tests, self-checks). */
  get keptChunks(): number {
    let kept = 0;
    for (const chunk of this.#chunks) if (chunk !== undefined) kept++;
    return kept;
  }

  /**
   * Registers a reader that will write every chunk from the first: it calls `written` for each chunk its socket
   * is done with and `leave` exactly once. `meter` and `cut` let the budget judge and cut it.
   */
  join(meter?: DrainMeter, cut?: () => void): RenderingReader {
    const reader = new RenderingReader(this, meter, cut);
    this.#readers.add(reader);
    for (let i = 0; i < this.#pending.length; i++) this.#pending[i] = (this.#pending[i] ?? 0) + 1;
    return reader;
  }

  /**
   * Chunk `index`, producing it if no reader got this far yet; `undefined` past the end. Rejects with the
   * source's error (every reader sees the same failure).
   */
  async chunk(index: number): Promise<Uint8Array | undefined> {
    while (index >= this.#chunks.length) {
      if (this.#failure !== undefined) throw this.#failure.error;
      if (this.#done) return undefined;
      this.#producing ??= this.#produce();
      const producing = this.#producing;
      await producing;
      // A production that ended before its first await (done, or a throw) cleared nothing: it is over all the same.
      if (this.#producing === producing) this.#producing = undefined;
    }
    if (this.#failure !== undefined && index >= this.#chunks.length) throw this.#failure.error;
    const chunk = this.#chunks[index];
    if (chunk === undefined) throw new Error(`chunk ${index} was released while a reader still needed it`);
    return chunk;
  }

  /** `reader`'s socket is done with chunk `index` (its write callback ran, with or without an error). */
  written(reader: RenderingReader, index: number): void {
    if (index + 1 > reader.taken) reader.taken = index + 1;
    this.#written(index);
  }

  #written(index: number): void {
    const left = (this.#pending[index] ?? 0) - 1;
    this.#pending[index] = left;
    if (left > 0) return;
    const chunk = this.#chunks[index];
    if (chunk === undefined) return;
    if (!this.#joinClosed && this.#keptBytes + chunk.length <= this.#keepBytes && this.joinable()) {
      this.#keptBytes += chunk.length;
      return;
    }
    this.#closeJoin();
    this.#drop(index);
  }

  #drop(index: number): void {
    const chunk = this.#chunks[index];
    this.#chunks[index] = undefined;
    if (chunk === undefined) return;
    this.#heldBytes -= chunk.length;
    this.#budget?.remove(this, chunk.length, this.#heldBytes === 0);
    this.#release?.(chunk);
  }

  #closeJoin(): void {
    if (this.#joinClosed) return;
    this.#joinClosed = true;
    this.#keptBytes = 0;
    for (let i = 0; i < this.#chunks.length; i++) if ((this.#pending[i] ?? 0) <= 0) this.#drop(i);
  }

  /** `reader` stops; `from` is the first chunk it never wrote (it will not call `written` for those). */
  leave(reader: RenderingReader, from: number): void {
    if (reader.left) return;
    reader.left = true;
    this.#readers.delete(reader);
    for (let i = from; i < this.#chunks.length; i++) this.#written(i);
    if (this.#readers.size > 0) return;
    // Nobody reads it any more: a later scrape gets a fresh collection, and the bytes go.
    this.#closeJoin();
    if (!this.#done && this.#failure === undefined) {
      this.#done = true;
      this.#source.close();
    }
  }

  dropKept(): number {
    if (this.#joinClosed || this.#keptBytes === 0) return 0;
    const before = this.#heldBytes;
    this.#closeJoin();
    return before - this.#heldBytes;
  }

  /**
   * The reader whose cut frees most: the one furthest behind, when it lags the fastest by more than a quarter of
   * the budget (it holds bytes nobody else needs) or drains slowly (it holds them for long). Its bytes are those of
   * the chunks only it still needs.
   */
  cuttable(): { readonly cut: () => void; readonly bytes: number; readonly lag: number } | undefined {
    const budget = this.#budget;
    if (budget === undefined || this.#readers.size === 0) return undefined;
    let slowest: RenderingReader | undefined;
    let front = 0;
    for (const reader of this.#readers) {
      front = Math.max(front, reader.taken);
      if (slowest === undefined || reader.taken < slowest.taken) slowest = reader;
    }
    let next = this.#chunks.length;
    for (const reader of this.#readers) if (reader !== slowest) next = Math.min(next, reader.taken);
    if (slowest?.cut === undefined) return undefined;
    const offset = (chunk: number): number => this.#offsets[Math.min(chunk, this.#offsets.length - 1)] ?? 0;
    const lag = offset(front) - offset(slowest.taken);
    if (lag <= budget.limit / 4 && slowest.meter?.slow !== true) return undefined;
    return { cut: slowest.cut, bytes: offset(next) - offset(slowest.taken), lag };
  }

  async #produce(): Promise<void> {
    try {
      // Only at the limit a wait: otherwise the chunk is rendered now, within the step of the writer asking for it
      // (see `WriteTurns`), not in a later microtask after every other writer of the turn has begun its own.
      if (this.#budget?.full === true) await this.#budget.reserve();
      if (this.#done) return;
      const chunk = await this.#source.next();
      if (chunk === undefined) this.#done = true;
      else if (this.#readers.size === 0 && this.#joinClosed) {
        // Rendered ahead for a reader that left meanwhile: nobody can ever read it.
        this.#release?.(chunk);
      } else {
        this.#chunks.push(chunk);
        this.#pending.push(this.#readers.size);
        this.#offsets.push((this.#offsets[this.#offsets.length - 1] ?? 0) + chunk.length);
        this.#heldBytes += chunk.length;
        this.#budget?.add(this, chunk.length);
      }
    } catch (error) {
      this.#failure = { error };
    } finally {
      this.#producing = undefined;
    }
  }
}

/**
 * Bytes the HTTP responses of the process may hold in their streams' buffers together before their writers wait for
 * `drain`; a response writing alone holds all of it, each of n writing at once holds an nth (see `WriteTurns`).
 * Waiting after every chunk makes each chunk its own socket write and its own turn of the event loop; more in hand
 * lets the socket take many chunks in one `writev` and wake the scraper less often. 4 MiB is Linux's default ceiling
 * of a TCP send buffer (`net.ipv4.tcp_wmem`): more would only sit in user space.
 */
export const WRITE_AHEAD_BYTES = 4 * 1024 * 1024;

export interface WriteSharedOptions {
  /**
   * Bytes the writers of `turns` may hold in their streams' buffers together: this writer keeps writing until `out`
   * holds its share before waiting for `drain`. Default 0: it waits after every write that asks.
   */
  readonly writeAheadBytes?: number;
  /** Told each completed write. */
  readonly meter?: DrainMeter;
  /** The write budget per turn of the event loop this writer shares. Default: the process's (`PROCESS_WRITE_TURNS`). */
  readonly turns?: WriteTurns;
}

/**
 * Writes a shared rendering to `out` from its first chunk as `reader` (from `join`), waiting for `drain` whenever
 * a write asks for it and `out` holds its share of `writeAheadBytes` or more, and for the next turn of the event
 * loop whenever the writers of this turn have spent its budget (see `WriteTurns`); returns how it ended. Rejects
 * with the source's error. Always leaves the rendering.
 */
export async function writeShared(reader: RenderingReader, out: Writable, options: WriteSharedOptions = {}): Promise<WriteOutcome> {
  const rendering = reader.rendering;
  const writeAheadBytes = options.writeAheadBytes ?? 0;
  const meter = options.meter;
  const turns = options.turns ?? PROCESS_WRITE_TURNS;
  const stopWriting = turns.startWriting();
  let index = 0;
  try {
    for (;;) {
      // A step (rendering a chunk, writing it) only within this turn's budget.
      while (turns.spent()) await turns.next();
      const chunk = await rendering.chunk(index);
      if (chunk === undefined) return 'complete';
      if (out.destroyed || out.writableEnded) return 'closed';
      const at = index;
      index++;
      // The callback runs once the socket is done with the bytes (flushed, or failed): only then may they go.
      const written = out.write(chunk, (error) => {
        if (error == null) meter?.took(chunk.length, Date.now());
        rendering.written(reader, at);
      });
      if (!written && out.writableLength >= turns.share(writeAheadBytes)) {
        // Render the next chunk while the socket drains (the scraper reads meanwhile), if this turn has time left.
        if (!turns.spent()) rendering.chunk(index).catch(() => undefined);
        if ((await drained(out)) === 'closed') return 'closed';
      }
    }
  } finally {
    stopWriting();
    rendering.leave(reader, index);
  }
}

function drained(out: Writable): Promise<'drain' | 'closed'> {
  if (out.destroyed) return Promise.resolve('closed');
  if (!out.writableNeedDrain) return Promise.resolve('drain');
  return new Promise((resolve) => {
    const done = (how: 'drain' | 'closed') => (): void => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', onClose);
      resolve(how);
    };
    const onDrain = done('drain');
    const onClose = done('closed');
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', onClose);
  });
}

/**
 * The newest rendering per variant (e.g. per content encoding): a scrape joins it while it is joinable, otherwise
 * starts the next one. Older renderings live on only as long as their readers.
 */
export class LatestRenderings {
  readonly #latest = new Map<string, SharedRendering>();

  /** A reader of `variant`'s current rendering, or of a new one from `start` (see `SharedRendering.join`). */
  join(variant: string, start: () => SharedRendering, meter?: DrainMeter, cut?: () => void, now = Date.now()): RenderingReader {
    let rendering = this.#latest.get(variant);
    if (rendering === undefined || !rendering.joinable(now)) {
      rendering = start();
      this.#latest.set(variant, rendering);
    }
    return rendering.join(meter, cut);
  }
}

/**
 * One promise (a collection) handed to every caller while it is in flight or still in use by someone, and younger
 * than `maxAgeMillis`: renderings that overlap in time read the same collection instead of each holding its own.
 */
export class SharedTask<T> {
  readonly #maxAgeMillis: number;
  #current: { readonly value: Promise<T>; readonly startedAt: number; users: number } | undefined;

  constructor(maxAgeMillis: number) {
    this.#maxAgeMillis = maxAgeMillis;
  }

  /** The shared value (or a new one from `start`) and the function that says the caller is done with it. */
  acquire(start: () => Promise<T>, now = Date.now()): { readonly value: Promise<T>; readonly release: () => void } {
    let current = this.#current;
    if (current === undefined || current.users === 0 || now - current.startedAt > this.#maxAgeMillis) {
      const value = start();
      const fresh = { value, startedAt: now, users: 0 };
      // A failed task is not handed to later callers.
      value.catch(() => {
        if (this.#current === fresh) this.#current = undefined;
      });
      current = fresh;
      this.#current = fresh;
    }
    const held = current;
    held.users++;
    let released = false;
    return {
      value: held.value,
      release: () => {
        if (released) return;
        released = true;
        held.users--;
        if (held.users === 0 && this.#current === held) this.#current = undefined;
      },
    };
  }
}
