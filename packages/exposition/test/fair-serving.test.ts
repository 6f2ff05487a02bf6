import { afterEach, describe, expect, it } from 'vitest';
import { fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MAX_BUFFERED_BYTES } from '../src/index.js';
import { get, slowReader, startTarget, type Cleanup } from './serving-support.js';

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

const NEW_CONNECTION_BURST = fileURLToPath(new URL('./fixtures/new-connection-burst.mjs', import.meta.url));

interface BurstReport {
  /** The probe's status (0: it failed). */
  readonly status: number;
  /** Bytes the streaming writers had received when the newcomers began to queue, and when the probe's answer came. */
  readonly writerBytesAtQueue: number;
  readonly writerBytesAtAnswer: number;
  /** Bytes each writer received in all. */
  readonly writerBytes: number[];
}

/**
 * `fixtures/new-connection-burst.mjs` in a child process of its own: `writers` keep-alive scrapers stream their bodies
 * as fast as that process reads, then `newcomers` scrapes on new connections queue for the server's accepts, and a
 * health check on a new connection behind them.
 */
function newConnectionBurst(port: number, writers: number, newcomers: number): Promise<BurstReport> {
  const child = fork(NEW_CONNECTION_BURST, [String(writers), String(newcomers), String(port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cleanup.push(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    child.once('message', (received) => resolve(received as BurstReport));
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

  it('a health check on a new connection behind a burst of 40 new ones is answered long before 10 streaming bodies are written', async () => {
    // Node accepts one new connection per turn of its event loop, so the health check waits for 41 turns: with
    // every writer taking its own slice of each turn (and leaving megabytes for libuv to copy into its socket
    // within the turn), those turns lasted until the bodies were all written. The server, the scrapers and the
    // health check each in a process of their own; the measure is bytes, not time: of what the streaming bodies
    // still had to send when the burst queued, how much was sent before the health check was answered.
    const target = await startTarget(50_000, { healthz: true }, cleanup);
    const size = (await get(target.url)).body.length;
    expect(size).toBeGreaterThan(100e6);
    const report = await newConnectionBurst(target.port, 10, 40);
    expect(report.status).toBe(200);
    // The writers streamed whole bodies, and were streaming when the burst queued.
    expect(report.writerBytes.every((bytes) => bytes > size)).toBe(true);
    const total = report.writerBytes.reduce((sum, bytes) => sum + bytes, 0);
    const left = total - report.writerBytesAtQueue;
    expect(left).toBeGreaterThan(total / 2);
    const sentWhileQueued = report.writerBytesAtAnswer - report.writerBytesAtQueue;
    expect({ sentWhileQueued, left, underHalf: sentWhileQueued / left < 0.5 }).toMatchObject({ underHalf: true });
  }, 90_000);

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
