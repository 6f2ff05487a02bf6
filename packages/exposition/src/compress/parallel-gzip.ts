import { availableParallelism } from 'node:os';
import { webcrypto } from 'node:crypto';
import { constants, crc32, deflateRaw as deflateRawCallback } from 'node:zlib';
import { promisify } from 'node:util';
import { crc32Combine } from './crc32-combine.js';
import type { ChunkSource } from '../http/shared-rendering.js';
import { chunkInputsOf, sameInputs } from '../format/byte-sink.js';

const deflateRaw = promisify(deflateRawCallback);

/** RFC 1952 member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
/** An empty final block with fixed Huffman codes: ends the deflate stream after the sync-flushed segments. */
const FINAL_EMPTY_BLOCK = Buffer.from([0x03, 0x00]);

function gzipTrailer(crc: number, length: number): Buffer {
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(length % 2 ** 32, 4);
  return trailer;
}

/** zlib's fastest level: at 100k series it still makes the body ~39× smaller (it is highly repetitive text). */
export const DEFAULT_GZIP_LEVEL = 1;

/** Gzip jobs run at once on libuv's thread pool, while the main thread serializes the next chunks. */
export function defaultGzipParallelism(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/**
 * True when the request's `Accept-Encoding` takes gzip (`gzip`, `x-gzip` or `*` with a q-value above 0, and gzip
 * not refused by `gzip;q=0`). Without the header, or with only `identity`, the answer is uncompressed.
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  let gzipQ: number | undefined;
  let starQ: number | undefined;
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [token = '', ...params] = part.split(';').map((text) => text.trim().toLowerCase());
    let q = 1;
    for (const param of params) {
      const match = /^q=([0-9.]+)$/.exec(param);
      if (match) q = Number(match[1]);
    }
    if (Number.isNaN(q)) continue;
    if (token === 'gzip' || token === 'x-gzip') gzipQ = Math.max(gzipQ ?? 0, q);
    else if (token === '*') starQ = q;
  }
  return (gzipQ ?? starQ ?? 0) > 0;
}

/** One chunk compressed: its deflate segment (sync-flushed), the CRC-32 and length of its bytes, and what it was made of. */
interface Segment {
  /** SHA-256 of the chunk's bytes; taken only when neither the inputs nor the CRC-32 told. */
  readonly digest: Buffer | undefined;
  /** The inputs the chunk was written from (`chunkInputsOf`), when its serializer recorded them. */
  readonly inputs: readonly unknown[] | undefined;
  readonly segment: Buffer;
  readonly crc: number;
  readonly length: number;
}

/** How the chunks of gzip renderings were answered, since the cache was made. */
export interface GzipCacheCounts {
  /** Segments reused because the chunk was written from the same inputs: its bytes were not read. */
  readonly sameInputs: number;
  /** Segments reused because the chunk's SHA-256 matched (the inputs were new, the bytes were not). */
  readonly sameDigest: number;
  /** Chunks compressed. */
  readonly compressed: number;
}

/**
 * The compressed segments of the last gzip rendering of one serializer, by chunk position. Between scrapes almost
 * every series is the very same data point object as before, and the serializer records which objects (and
 * texts) each chunk was written from (`chunkInputsOf`): a chunk written from the same inputs as the cached one at
 * its position holds the same bytes, so its segment is reused without reading the chunk. A chunk with other
 * inputs gets its CRC-32 (which its segment needs anyway): another CRC than the cached segment's means other
 * bytes, compressed at once; the same CRC is checked by SHA-256 (on the thread pool), and the segment reused when
 * the bytes match (a stream the SDK rebuilds on every collection, such as a cumulative counter, has new objects
 * with the same values). One cache per serializer: another serializer writes other bytes from the same inputs.
 */
export class GzipSegmentCache {
  readonly #level: number;
  #entries: Array<Segment | undefined> = [];
  #sameInputs = 0;
  #sameDigest = 0;
  #compressed = 0;

  constructor(level: number) {
    this.#level = level;
  }

  get level(): number {
    return this.#level;
  }

  get counts(): GzipCacheCounts {
    return { sameInputs: this.#sameInputs, sameDigest: this.#sameDigest, compressed: this.#compressed };
  }

  /** The segment for `chunk` at `index`: cached when its inputs or its bytes are unchanged, else compressed. */
  async segment(chunk: Uint8Array, index: number): Promise<Segment> {
    const inputs = chunkInputsOf(chunk);
    const cached = this.#entries[index];
    if (cached !== undefined && inputs !== undefined && cached.inputs !== undefined && cached.length === chunk.length && sameInputs(cached.inputs, inputs)) {
      this.#sameInputs++;
      return cached;
    }
    // The CRC-32 the segment needs anyway tells most changed chunks from unchanged ones without hashing them: a chunk
    // whose CRC or length differs from the cached segment's is new bytes. Only an equal CRC (or nothing cached) is
    // worth its SHA-256, which decides.
    const crc = crc32(chunk);
    if (cached !== undefined && (cached.crc !== crc || cached.length !== chunk.length)) {
      this.#compressed++;
      const entry = { ...(await compressWithCrc(chunk, crc, this.#level)), inputs };
      this.#entries[index] = entry;
      return entry;
    }
    const digest = Buffer.from(await webcrypto.subtle.digest('SHA-256', chunk));
    // Read again after the await: another rendering may have stored this position meanwhile.
    const current = this.#entries[index];
    if (current?.digest?.equals(digest) === true) {
      this.#sameDigest++;
      const entry = { ...current, inputs };
      this.#entries[index] = entry;
      return entry;
    }
    this.#compressed++;
    const entry = { ...(await compressWithCrc(chunk, crc, this.#level)), digest, inputs };
    this.#entries[index] = entry;
    return entry;
  }

  /** After a complete rendering of `chunks` chunks: positions past it are gone. */
  truncate(chunks: number): void {
    if (this.#entries.length > chunks) this.#entries.length = chunks;
  }

  /** Bytes held (the compressed segments). */
  get bytes(): number {
    let total = 0;
    for (const entry of this.#entries) total += entry?.segment.length ?? 0;
    return total;
  }
}

/**
 * One gzip stream of `inner`'s bytes, compressed as independent segments several at a time on the thread pool
 * while the main thread serializes the next chunks (the CRC-32 is taken on the main thread as chunks pass). Each
 * segment is raw deflate ended by a sync flush, so their concatenation is one valid deflate stream (as pigz
 * does); one header, one final block and one trailer make it a single gzip member, which every client reads
 * (curl 7.88 stops after the first member of a multi-member body). Compressing large chunks (256 KiB)
 * independently and in parallel is what keeps gzip cheap: one stream through `pipe(createGzip())` made the
 * scrape 2.75× slower. Backpressure: at most `parallelism` segments are in flight; nothing is read from `inner`
 * until output is asked for.
 */
export function parallelGzip(
  inner: ChunkSource,
  options: {
    readonly level?: number;
    readonly parallelism?: number;
    readonly release?: (chunk: Uint8Array) => void;
    /** Reuse segments of unchanged chunks (must be for the same level). */
    readonly cache?: GzipSegmentCache;
  } = {},
): ChunkSource {
  const cache = options.cache;
  const level = cache?.level ?? options.level ?? DEFAULT_GZIP_LEVEL;
  const parallelism = options.parallelism ?? defaultGzipParallelism();
  const jobs: Array<Promise<Segment>> = [];
  let chunks = 0;
  let crc = 0;
  let length = 0;
  let headerSent = false;
  let trailerSent = false;
  let innerDone = false;
  let closed = false;
  let failure: { readonly error: unknown } | undefined;
  let filling: Promise<void> | undefined;

  // One filler at a time: `inner` is read by one caller only, in order (the CRC follows the byte order).
  const fill = (): Promise<void> =>
    (filling ??= (async () => {
      try {
        while (!innerDone && !closed && jobs.length < parallelism) {
          const chunk = await inner.next();
          if (chunk === undefined) {
            innerDone = true;
            break;
          }
          const index = chunks++;
          const job = (cache === undefined ? compress(chunk, level) : cache.segment(chunk, index)).finally(() => options.release?.(chunk));
          // A segment nobody asks for any more (the readers left) must not become an unhandled rejection.
          job.catch(() => undefined);
          jobs.push(job);
        }
      } catch (error) {
        failure = { error };
      } finally {
        filling = undefined;
      }
    })());

  return {
    async next() {
      while (jobs.length === 0) {
        if (closed || trailerSent) return undefined;
        if (failure !== undefined) throw failure.error;
        if (innerDone) {
          trailerSent = true;
          cache?.truncate(chunks);
          const end = Buffer.concat([FINAL_EMPTY_BLOCK, gzipTrailer(crc, length)]);
          if (headerSent) return end;
          headerSent = true;
          return Buffer.concat([GZIP_HEADER, end]);
        }
        await fill();
      }
      const { segment, crc: segmentCrc, length: segmentLength } = await (jobs.shift() as Promise<Segment>);
      crc = crc32Combine(crc, segmentCrc, segmentLength);
      length += segmentLength;
      // Start the next ones now, so they compress while this segment goes to the sockets.
      void fill();
      if (headerSent) return segment;
      headerSent = true;
      return Buffer.concat([GZIP_HEADER, segment]);
    },
    close() {
      closed = true;
      inner.close();
    },
  };
}

function compress(chunk: Uint8Array, level: number): Promise<Segment> {
  return compressWithCrc(chunk, crc32(chunk), level);
}

async function compressWithCrc(chunk: Uint8Array, crc: number, level: number): Promise<Segment> {
  const segment = await deflateRaw(chunk, { level, finishFlush: constants.Z_SYNC_FLUSH });
  return { digest: undefined, inputs: undefined, segment, crc, length: chunk.length };
}
