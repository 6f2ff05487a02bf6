import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { crc32, gunzipSync } from 'node:zlib';
import { crc32Combine } from '../src/crc32-combine.js';
import { GzipSegmentCache, parallelGzip } from '../src/compression.js';
import type { ChunkSource } from '../src/shared-render.js';

function sourceOf(chunks: Buffer[]): ChunkSource {
  let i = 0;
  return { next: () => chunks[i++], close() {} };
}

async function gzipAll(chunks: Buffer[], cache?: GzipSegmentCache): Promise<Buffer> {
  const source = parallelGzip(sourceOf(chunks), { level: 1, parallelism: 3, ...(cache !== undefined && { cache }) });
  const parts: Uint8Array[] = [];
  for (let part = await source.next(); part !== undefined; part = await source.next()) parts.push(part);
  return Buffer.concat(parts);
}

class CountingCache extends GzipSegmentCache {
  hits = 0;
  override lookup(index: number, digest: Buffer) {
    const found = super.lookup(index, digest);
    if (found !== undefined) this.hits++;
    return found;
  }
}

describe('parallel gzip', () => {
  it('is one gzip member whatever the chunks, empty included', async () => {
    const text = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => `line_${i % 97}{user="u-${i}"} ${i}\n`).join(''));
    for (const chunks of [[], [Buffer.from('a')], [text(5000), text(10), randomBytes(70_000), text(20_000)]]) {
      const body = await gzipAll(chunks);
      expect(gunzipSync(body).equals(Buffer.concat(chunks))).toBe(true);
    }
  });

  it('reuses the segments of unchanged chunks and recompresses a changed one; the output stays exact', async () => {
    const chunks = Array.from({ length: 12 }, (_, i) => Buffer.from(`chunk ${i} `.repeat(3000)));
    const cache = new CountingCache(1);
    expect(gunzipSync(await gzipAll(chunks, cache)).equals(Buffer.concat(chunks))).toBe(true);
    expect(cache.hits).toBe(0);
    const changed = [...chunks];
    changed[5] = Buffer.from(`chunk 5 changed `.repeat(2000));
    expect(gunzipSync(await gzipAll(changed, cache)).equals(Buffer.concat(changed))).toBe(true);
    expect(cache.hits).toBe(11);
    // Fewer chunks: the tail is dropped, nothing stale comes back.
    const shorter = changed.slice(0, 4);
    expect(gunzipSync(await gzipAll(shorter, cache)).equals(Buffer.concat(shorter))).toBe(true);
    const longer = [...shorter, Buffer.from('new tail\n')];
    expect(gunzipSync(await gzipAll(longer, cache)).equals(Buffer.concat(longer))).toBe(true);
  });

  it('crc32Combine agrees with crc32 of the concatenation', () => {
    for (const [a, b] of [
      [Buffer.alloc(0), Buffer.from('x')],
      [Buffer.from('hello '), Buffer.alloc(0)],
      [randomBytes(1000), randomBytes(262_144 + 17)],
    ] as const) {
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(Buffer.concat([a, b])));
    }
  });
});
