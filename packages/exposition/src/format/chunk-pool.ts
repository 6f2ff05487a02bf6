/**
 * Chunk buffers, recycled once their consumer is done with them (a socket write completed). A fresh buffer per
 * chunk would allocate the whole body in ArrayBuffers every scrape, and the external-memory pressure that creates
 * costs full garbage collections over the SDK's large heap: recycling keeps up to `limit` in circulation.
 */
export class ChunkPool {
  readonly #capacity: number;
  readonly #limit: number;
  readonly #free: Buffer[] = [];
  /** The backing stores in `#free`: a double release is found without scanning the list (it holds up to 1024). */
  readonly #freeBacking = new Set<ArrayBufferLike>();
  readonly #owned = new WeakSet<ArrayBufferLike>();

  constructor(capacity: number, limit = 16) {
    this.#capacity = capacity;
    this.#limit = limit;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** A buffer of at least `bytes` (the pool's capacity unless more is needed). */
  acquire(bytes: number): Buffer {
    if (bytes <= this.#capacity) {
      const recycled = this.#free.pop();
      if (recycled !== undefined) {
        this.#freeBacking.delete(recycled.buffer);
        return recycled;
      }
      // allocUnsafeSlow: an ArrayBuffer of its own, never a slice of Node's shared pool, so it can be recycled.
      const buffer = Buffer.allocUnsafeSlow(this.#capacity);
      this.#owned.add(buffer.buffer);
      return buffer;
    }
    return Buffer.allocUnsafe(bytes);
  }

  /** Hands a chunk's buffer back; the caller must not touch the chunk afterwards. Unknown chunks are ignored. */
  release(chunk: Uint8Array): void {
    const backing = chunk.buffer;
    if (!this.#owned.has(backing) || this.#free.length >= this.#limit) return;
    // Guard against a double release putting one buffer in the free list twice.
    if (this.#freeBacking.has(backing)) return;
    this.#freeBacking.add(backing);
    this.#free.push(Buffer.from(backing, 0, this.#capacity));
  }
}

/** Room above the chunk size, so a chunk closes after the data point that crossed it, not before. */
export function chunkCapacity(chunkBytes: number): number {
  return chunkBytes + Math.min(64 * 1024, chunkBytes);
}
