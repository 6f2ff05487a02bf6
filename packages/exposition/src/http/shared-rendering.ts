import type { Writable } from 'node:stream';
import type { ChunkSource } from '../format/chunk-source.js';
import type { WriteOutcome } from './write-chunks.js';

/** Bytes every reader is done with that a young rendering keeps for responses that may still join. */
export const DEFAULT_KEEP_BYTES = 16 * 1024 * 1024;

/**
 * One rendering of the exposition written to every response that joined it. Chunks are produced at the pace of
 * the fastest reader and kept until every reader's socket is done with them, so memory holds at most one body
 * (the gap between the fastest and the slowest reader) whatever the number of readers; without slow readers it
 * holds a few chunks. A response may join while every chunk from the first is still kept: for that, chunks every
 * reader is done with are kept too, up to `keepBytes` and while the rendering is young (a socket's kernel buffers
 * take megabytes at once, so without this a reader arriving a moment later would find the start gone).
 */
export class SharedRendering {
  readonly #source: ChunkSource;
  readonly #release: ((chunk: Uint8Array) => void) | undefined;
  readonly #startedAt: number;
  /** Chunk i, until every reader has written it (then `undefined`). */
  readonly #chunks: Array<Uint8Array | undefined> = [];
  /** Readers that still have to finish writing chunk i. */
  readonly #pending: number[] = [];
  #readers = 0;
  #done = false;
  #failure: { error: unknown } | undefined;
  #producing: Promise<void> | undefined;
  /** No response may join any more: chunks go as soon as their readers are done with them. */
  #joinClosed = false;
  /** Bytes of chunks no reader needs, kept for responses that may still join. */
  #keptBytes = 0;
  readonly #keepBytes: number;
  readonly #maxAgeMillis: number;

  constructor(
    source: ChunkSource,
    release?: (chunk: Uint8Array) => void,
    options: { readonly keepBytes?: number; readonly maxAgeMillis?: number; readonly now?: number } = {},
  ) {
    this.#source = source;
    this.#release = release;
    this.#startedAt = options.now ?? Date.now();
    this.#keepBytes = options.keepBytes ?? DEFAULT_KEEP_BYTES;
    this.#maxAgeMillis = options.maxAgeMillis ?? Number.POSITIVE_INFINITY;
  }

  /** True while a new response can still get every byte (and the rendering is younger than its maximum age). */
  joinable(now = Date.now()): boolean {
    if (!this.#joinClosed && now - this.#startedAt > this.#maxAgeMillis) this.#closeJoin();
    return !this.#joinClosed && this.#failure === undefined;
  }

  /** Responses writing it now. */
  get readers(): number {
    return this.#readers;
  }

  /** Chunks kept in memory now (tests, self-checks). */
  get keptChunks(): number {
    let kept = 0;
    for (const chunk of this.#chunks) if (chunk !== undefined) kept++;
    return kept;
  }

  /** Registers a reader that will write every chunk from the first: call `leave` exactly once afterwards. */
  join(): void {
    this.#readers++;
    for (let i = 0; i < this.#pending.length; i++) this.#pending[i] = (this.#pending[i] ?? 0) + 1;
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
      await this.#producing;
    }
    if (this.#failure !== undefined && index >= this.#chunks.length) throw this.#failure.error;
    const chunk = this.#chunks[index];
    if (chunk === undefined) throw new Error(`chunk ${index} was released while a reader still needed it`);
    return chunk;
  }

  /** The reader's socket is done with chunk `index` (its write callback ran, with or without an error). */
  written(index: number): void {
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
    if (chunk !== undefined) this.#release?.(chunk);
  }

  #closeJoin(): void {
    if (this.#joinClosed) return;
    this.#joinClosed = true;
    this.#keptBytes = 0;
    for (let i = 0; i < this.#chunks.length; i++) if ((this.#pending[i] ?? 0) <= 0) this.#drop(i);
  }

  /** The reader stops; `from` is the first chunk it never wrote (it will not call `written` for those). */
  leave(from: number): void {
    this.#readers--;
    for (let i = from; i < this.#chunks.length; i++) this.written(i);
    if (this.#readers > 0) return;
    // Nobody reads it any more: a later scrape gets a fresh collection, and the bytes go.
    this.#closeJoin();
    if (!this.#done && this.#failure === undefined) {
      this.#done = true;
      this.#source.close();
    }
  }

  async #produce(): Promise<void> {
    try {
      const chunk = await this.#source.next();
      if (chunk === undefined) this.#done = true;
      else if (this.#readers === 0 && this.#joinClosed) {
        // Rendered ahead for a reader that left meanwhile: nobody can ever read it.
        this.#release?.(chunk);
      } else {
        this.#chunks.push(chunk);
        this.#pending.push(this.#readers);
      }
    } catch (error) {
      this.#failure = { error };
    } finally {
      this.#producing = undefined;
    }
  }
}

/**
 * Bytes an HTTP response may hold in its stream's buffer before its writer waits for `drain`. Waiting after every
 * chunk makes each chunk its own socket write and its own turn of the event loop; more in hand lets the socket take
 * many chunks in one `writev` and wake the scraper less often. 4 MiB is Linux's default ceiling of a TCP send buffer
 * (`net.ipv4.tcp_wmem`): more would only sit in user space.
 */
export const WRITE_AHEAD_BYTES = 4 * 1024 * 1024;

/**
 * Writes a shared rendering (joined by the caller) to `out` from its first chunk, waiting for `drain` whenever a
 * write asks for it and `out` holds `writeAheadBytes` or more (default 0: after every such write); returns how it
 * ended. Rejects with the source's error. Always leaves the rendering.
 */
export async function writeShared(rendering: SharedRendering, out: Writable, writeAheadBytes = 0): Promise<WriteOutcome> {
  let index = 0;
  try {
    for (;;) {
      const chunk = await rendering.chunk(index);
      if (chunk === undefined) return 'complete';
      if (out.destroyed || out.writableEnded) return 'closed';
      const at = index;
      index++;
      // The callback runs once the socket is done with the bytes (flushed, or failed): only then may they go.
      const written = out.write(chunk, () => rendering.written(at));
      if (!written && out.writableLength >= writeAheadBytes) {
        // Render the next chunk while the socket drains (the scraper reads meanwhile).
        rendering.chunk(index).catch(() => undefined);
        if ((await drained(out)) === 'closed') return 'closed';
      }
    }
  } finally {
    rendering.leave(index);
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

  /** A joined rendering of `variant`: the current one, or a new one from `start`. */
  join(variant: string, start: () => SharedRendering, now = Date.now()): SharedRendering {
    let rendering = this.#latest.get(variant);
    if (rendering === undefined || !rendering.joinable(now)) {
      rendering = start();
      this.#latest.set(variant, rendering);
    }
    rendering.join();
    return rendering;
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
