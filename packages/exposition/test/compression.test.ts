import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { crc32, gunzipSync } from 'node:zlib';
import { crc32Combine } from '../src/compress/crc32-combine.js';
import { parallelGzip } from '../src/compress/parallel-gzip.js';
import { GzipSegmentCache } from '../src/compress/gzip-segment-cache.js';
import type { ChunkSource } from '../src/format/chunk-source.js';
import { PrometheusTextSerializer } from '../src/format/prometheus-text.js';
import { ValueType } from '@opentelemetry/api';
import type { DataPoint, Histogram, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { histogramCollection } from './exposition-support.js';

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
    const cache = new GzipSegmentCache(1);
    expect(gunzipSync(await gzipAll(chunks, cache)).equals(Buffer.concat(chunks))).toBe(true);
    expect(cache.counts).toEqual({ sameInputs: 0, sameDigest: 0, compressed: 12 });
    const changed = [...chunks];
    changed[5] = Buffer.from(`chunk 5 changed `.repeat(2000));
    expect(gunzipSync(await gzipAll(changed, cache)).equals(Buffer.concat(changed))).toBe(true);
    // Chunks no serializer wrote carry no inputs: they are recognized by their digest.
    expect(cache.counts).toEqual({ sameInputs: 0, sameDigest: 11, compressed: 13 });
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

describe('gzip segments of serialized chunks', () => {
  const boundaries = [0, 5, 10, 25, 50, 100, 250, 500, 1000];
  const point = (i: number, count: number): DataPoint<Histogram> => ({
    attributes: { template_name: `template-${i % 20}`, username: `user-${i}` },
    startTime: [1_700_000_000, 0],
    endTime: [1_700_000_060, 0],
    value: { count, sum: count * 3.5, buckets: { boundaries, counts: [0, count, 0, 0, 0, 0, 0, 0, 0, 0] }, min: 3.5, max: 3.5 },
  });
  const descriptor = { name: 'first_connection_seconds', description: 'd', unit: 's', valueType: ValueType.DOUBLE };
  const collection = (points: DataPoint<Histogram>[]) => histogramCollection(points, { descriptor, resource: { 'service.name': 'segments' } });
  const gzipRendering = (serializer: PrometheusTextSerializer, metrics: ResourceMetrics, cache: GzipSegmentCache) =>
    gzipAll([...serializer.chunks(metrics, 16 * 1024, undefined, { recordInputs: true })], cache);

  it('an unchanged rendering is answered from the chunks inputs: no chunk hashed or compressed', async () => {
    const serializer = new PrometheusTextSerializer();
    const points = Array.from({ length: 2000 }, (_, i) => point(i, 1 + (i % 3)));
    const cache = new GzipSegmentCache(1);
    const metrics = collection(points);
    const first = await gzipRendering(serializer, metrics, cache);
    const chunks = cache.counts.compressed;
    expect(chunks).toBeGreaterThan(20);
    // The same point objects again (what a delta collection hands over for the series that did not change).
    const second = await gzipRendering(serializer, collection([...points]), cache);
    expect(second.equals(first)).toBe(true);
    expect(cache.counts).toEqual({ sameInputs: chunks, sameDigest: 0, compressed: chunks });
  });

  it('a changed point recompresses its chunk only; a new object with the same bytes is found by digest', async () => {
    const serializer = new PrometheusTextSerializer();
    const points = Array.from({ length: 2000 }, (_, i) => point(i, 1 + (i % 3)));
    const cache = new GzipSegmentCache(1);
    await gzipRendering(serializer, collection(points), cache);
    const chunks = cache.counts.compressed;
    const changed = [...points];
    changed[1000] = point(1000, 99);
    const body = await gzipRendering(serializer, collection(changed), cache);
    expect(gunzipSync(body).toString('utf8')).toBe(serializer.serialize(collection(changed)));
    expect(gunzipSync(body).toString('utf8')).toContain('first_connection_seconds_count{template_name="template-0",username="user-1000",otel_scope_name="test"} 99');
    expect(cache.counts).toEqual({ sameInputs: chunks - 1, sameDigest: 0, compressed: chunks + 1 });
    // A rebuilt point with the same values (a stream the SDK rebuilds on every collection): other inputs, same bytes.
    const rebuilt = [...changed];
    rebuilt[1500] = point(1500, 1 + (1500 % 3));
    await gzipRendering(serializer, collection(rebuilt), cache);
    expect(cache.counts).toEqual({ sameInputs: 2 * chunks - 2, sameDigest: 1, compressed: chunks + 1 });
  });
});
