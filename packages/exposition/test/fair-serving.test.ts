import { afterEach, describe, expect, it } from 'vitest';
import { fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MAX_BUFFERED_BYTES } from '../src/index.js';
import { get, slowReader, startTarget, type Cleanup, type Reply } from './serving-support.js';

/**
 * Serving large bodies fairly (issue #31), against the exposition in a child process of its own (so that the
 * server's event loop, and its RSS, are not the test's): one client, or a few, must not starve the scraper.
 * Every body here is larger than the sockets' buffers, so a reader that does not read really holds its response.
 */

const cleanup: Cleanup = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** A normal scrape every `everyMillis` for `forMillis`: every answer, with how long it took. */
async function scrapeEvery(url: string, everyMillis: number, forMillis: number): Promise<Array<{ status: number; bytes: number; millis: number }>> {
  const results: Array<{ status: number; bytes: number; millis: number }> = [];
  const end = Date.now() + forMillis;
  while (Date.now() < end) {
    const started = Date.now();
    const reply = await get(url);
    results.push({ status: reply.status, bytes: reply.body.length, millis: Date.now() - started });
    await sleep(Math.max(0, everyMillis - (Date.now() - started)));
  }
  return results;
}

const BURST_CLIENT = fileURLToPath(new URL('./fixtures/burst-client.mjs', import.meta.url));

/**
 * `count` scrapers in a child process of their own (`fixtures/burst-client.mjs`), each on a keep-alive connection it
 * opened beforehand, ask for /metrics at once and read the bodies as fast as that process can: the bytes each got.
 */
function burstFromChild(port: number, count: number): Promise<number[]> {
  const child = fork(BURST_CLIENT, [String(count), String(port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cleanup.push(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    child.once('message', (received) => resolve(received as number[]));
    child.once('exit', (code) => reject(new Error(`burst client exited with ${code} before reporting`)));
  });
}

describe('fair serving of large bodies', () => {
  it('ten pipelined requests on one slow connection take one slot: a scrape every 1.5 s gets 200 throughout', async () => {
    const target = await startTarget(5000, { reader: { drainTimeoutMillis: 60_000 } }, cleanup);
    const size = (await get(target.url)).body.length;
    expect(size).toBeGreaterThan(10e6);
    const pipelined = slowReader(target.port, 1000, cleanup, 10);
    for (let waited = 0; pipelined.received() === 0 && waited < 5000; waited += 50) await sleep(50);
    expect(pipelined.received()).toBeGreaterThan(0);
    const scrapes = await scrapeEvery(target.url, 1500, 5000);
    expect(scrapes.map((s) => s.status)).toEqual(scrapes.map(() => 200));
    expect(scrapes.every((s) => s.bytes === size)).toBe(true);
    expect(scrapes.length).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('ten slow clients do not hold every slot: a scrape every 1.5 s gets 200 throughout', async () => {
    const target = await startTarget(5000, { reader: { drainTimeoutMillis: 60_000 } }, cleanup);
    const size = (await get(target.url)).body.length;
    const slow = Array.from({ length: 10 }, () => slowReader(target.port, 1000, cleanup));
    for (let waited = 0; slow.some((r) => r.received() === 0) && waited < 5000; waited += 50) await sleep(50);
    // Every slot is taken now; give the slow readers time to show how slow they are.
    await sleep(2000);
    const scrapes = await scrapeEvery(target.url, 1500, 5000);
    expect(scrapes.map((s) => s.status)).toEqual(scrapes.map(() => 200));
    expect(scrapes.every((s) => s.bytes === size)).toBe(true);
    expect(scrapes.length).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('during a burst of 50 scrapes that another process reads as fast as it can, /healthz answers within 1 s', async () => {
    // The server, the scrapers and the health checks each in a process of their own: the scrapers take every byte
    // as fast as they can (the server's pace is not the test's), and a health check waits for nobody's reading.
    const target = await startTarget(5000, { healthz: true }, cleanup);
    const healthz = `http://127.0.0.1:${target.port}/healthz`;
    const size = (await get(target.url)).body.length;
    expect(size).toBeGreaterThan(10e6);
    const burst = burstFromChild(target.port, 50);
    let done = false;
    void burst.then(
      () => (done = true),
      () => (done = true),
    );
    const latencies: number[] = [];
    while (!done) {
      // A new connection each time, as a liveness probe makes.
      const started = Date.now();
      const reply: Reply = await get(healthz);
      expect(reply.status).toBe(200);
      latencies.push(Date.now() - started);
      await sleep(50);
    }
    const bodies = await burst;
    // The burst really streamed whole bodies (ten at a time at least).
    expect(bodies.filter((bytes) => bytes > size).length).toBeGreaterThanOrEqual(10);
    expect(latencies.length).toBeGreaterThan(3);
    expect(Math.max(...latencies)).toBeLessThan(1000);
  }, 60_000);

  it('ten staggered slow readers beside a fast scraper: RSS stays within maxBufferedBytes of the idle process', async () => {
    // Slots enough for every reader, and a rendering shared for 300 ms only, so that each round starts a rendering
    // of its own (as scrapes a few seconds apart do with the default): what is measured is memory alone.
    const target = await startTarget(20_000, { reader: { drainTimeoutMillis: 60_000, maxConcurrentScrapes: 20, renderShareMillis: 300 } }, cleanup);
    const size = (await get(target.url)).body.length;
    expect(size).toBeGreaterThan(50e6);
    const { rss: idleRss } = await target.ask<{ rss: number }>('rss');
    const slow = [];
    for (let round = 0; round < 10; round++) {
      // The slow reader asks together with a fast scrape, so both read one rendering: the fast one races ahead.
      slow.push(slowReader(target.port, 100_000, cleanup));
      const fast = await get(target.url);
      expect(fast.status).toBe(200);
      expect(fast.body.length).toBe(size);
      await sleep(500);
    }
    const { peakRss } = await target.ask<{ peakRss: number }>('peak');
    expect(slow.every((reader) => reader.received() > 0)).toBe(true);
    const bound = idleRss + 2 * DEFAULT_MAX_BUFFERED_BYTES;
    expect({ peakRss, idleRss, bound, ok: peakRss < bound }).toMatchObject({ ok: true });
  }, 90_000);
});
