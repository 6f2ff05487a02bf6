/**
 * The whole start (`--phases`) through real exporter processes on the real server: each start build once
 * across ticks, restarts (default backfill and --state-file), two replicas with kill -9 of the leader, a
 * database outage, and a build that never connects with no timeout, in progress until superseded.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { freePort } from '@agentconn/test-support/ports';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { startTcpProxy } from '@agentconn/test-support/tcp-proxy';
import { afterPolls, scrape, waitFor } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { createStartDatabase, insertStartBuild, startsObserved, sumWhere, supersede, type StartDatabase } from './helpers/start-builds.js';

const INTERVAL_MS = 1000;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function database(): Promise<StartDatabase> {
  const d = await createStartDatabase();
  cleanups.push(() => d.close());
  return d;
}

async function exporter(databaseUrl: string, extra: string[] = []): Promise<{ process: ExporterProcess; url: string }> {
  const port = await freePort();
  const process = spawnExporter(['--database-url', databaseUrl, '--listen', `127.0.0.1:${port}`, '--interval', `${INTERVAL_MS}ms`, '--phases', 'true', ...extra]);
  cleanups.push(async () => {
    process.child.kill('SIGKILL');
    await process.exited;
  });
  return { process, url: await process.started };
}

describe('the whole start, exactly once', () => {
  it('a build is counted once across ticks and restarts: default backfill never re-counts, --state-file counts the downtime once', async () => {
    const d = await database();
    const directory = await mkdtemp(join(tmpdir(), 'agentconn-starts-'));
    cleanups.push(() => rm(directory, { recursive: true, force: true }));
    const stateFile = join(directory, 'state');
    const first = await exporter(d.database.url, ['--state-file', stateFile]);
    await afterPolls(first.url, 1);
    await insertStartBuild(d.db, { seconds: 40 });
    await waitFor(async () => (await startsObserved(first.url, 'ready')) === 1, 10_000, 'first run observes the start');
    await afterPolls(first.url, 3);
    const text = await scrape(first.url);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count')).toBe(1);
    expect(sumWhere(text, 'agentconn_workspace_start_phase_seconds_count', { phase: 'starting' })).toBe(1);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_sum')).toBeCloseTo(40, 5);
    first.process.child.kill('SIGKILL');
    await first.process.exited;

    await insertStartBuild(d.db, { seconds: 50 }); // during the downtime
    const second = await exporter(d.database.url, ['--state-file', stateFile]);
    await second.process.waitForLog((l) => l.msg === 'resuming from the state file');
    await waitFor(async () => (await startsObserved(second.url)) >= 1, 10_000, 'second run observes the downtime');
    await afterPolls(second.url, 3);
    expect(await startsObserved(second.url)).toBe(1);
    expect(sumWhere(await scrape(second.url), 'agentconn_workspace_start_seconds_sum')).toBeCloseTo(50, 5);
    expect(await second.process.stop('SIGTERM')).toBe(0);

    // Default --backfill none, no state file: nothing before the start is counted again.
    const third = await exporter(d.database.url);
    await afterPolls(third.url, 3);
    expect(await startsObserved(third.url)).toBe(0);
    await insertStartBuild(d.db, { seconds: 30 });
    await waitFor(async () => (await startsObserved(third.url)) === 1, 10_000, 'third run observes a new start');
  }, 60_000);

  it('two replicas: only the leader counts; after kill -9 of the leader the other counts what follows once', async () => {
    const d = await database();
    const a = await exporter(d.database.url);
    await afterPolls(a.url, 1);
    const b = await exporter(d.database.url);
    const leaderOf = async (url: string) => sumSamples(await scrape(url), 'agentconn_leader');
    await waitFor(async () => (await leaderOf(a.url)) + (await leaderOf(b.url)) === 1, 10_000, 'exactly one leader');
    const [leader, follower] = (await leaderOf(a.url)) === 1 ? [a, b] : [b, a];
    await insertStartBuild(d.db);
    await waitFor(async () => (await startsObserved(leader.url)) === 1, 10_000, 'leader observes');
    await new Promise((r) => setTimeout(r, 2.5 * INTERVAL_MS));
    expect(await startsObserved(follower.url)).toBe(0);
    leader.process.child.kill('SIGKILL');
    await leader.process.exited;
    // A start that ends while nobody leads: counted exactly once by the next leader.
    await insertStartBuild(d.db, { template: 'gap' });
    await waitFor(async () => (await leaderOf(follower.url)) === 1, 10_000, 'takeover');
    await insertStartBuild(d.db, { template: 'k8s' });
    await waitFor(async () => (await startsObserved(follower.url)) >= 1, 10_000, 'new leader observes');
    await afterPolls(follower.url, 3);
    const text = await scrape(follower.url);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count', { template_name: 'k8s' })).toBe(1);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count', { template_name: 'gap' })).toBe(1);
    // The one build of the old leader's last interval may be counted again (the documented failover bound).
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count', { template_name: 'docker' })).toBeLessThanOrEqual(1);
  }, 60_000);

  it('a database outage loses nothing: a start that ends during it is counted once after', async () => {
    const d = await database();
    const target = new URL(BASE_DATABASE_URL);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    cleanups.push(() => proxy.close());
    const viaProxy = new URL(d.database.url);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const { url } = await exporter(viaProxy.toString());
    await afterPolls(url, 1);
    await proxy.block();
    await insertStartBuild(d.db);
    await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
    expect(await startsObserved(url)).toBe(0);
    await proxy.unblock();
    await waitFor(async () => (await startsObserved(url)) === 1, 20_000, 'recovery');
    await afterPolls(url, 3);
    expect(await startsObserved(url)).toBe(1);
  }, 60_000);

  it('an agent that never connects with connection_timeout_seconds = 0: never counted, in progress until superseded', async () => {
    const d = await database();
    const { url } = await exporter(d.database.url);
    await afterPolls(url, 1);
    const stuck = await insertStartBuild(d.db, { waitingWithTimeout: 0 });
    // Its agent was created 1 s ago: the 1 s timeout passes after the exporter started.
    const timedOut = await insertStartBuild(d.db, { seconds: 2, waitingWithTimeout: 1, template: 'k8s' });
    await waitFor(async () => (await startsObserved(url, 'connect_timeout')) === 1, 10_000, 'the 1 s timeout counted');
    await afterPolls(url, 2);
    let text = await scrape(url);
    expect(sumWhere(text, 'agentconn_workspace_starts_in_progress', { template_name: 'docker', phase: 'connecting' })).toBe(1);
    expect(sumWhere(text, 'agentconn_workspace_starts_in_progress_oldest_seconds', { template_name: 'docker', phase: 'connecting' })).toBeGreaterThanOrEqual(20);
    expect(sumWhere(text, 'agentconn_workspace_starts_in_progress', { template_name: 'k8s' })).toBe(0);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count', { template_name: 'docker' })).toBe(0);
    expect(timedOut.buildId).not.toBe(stuck.buildId);
    await supersede(d.db, stuck);
    await waitFor(async () => !(await scrape(url)).includes('agentconn_workspace_starts_in_progress{'), 10_000, 'superseded build leaves the gauges');
    await afterPolls(url, 2);
    text = await scrape(url);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count', { template_name: 'docker' })).toBe(0);
  }, 60_000);

  it('a build whose phases each outlast the overlap is observed once per phase (--overlap 2s)', async () => {
    const d = await database();
    const { url } = await exporter(d.database.url, ['--overlap', '2s']);
    await afterPolls(url, 1);
    const build = await insertStartBuild(d.db, { progressing: true });
    const step = async (statement: ReturnType<typeof sql>) => {
      await new Promise((r) => setTimeout(r, 3.5 * INTERVAL_MS)); // longer than the overlap
      await statement.execute(d.db);
    };
    const job = sql`(SELECT job_id FROM workspace_builds WHERE id = ${build.buildId})`;
    await step(sql`UPDATE provisioner_jobs SET completed_at = clock_timestamp() WHERE id = ${job}`);
    await step(sql`UPDATE workspace_agents SET first_connected_at = clock_timestamp(), created_at = clock_timestamp() - interval '1 second'
      WHERE resource_id IN (SELECT id FROM workspace_resources WHERE job_id = ${job})`);
    await step(sql`UPDATE workspace_agents SET ready_at = clock_timestamp(), lifecycle_state = 'ready'
      WHERE resource_id IN (SELECT id FROM workspace_resources WHERE job_id = ${job})`);
    await waitFor(async () => (await startsObserved(url, 'ready')) === 1, 10_000, 'the start observed');
    await afterPolls(url, 4);
    const text = await scrape(url);
    expect(sumWhere(text, 'agentconn_workspace_start_seconds_count')).toBe(1);
    for (const phase of ['queued', 'provisioning', 'connecting', 'starting']) {
      expect({ phase, count: sumWhere(text, 'agentconn_workspace_start_phase_seconds_count', { phase }) }).toEqual({ phase, count: 1 });
    }
  }, 60_000);
});
