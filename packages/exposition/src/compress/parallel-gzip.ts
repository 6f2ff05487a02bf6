import { availableParallelism } from 'node:os';
import { crc32Combine } from './crc32-combine.js';
import type { ChunkSource } from '../format/chunk-source.js';
import { compressSegment, type GzipSegmentCache, type Segment } from './gzip-segment-cache.js';

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

/** zlib's fastest level: the exposition is highly repetitive text, which even level 1 shrinks about 40-fold. */
export const DEFAULT_GZIP_LEVEL = 1;

/** Gzip jobs run at once on libuv's thread pool, while the main thread serializes the next chunks. */
export function defaultGzipParallelism(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/**
 * One gzip stream of `inner`'s bytes, compressed as independent segments several at a time on the thread pool
 * while the main thread serializes the next chunks. Each segment is raw deflate ended by a sync flush, so their
 * concatenation is one valid deflate stream (as pigz does); one header, one final block and one trailer (its
 * CRC-32 combined from the segments') make it a single gzip member, which every client reads (some stop after
 * the first member of a multi-member body). Compressing large chunks independently and in parallel is what keeps
 * gzip cheap: one zlib stream would run on the main thread's pace, chunk after chunk. Backpressure: at most
 * `parallelism` segments are in flight; nothing is read from `inner` until output is asked for.
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
          const job = (cache === undefined ? compressSegment(chunk, level) : cache.segment(chunk, index)).finally(() => options.release?.(chunk));
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
