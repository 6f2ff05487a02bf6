import { describe, expect, it } from 'vitest';
import { ByteSink } from '../src/format/byte-sink.js';
import { ChunkPool } from '../src/format/chunk-pool.js';

describe('ChunkPool', () => {
  it('hands a buffer released twice out once: a double release cannot make two chunks share bytes', () => {
    const pool = new ChunkPool(1024, 4);
    const chunk = pool.acquire(100);
    pool.release(chunk);
    pool.release(chunk.subarray(0, 10));
    const first = pool.acquire(100);
    const second = pool.acquire(100);
    expect(first.buffer).toBe(chunk.buffer);
    expect(second.buffer).not.toBe(chunk.buffer);
  });

  it('keeps at most its limit of free buffers, and ignores buffers it did not hand out', () => {
    const pool = new ChunkPool(1024, 2);
    const held = [pool.acquire(1), pool.acquire(1), pool.acquire(1)];
    for (const chunk of held) pool.release(chunk);
    pool.release(Buffer.allocUnsafeSlow(1024));
    const again = [pool.acquire(1), pool.acquire(1), pool.acquire(1)];
    const reused = again.filter((chunk) => held.some((h) => h.buffer === chunk.buffer));
    expect(reused).toHaveLength(2);
  });
});

describe('ByteSink.finish', () => {
  it('returns the last bytes without taking another buffer, and gives an unused buffer back', () => {
    const pool = new ChunkPool(1024, 4);
    const sink = new ByteSink(512, pool);
    sink.text('abc');
    expect(sink.finish()?.toString()).toBe('abc');

    const empty = new ByteSink(512, pool);
    const unused = empty.buf.buffer;
    expect(empty.finish()).toBeUndefined();
    expect(pool.acquire(1).buffer).toBe(unused);
  });
});
