/**
 * Timeouts are counted once per agent across restarts and replicas, like first connections
 * (ha-faults.test.ts has the same for the histogram): exporter processes on the real PostgreSQL server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createCoderFixture, scrape, waitFor, type CoderFixture, afterPolls } from './helpers/coder-data.js';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import type { GeneratedAgent } from '@agentconn/kysely/testing';

const INTERVAL_MS = 1000;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function fixture(options: Parameters<typeof createCoderFixture>[0] = {}): Promise<CoderFixture> {
  const f = await createCoderFixture(options);
  cleanups.push(() => f.close());
  return f;
}

async function exporter(databaseUrl: string, extra: string[] = []): Promise<{ process: ExporterProcess; url: string }> {
  const port = await freePort();
  const process = spawnExporter(['--database-url', databaseUrl, '--listen', `127.0.0.1:${port}`, '--interval', `${INTERVAL_MS}ms`, ...extra]);
  cleanups.push(async () => {
    process.child.kill('SIGKILL');
    await process.exited;
  });
  return { process, url: await process.started };
}

const timeouts = async (url: string) => sumSamples(await scrape(url), 'coderd_agents_first_connection_timeouts_total');
const leaderGauge = async (url: string) => sumSamples(await scrape(url), 'agentconn_leader');

/** The agents start waiting now (database clock) with this connection timeout. */
async function startWaiting(f: CoderFixture, agents: readonly GeneratedAgent[], timeoutSeconds: number): Promise<void> {
  await sql`UPDATE workspace_agents SET created_at = clock_timestamp(), connection_timeout_seconds = ${timeoutSeconds}
    WHERE id = ANY(${agents.map((a) => a.id)}::uuid[])`.execute(f.db);
}

describe('timeouts across restarts', () => {
  it('connection_timeout_seconds = 0 never times out unless --connection-timeout is given; a restart (default backfill) never re-counts', async () => {
    const f = await fixture();
    // The generated agents wait since up to a day, with connection_timeout_seconds 0 (Coder's default).
    const plain = await exporter(f.database.url);
    await afterPolls(plain.url, 3);
    expect(await timeouts(plain.url)).toBe(0);
    expect(await plain.process.stop('SIGTERM')).toBe(0);

    // With a fallback of 1 s they all timed out long before this start: not counted (default backfill).
    const first = await exporter(f.database.url, ['--connection-timeout', '1s']);
    await afterPolls(first.url, 2);
    expect(await timeouts(first.url)).toBe(0);
    const fresh = f.counting.slice(0, 3);
    await startWaiting(f, fresh, 0);
    await waitFor(async () => (await timeouts(first.url)) === fresh.length, 10_000, 'fresh agents time out by the fallback');
    await afterPolls(first.url, 3);
    expect(await timeouts(first.url)).toBe(fresh.length);
    expect(await first.process.stop('SIGTERM')).toBe(0);

    const second = await exporter(f.database.url, ['--connection-timeout', '1s']);
    await afterPolls(second.url, 3);
    expect(await timeouts(second.url)).toBe(0);
    expect(await second.process.stop('SIGTERM')).toBe(0);

    // --backfill all counts every current agent's timeout once, old builds and deleted ones not.
    const all = await exporter(f.database.url, ['--connection-timeout', '1s', '--backfill', 'all']);
    await afterPolls(all.url, 3);
    expect(await timeouts(all.url)).toBe(f.counting.length);
  }, 90_000);
});

describe('timeouts across replicas', () => {
  it('only the leader counts; after kill -9 of the leader the other counts new timeouts once and none of the old ones again', async () => {
    const f = await fixture({ workspaces: 40 });
    const a = await exporter(f.database.url);
    await afterPolls(a.url, 1);
    const b = await exporter(f.database.url);
    await waitFor(async () => (await leaderGauge(a.url)) + (await leaderGauge(b.url)) === 1, 10_000, 'one leader');
    await afterPolls(a.url, 1);
    const [leader, follower] = (await leaderGauge(a.url)) === 1 ? [a, b] : [b, a];

    const wave1 = f.counting.slice(0, 6);
    await startWaiting(f, wave1, 1);
    await waitFor(async () => (await timeouts(leader.url)) === wave1.length, 10_000, 'leader counts wave 1');
    await new Promise((r) => setTimeout(r, 3.5 * INTERVAL_MS));
    expect(await timeouts(leader.url)).toBe(wave1.length);
    expect(await timeouts(follower.url)).toBe(0);
    // The follower reports no awaiting series, so sums over replicas are the leader's.
    const followerText = await scrape(follower.url);
    expect(sumSamples(followerText, 'coderd_agents_awaiting_first_connection')).toBe(0);
    expect(followerText).not.toContain('coderd_agents_awaiting_first_connection{');
    expect(sumSamples(await scrape(leader.url), 'coderd_agents_awaiting_first_connection')).toBe(f.counting.length);

    leader.process.child.kill('SIGKILL');
    await leader.process.exited;
    await waitFor(async () => (await leaderGauge(follower.url)) === 1, 2 * INTERVAL_MS + 1500, 'takeover');
    const wave2 = f.counting.slice(6, 10);
    await startWaiting(f, wave2, 1);
    await waitFor(async () => (await timeouts(follower.url)) >= wave2.length, 10_000, 'new leader counts wave 2');
    await afterPolls(follower.url, 3);
    // Wave 1 timed out more than an interval before the takeover: never counted again.
    expect(await timeouts(follower.url)).toBe(wave2.length);
    expect(sumSamples(await scrape(follower.url), 'coderd_agents_awaiting_first_connection')).toBe(f.counting.length);
  }, 90_000);
});
