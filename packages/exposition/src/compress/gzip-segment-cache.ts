import { webcrypto } from 'node:crypto';
import { promisify } from 'node:util';
import { constants, crc32, deflateRaw as deflateRawCallback } from 'node:zlib';
import { chunkInputsOf, sameInputs } from '../format/byte-sink.js';

const deflateRaw = promisify(deflateRawCallback);

/** One chunk compressed: its deflate segment (sync-flushed), the CRC-32 and length of its bytes, and what it was made of. */
export interface Segment {
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

/** `chunk` as a raw deflate segment ended by a sync flush, with the CRC-32 and length of its bytes. */
export function compressSegment(chunk: Uint8Array, level: number): Promise<Segment> {
  return compressWithCrc(chunk, crc32(chunk), level);
}

async function compressWithCrc(chunk: Uint8Array, crc: number, level: number): Promise<Segment> {
  const segment = await deflateRaw(chunk, { level, finishFlush: constants.Z_SYNC_FLUSH });
  return { digest: undefined, inputs: undefined, segment, crc, length: chunk.length };
}
