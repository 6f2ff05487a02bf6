import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { MeterProvider, type MetricProducer } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { createMetricsServer, FastPrometheusReader, type FastPrometheusReaderOptions, type MetricsServerOptions } from '../src/index.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { MAX_WAITING_PER_CONNECTION } from '../src/http/serving-limits.js';
import { get, slowReader as slowReaderOf, startTarget as startTargetOf, type Cleanup } from './serving-support.js';

const cleanup: Cleanup = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const slowReader = (port: number, bytesPerSecond: number) => slowReaderOf(port, bytesPerSecond, cleanup);
const startTarget = (series: number, options: Parameters<typeof startTargetOf>[1]) => startTargetOf(series, options, cleanup);

describe('bounded serving', () => {
  // Measured before the fix: at 50k series each slow reader held its own full collection; 300 readers at 3 KB/s
  // took RSS from 0.8 to 3.7 GB and it never came back.
  it('300 slow readers at 50k series share one rendering: peak RSS stays below 1.5 × (idle RSS + one body)', async () => {
    const target = await startTarget(50_000, { reader: { maxConcurrentScrapes: 400 } });
    const url = `http://127.0.0.1:${target.port}/metrics`;
    const warm = await get(url);
    expect(warm.status).toBe(200);
    const bodyBytes = warm.body.length;
    expect(bodyBytes).toBeGreaterThan(100e6);
    const { rss: idleRss } = await target.ask<{ rss: number }>('rss');

    const readers = Array.from({ length: 300 }, () => slowReader(target.port, 3000));
    const deadline = Date.now() + 20_000;
    while (readers.some((r) => r.received() === 0) && Date.now() < deadline) await sleep(100);
    expect(readers.filter((r) => r.received() === 0)).toHaveLength(0);
    await sleep(3000);
    const { peakRss } = await target.ask<{ peakRss: number }>('peak');
    const bound = 1.5 * (idleRss + bodyBytes);
    expect({ peakRss, bound, idleRss, bodyBytes, ok: peakRss < bound }).toMatchObject({ ok: true });
    // The server is still fine for a normal scrape, and it gets every byte.
    const normal = await get(url);
    expect(normal.status).toBe(200);
    expect(Math.abs(normal.body.length - bodyBytes)).toBeLessThan(bodyBytes * 0.01);
  }, 120_000);

  // Slowloris: connections trickling their headers were never closed; near the fd limit /metrics refused everything.
  it('1000 slowloris connections: a normal scrape still answers within 2 s, and the headers timeout closes them all', async () => {
    const { server } = await setup({}, { headersTimeoutMillis: 1500 });
    const sockets: Socket[] = [];
    let closedByServer = 0;
    for (let i = 0; i < 1000; i++) {
      const socket = connect(server.port, '127.0.0.1');
      socket.on('error', () => {});
      socket.on('close', () => closedByServer++);
      socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      sockets.push(socket);
    }
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
    });
    const trickle = setInterval(() => {
      for (const socket of sockets) if (!socket.destroyed) socket.write('X-Slow: 1\r\n');
    }, 200);
    cleanup.push(() => clearInterval(trickle));
    await sleep(300);
    const started = Date.now();
    const reply = await get(server.url);
    expect(reply.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
    for (let waited = 0; closedByServer < 1000 && waited < 10_000; waited += 100) await sleep(100);
    expect(closedByServer).toBe(1000);
  }, 30_000);

  it('concurrent scrapes share one collection and get identical bytes', async () => {
    let collections = 0;
    const counting: MetricProducer = {
      collect: async () => {
        collections++;
        return { resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics: [] }, errors: [] };
      },
    };
    const { server } = await setup({ metricProducers: [counting], chunkBytes: 16384, drainTimeoutMillis: 60_000 }, {}, 20_000);
    // A reader that takes nothing keeps its rendering (and so its collection) in use.
    const stalled = slowReader(server.port, 0);
    for (let waited = 0; stalled.received() === 0 && waited < 5000; waited += 20) await sleep(20);
    const replies = await Promise.all(Array.from({ length: 8 }, () => get(server.url)));
    for (const reply of replies) expect(reply.body.equals(replies[0]!.body)).toBe(true);
    expect(replies[0]!.body.length).toBeGreaterThan(10e6);
    expect(collections).toBe(1);
    // Once no rendering uses it, a scrape collects again.
    stalled.socket.destroy();
    await stalled.closed;
    await sleep(50);
    await get(server.url);
    expect(collections).toBe(2);
  });

  it('beyond maxConcurrentScrapes answers 503 with Retry-After, and serves again once a slot is free', async () => {
    // Two scrapes held by a slow collection: no reader is slow, so the third has no slot to take.
    let finish: (() => void) | undefined;
    const held = new Promise<void>((resolve) => (finish = resolve));
    const slowCollection: MetricProducer = {
      collect: async () => {
        await held;
        return { resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics: [] }, errors: [] };
      },
    };
    const { server } = await setup({ maxConcurrentScrapes: 2, metricProducers: [slowCollection] });
    const first = [get(server.url), get(server.url)];
    await sleep(200);
    const refused = await get(server.url);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    finish?.();
    expect((await Promise.all(first)).map((reply) => reply.status)).toEqual([200, 200]);
    expect((await get(server.url)).status).toBe(200);
  });

  it('with every slot taken by readers too slow to finish, a new scrape takes the slot of the slowest', async () => {
    const { server, logger } = await setup({ maxConcurrentScrapes: 2, chunkBytes: 4096, drainTimeoutMillis: 60_000 }, {}, 20_000);
    const stalled = [slowReader(server.port, 0), slowReader(server.port, 0)];
    for (let waited = 0; stalled.some((r) => r.received() === 0) && waited < 5000; waited += 50) await sleep(50);
    // A second for their drain rate to show (bytes waited for them the whole time, and they took none).
    await sleep(1600);
    const reply = await get(server.url);
    expect(reply.status).toBe(200);
    expect(logger.records.filter((e) => e.message === 'metrics response reset: it drained too slowly and a new scrape needed its slot')).toHaveLength(1);
    // The one cut ends as soon as it reads again (a paused socket does not see the reset).
    for (const reader of stalled) reader.socket.resume();
    await Promise.race(stalled.map((r) => r.closed));
  });

  it('pipelined requests on one stalled connection hold one slot between them: a new scrape finds a free one', async () => {
    const { server, logger } = await setup({ maxConcurrentScrapes: 2, chunkBytes: 4096, drainTimeoutMillis: 60_000 }, {}, 20_000);
    // One response in progress and as many waiting as a connection may have; started at once they would take
    // both slots, and the new scrape would have to reset one of them (they take nothing, so they are slow).
    const pipelined = slowReaderOf(server.port, 0, cleanup, 1 + MAX_WAITING_PER_CONNECTION);
    for (let waited = 0; pipelined.received() === 0 && waited < 5000; waited += 50) await sleep(50);
    expect(pipelined.received()).toBeGreaterThan(0);
    // Long enough for a stalled response's rate to show, and for a request refused a slot to have been refused.
    await sleep(1600);
    const reply = await get(server.url);
    expect(reply.status).toBe(200);
    expect(logger.records.filter((e) => e.message.startsWith('metrics response reset'))).toEqual([]);
    expect(pipelined.socket.destroyed).toBe(false);
  });

  it('resets a response whose reader stops taking bytes, once drainTimeoutMillis passed', async () => {
    const { server, logger } = await setup({ drainTimeoutMillis: 1000, chunkBytes: 65536 }, {}, 20_000);
    const stalled = slowReader(server.port, 0);
    for (let waited = 0; stalled.received() === 0 && waited < 5000; waited += 50) await sleep(50);
    await sleep(2500);
    expect(logger.records.some((e) => e.message === 'metrics response reset: its socket took nothing for the drain timeout')).toBe(true);
    // A reset, not a graceful close: what the kernel still held for the reader is dropped, so, reading again, it
    // gets what its own buffers hold and no more (a graceful close would hand it the server's megabytes too).
    let bytes = 0;
    stalled.socket.on('data', (part: Buffer) => (bytes += part.length));
    stalled.socket.resume();
    await stalled.closed;
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(1024 * 1024);
  });

  it('cuts a response that does not finish within responseTimeoutMillis', async () => {
    const { server, logger, reader } = await setup({ responseTimeoutMillis: 500, chunkBytes: 4096 }, {}, 20_000);
    const stalled = slowReader(server.port, 0);
    await sleep(1500);
    expect(logger.records.some((e) => e.message === 'metrics response timed out; connection closed')).toBe(true);
    // The cut connection ends without the whole body.
    let bytes = 0;
    stalled.socket.on('data', (part: Buffer) => (bytes += part.length));
    stalled.socket.resume();
    await stalled.closed;
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(Buffer.byteLength(await reader.serializeToString()));
    // Reset, not closed gracefully: the megabytes the kernel held for it are dropped.
    expect(bytes).toBeLessThan(1024 * 1024);
  });

  it('rejects bad limits', () => {
    expect(() => new FastPrometheusReader({ maxConcurrentScrapes: 0 })).toThrow(/maxConcurrentScrapes/);
    expect(() => new FastPrometheusReader({ responseTimeoutMillis: 2 ** 31 })).toThrow(/responseTimeoutMillis/);
    expect(() => new FastPrometheusReader({ drainTimeoutMillis: 0 })).toThrow(/drainTimeoutMillis/);
    expect(() => new FastPrometheusReader({ maxBufferedBytes: 1000 })).toThrow(/maxBufferedBytes/);
    // A share window that is not a number would share a collection for as long as anyone reads it.
    expect(() => new FastPrometheusReader({ renderShareMillis: Number.NaN })).toThrow(/renderShareMillis/);
    expect(() => new FastPrometheusReader({ renderShareMillis: -1 })).toThrow(/renderShareMillis/);
    expect(() => new FastPrometheusReader({ renderShareMillis: 0 })).not.toThrow();
  });
});

async function setup(options: FastPrometheusReaderOptions = {}, serverOptions: Partial<MetricsServerOptions> = {}, series = 3) {
  const logger = createMemoryLogger();
  const reader = new FastPrometheusReader({ logger, ...options });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'bounds-test' }),
    views: [{ instrumentName: 'first_connection_seconds', aggregationCardinalityLimit: 1_000_000 }],
    readers: [reader],
  });
  const histogram = provider.getMeter('test').createHistogram('first_connection_seconds', { unit: 's' });
  for (let i = 0; i < series; i++) histogram.record(i % 100, { template_name: `t${i % 20}`, username: `user-${i}` });
  const server = await createMetricsServer({ reader, port: 0, ...serverOptions });
  cleanup.push(() => provider.shutdown(), () => server.close());
  return { reader, provider, server, logger };
}
