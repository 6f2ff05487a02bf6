import { afterEach, describe, expect, it, vi } from 'vitest';
import { webcrypto } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { connect } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { MeterProvider, type MetricProducer } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { negotiateContentEncoding } from '../src/http/negotiate.js';
import { createMetricsServer, FastPrometheusReader, type FastPrometheusReaderOptions } from '../src/index.js';
import type { Exemplar } from '../src/format/exemplar.js';
import { parseExposition } from '@agentconn/test-support/exposition-parser';
import { get } from './serving-support.js';

/** Whether the request's `Accept-Encoding` gets gzip. */
const acceptsGzip = (header: string | undefined): boolean => negotiateContentEncoding(header) === 'gzip';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function setup(options: FastPrometheusReaderOptions = {}, series = 3) {
  const reader = new FastPrometheusReader(options);
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'gzip-test' }),
    views: [{ instrumentName: 'first_connection_seconds', aggregationCardinalityLimit: 1_000_000 }],
    readers: [reader],
  });
  const histogram = provider.getMeter('test').createHistogram('first_connection_seconds', { unit: 's' });
  for (let i = 0; i < series; i++) {
    histogram.record((i * 7.31) % 4000, { template_name: `template-${i % 20}`, username: `user-${i}`, workspace_name: `workspace-${i}` });
  }
  const server = await createMetricsServer({ reader, port: 0 });
  cleanup.push(() => provider.shutdown(), () => server.close());
  return { reader, provider, server };
}

