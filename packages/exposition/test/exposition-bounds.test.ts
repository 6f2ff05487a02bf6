import { afterEach, describe, expect, it } from 'vitest';
import { fork, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { MeterProvider, type MetricProducer } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { createMetricsServer, FastPrometheusReader, type FastPrometheusReaderOptions, type MetricsServerOptions } from '../src/index.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';

const TARGET = fileURLToPath(new URL('./fixtures/scrape-target.mjs', import.meta.url));

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

function get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A reader that sends its request and then takes `bytesPerSecond` of the answer (0: none at all). */
function slowReader(port: number, bytesPerSecond: number): { socket: Socket; received: () => number; closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1');
  let received = 0;
  socket.on('error', () => {});
  socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  socket.pause();
  const perTick = Math.floor(bytesPerSecond / 10);
  const timer = setInterval(() => {
    for (let taken = 0; taken < perTick; ) {
      const part = socket.read() as Buffer | null;
      if (part === null) break;
      taken += part.length;
      received += part.length;
    }
    // The first bytes (status line) are seen even at 0 B/s (read(0) fills the buffer without consuming it).
    if (received === 0) {
      socket.read(0);
      received = socket.readableLength;
    }
  }, 100);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => clearInterval(timer));
  cleanup.push(() => {
    clearInterval(timer);
    socket.destroy();
  });
  return { socket, received: () => received, closed };
}

interface Target {
  readonly child: ChildProcess;
  readonly port: number;
  ask<T>(message: string): Promise<T>;
}

async function startTarget(series: number, options: { reader?: FastPrometheusReaderOptions; server?: Partial<MetricsServerOptions> }): Promise<Target> {
  const child = fork(TARGET, [String(series), JSON.stringify(options)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cleanup.push(() => child.kill('SIGKILL'));
  const next = <T>(): Promise<T> =>
    new Promise((resolve, reject) => {
      child.once('message', (message) => resolve(message as T));
      child.once('exit', (code) => reject(new Error(`scrape target exited with ${code}`)));
    });
  const { port } = await next<{ port: number }>();
  return {
    child,
    port,
    ask<T>(message: string) {
      const answer = next<T>();
      child.send(message);
      return answer;
    },
  };
}

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
    const { server } = await setup({ metricProducers: [counting], chunkBytes: 16384 }, {}, 20_000);
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
    const { server } = await setup({ maxConcurrentScrapes: 2, chunkBytes: 4096 }, {}, 20_000);
    const stalled = [slowReader(server.port, 0), slowReader(server.port, 0)];
    for (let waited = 0; stalled.some((r) => r.received() === 0) && waited < 5000; waited += 50) await sleep(50);
    const refused = await get(server.url);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    for (const reader of stalled) reader.socket.destroy();
    await Promise.all(stalled.map((r) => r.closed));
    await sleep(50);
    expect((await get(server.url)).status).toBe(200);
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
  });

  it('rejects bad limits', () => {
    expect(() => new FastPrometheusReader({ maxConcurrentScrapes: 0 })).toThrow(/maxConcurrentScrapes/);
    expect(() => new FastPrometheusReader({ responseTimeoutMillis: 2 ** 31 })).toThrow(/responseTimeoutMillis/);
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