describe('gzip', () => {
  it('answers gzip when Accept-Encoding takes it: one gzip member, the same text, Vary and Content-Encoding set', async () => {
    const { reader, server } = await setup({ chunkBytes: 32 * 1024 }, 5000);
    const reply = await get(server.url, { 'Accept-Encoding': 'gzip' });
    expect(reply.status).toBe(200);
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect(reply.headers['vary']).toBe('Accept, Accept-Encoding');
    expect(reply.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await reader.serializeToString();
    // Many chunks, compressed apart, but one member: the magic appears once (curl 7.88 reads only the first member).
    expect(Buffer.byteLength(text)).toBeGreaterThan(20 * 32 * 1024);
    expect(reply.body.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(true);
    expect(gunzipSync(reply.body).toString('utf8')).toBe(text);
    expect(Buffer.byteLength(text) / reply.body.length).toBeGreaterThan(20);
    expect(parseExposition(gunzipSync(reply.body).toString('utf8')).samples.filter((s) => s.name === 'first_connection_seconds_count')).toHaveLength(5000);
  });

  it('a later gzip scrape after new observations carries them (segments of unchanged chunks reused, changed ones not)', async () => {
    const { reader, provider, server } = await setup({ chunkBytes: 16 * 1024 }, 3000);
    const histogram = provider.getMeter('test').createHistogram('first_connection_seconds', { unit: 's' });
    for (let round = 0; round < 3; round++) {
      const reply = await get(server.url, { 'Accept-Encoding': 'gzip' });
      expect(gunzipSync(reply.body).toString('utf8')).toBe(await reader.serializeToString());
      // One series in the middle and one new at the end change; the rest stays byte for byte.
      histogram.record(1, { template_name: 'template-7', username: 'user-1507', workspace_name: 'workspace-1507' });
      histogram.record(2, { template_name: 'template-new', username: `user-new-${round}`, workspace_name: 'w' });
    }
  });

  it('a gzip scrape hashes no chunk, steady or changed: unchanged by the data points, changed by the CRC-32', async () => {
    // Not shared: every scrape below renders (and compresses) on its own.
    const { reader, provider, server } = await setup({ chunkBytes: 16 * 1024, renderShareMillis: 0 }, 3000);
    const histogram = provider.getMeter('test').createHistogram('first_connection_seconds', { unit: 's' });
    const digest = vi.spyOn(webcrypto.subtle, 'digest');
    cleanup.push(() => digest.mockRestore());
    await get(server.url, { 'Accept-Encoding': 'gzip' });
    await sleep(20);
    digest.mockClear();
    const steady = await get(server.url, { 'Accept-Encoding': 'gzip' });
    expect(gunzipSync(steady.body).toString('utf8')).toBe(await reader.serializeToString());
    expect(digest).not.toHaveBeenCalled();
    // One series changes: its chunk has other inputs and another CRC-32 than its cached segment, so it is
    // compressed again without being hashed.
    histogram.record(1, { template_name: 'template-7', username: 'user-1507', workspace_name: 'workspace-1507' });
    await sleep(20);
    const changed = await get(server.url, { 'Accept-Encoding': 'gzip' });
    expect(gunzipSync(changed.body).toString('utf8')).toBe(await reader.serializeToString());
    expect(gunzipSync(changed.body).toString('utf8')).not.toBe(gunzipSync(steady.body).toString('utf8'));
    expect(digest).not.toHaveBeenCalled();
  });

  it('text and OpenMetrics gzip scrapes in turn each get their own format: the same points make other bytes in each', async () => {
    const { reader, server } = await setup({ chunkBytes: 16 * 1024 }, 2000);
    const openMetrics = { 'Accept-Encoding': 'gzip', Accept: 'application/openmetrics-text;version=1.0.0' };
    for (let round = 0; round < 2; round++) {
      const text = await get(server.url, { 'Accept-Encoding': 'gzip' });
      expect(gunzipSync(text.body).toString('utf8')).toBe(await reader.serializeToString());
      const om = await get(server.url, openMetrics);
      expect(om.headers['content-type']).toMatch(/^application\/openmetrics-text/);
      expect(gunzipSync(om.body).toString('utf8')).toBe(await reader.serializeToString('openmetrics'));
    }
  });

  it('an OpenMetrics gzip scrape carries an exemplar that changed while its data point did not (same length, other bytes)', async () => {
    let exemplar: Exemplar = { labels: { workspace: 'old-1' }, value: 3 };
    const { reader, server } = await setup(
      { chunkBytes: 16 * 1024, exemplars: { histogramExemplars: (_name, attributes) => (attributes['username'] === 'user-1200' ? [undefined, exemplar] : undefined) } },
      2000,
    );
    const openMetrics = { 'Accept-Encoding': 'gzip', Accept: 'application/openmetrics-text;version=1.0.0' };
    const first = gunzipSync((await get(server.url, openMetrics)).body).toString('utf8');
    expect(first).toContain('workspace="old-1"');
    exemplar = { labels: { workspace: 'new-1' }, value: 3 };
    const second = gunzipSync((await get(server.url, openMetrics)).body).toString('utf8');
    expect(second).toContain('workspace="new-1"');
    expect(second).toBe(await reader.serializeToString('openmetrics'));
  });

  it('curl --compressed reads the whole body', async () => {
    if (spawnSync('curl', ['--version']).status !== 0) return;
    const { reader, server } = await setup({ chunkBytes: 16 * 1024 }, 5000);
    const run = await promisify(execFile)('curl', ['-sS', '--compressed', '-w', '%{size_download} %header{content-encoding}', '-o', '-', server.url], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    const [sizeDownload, encoding] = run.stdout.slice(run.stdout.lastIndexOf('\n') + 1).split(' ');
    expect(encoding).toBe('gzip');
    expect(Number(sizeDownload)).toBeLessThan(Buffer.byteLength(await reader.serializeToString()) / 5);
    run.stdout = run.stdout.slice(0, run.stdout.lastIndexOf('\n') + 1);
    expect(run.stdout).toBe(await reader.serializeToString());
  });

  it.each([[{}], [{ 'Accept-Encoding': 'identity' }], [{ 'Accept-Encoding': 'gzip;q=0, identity' }], [{ 'Accept-Encoding': 'br' }]])(
    'answers identity to %j, with Vary',
    async (headers) => {
      const { reader, server } = await setup({}, 100);
      const reply = await get(server.url, headers);
      expect(reply.headers['content-encoding']).toBeUndefined();
      expect(reply.headers['vary']).toBe('Accept, Accept-Encoding');
      expect(reply.body.toString('utf8')).toBe(await reader.serializeToString());
    },
  );

  it('HEAD says what GET would', async () => {
    const { server } = await setup();
    const head = await get(server.url, { 'Accept-Encoding': 'gzip' }, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-encoding']).toBe('gzip');
    expect(head.body.length).toBe(0);
  });

  it('gzip: false always answers identity', async () => {
    const { reader, server } = await setup({ gzip: false }, 100);
    const reply = await get(server.url, { 'Accept-Encoding': 'gzip' });
    expect(reply.headers['content-encoding']).toBeUndefined();
    expect(reply.headers['vary']).toBe('Accept');
    expect(reply.body.toString('utf8')).toBe(await reader.serializeToString());
  });

  it('concurrent gzip scrapes share the collection of an identity scrape in flight, and get identical bytes', async () => {
    let collections = 0;
    const counting: MetricProducer = {
      collect: async () => {
        collections++;
        return { resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics: [] }, errors: [] };
      },
    };
    const { server } = await setup({ metricProducers: [counting], chunkBytes: 64 * 1024, drainTimeoutMillis: 60_000 }, 20_000);
    // An identity reader that takes nothing keeps its collection in use.
    const stalled = connect(server.port, '127.0.0.1');
    stalled.on('error', () => {});
    stalled.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((resolve) => stalled.once('data', () => resolve()));
    stalled.pause();
    cleanup.push(() => stalled.destroy());
    const replies = await Promise.all(Array.from({ length: 6 }, () => get(server.url, { 'Accept-Encoding': 'gzip' })));
    for (const reply of replies) expect(reply.body.equals(replies[0]!.body)).toBe(true);
    expect(collections).toBe(1);
    stalled.destroy();
    await sleep(50);
  });

  it('answers gzip as q-values say', () => {
    expect(acceptsGzip('gzip')).toBe(true);
    expect(acceptsGzip('deflate, gzip;q=0.5')).toBe(true);
    expect(acceptsGzip('GZIP')).toBe(true);
    expect(acceptsGzip('x-gzip')).toBe(true);
    expect(acceptsGzip('*')).toBe(true);
    expect(acceptsGzip('gzip;q=0')).toBe(false);
    expect(acceptsGzip('gzip;q=0, *')).toBe(false);
    expect(acceptsGzip('*;q=0')).toBe(false);
    expect(acceptsGzip('identity')).toBe(false);
    expect(acceptsGzip('')).toBe(false);
    expect(acceptsGzip(undefined)).toBe(false);
  });

  it('reads Accept-Encoding as RFC 9110 does: invalid q-values are ignored, identity;q=0 is honoured', () => {
    // An element whose q-value is not a qvalue (0 to 1, three decimals at most) is ignored, not taken as q=1.
    for (const header of ['gzip;q=-1', 'gzip;q=abc', 'gzip;q=1.5', 'gzip;q=0.0001', 'gzip;q=', '*;q=2']) {
      expect(negotiateContentEncoding(header), header).toBe('identity');
    }
    expect(negotiateContentEncoding('gzip;q=0.001')).toBe('gzip');
    expect(negotiateContentEncoding('gzip; Q=1.000')).toBe('gzip');
    // identity refused: gzip when offered, otherwise nothing acceptable (the server answers 406).
    expect(negotiateContentEncoding('identity;q=0')).toBe(undefined);
    expect(negotiateContentEncoding('gzip, identity;q=0')).toBe('gzip');
    expect(negotiateContentEncoding('gzip, identity;q=0', false)).toBe(undefined);
    expect(negotiateContentEncoding('*;q=0')).toBe(undefined);
    expect(negotiateContentEncoding('*;q=0, identity')).toBe('identity');
    expect(negotiateContentEncoding('br;q=1, *;q=0')).toBe(undefined);
    expect(negotiateContentEncoding('identity;q=0, *')).toBe('gzip');
    expect(negotiateContentEncoding('br')).toBe('identity');
    expect(negotiateContentEncoding('gzip', false)).toBe('identity');
    expect(negotiateContentEncoding(undefined)).toBe('identity');
  });

  it('answers 406 when identity is refused and gzip is not offered, gzip when it is', async () => {
    const { server: plain } = await setup({ gzip: false }, 100);
    const refused = await get(plain.url, { 'Accept-Encoding': 'identity;q=0' });
    expect(refused.status).toBe(406);
    expect(refused.headers['content-type']).toBe('text/plain; charset=utf-8');
    const { reader, server } = await setup({}, 100);
    const zipped = await get(server.url, { 'Accept-Encoding': 'identity;q=0, gzip;q=0.5' });
    expect(zipped.status).toBe(200);
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(zipped.body).toString('utf8')).toBe(await reader.serializeToString());
    const invalid = await get(server.url, { 'Accept-Encoding': 'gzip;q=-1' });
    expect(invalid.headers['content-encoding']).toBeUndefined();
    expect(invalid.body.toString('utf8')).toBe(await reader.serializeToString());
  });

  it('rejects a bad gzipLevel', () => {
    expect(() => new FastPrometheusReader({ gzipLevel: 0 })).toThrow(/gzipLevel/);
  });
});
