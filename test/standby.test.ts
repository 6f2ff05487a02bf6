/**
 * The exporter pointed at a real streaming hot standby (its own primary and standby clusters), as a
 * SELECT-only role. Replay paused longer than the overlap while agents connect on the primary: before,
 * the watermark followed the standby's clock and the 10 agents of the pause were never counted (10 of 20).
 */
import pg from 'pg';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoderDatabase } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { generateCoderData, migrateToLatest, type GeneratedAgent } from '@agentconn/kysely/testing';
import { connectNow, observedCount, scrape, waitFor, afterPolls } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createStreamingPair, type StreamingPair } from './helpers/standby.js';

const INTERVAL_MS = 1000;
const OVERLAP_S = 10;
const ROLE = 'agentconn_standby_reader';
const LAG_LINE = 'the standby replays behind its primary by more than the overlap; first connections are counted once replayed';

let pair: StreamingPair;
let primaryDb: Kysely<CoderDatabase>;
let counting: GeneratedAgent[];
const exporters: ExporterProcess[] = [];

beforeAll(async () => {
  pair = await createStreamingPair([5450, 5459]);
  const admin = new pg.Client({ connectionString: pair.url('primary', 'postgres') });
  await admin.connect();
  await admin.query('CREATE DATABASE coder');
  await admin.end();
  primaryDb = createPostgresDb(pair.url('primary', 'coder'));
  await migrateToLatest(primaryDb);
  const data = await generateCoderData(primaryDb, {
    seed: 16,
    users: 4,
    templates: 2,
    workspaces: 40,
    buildsPerWorkspace: 2,
    deletedWorkspaceRatio: 0.1,
    deletedAgentRatio: 0.05,
    neverConnectedRatio: 1,
    negativeRatio: 0,
    specialLabels: false,
  });
  counting = data.agents.filter((a) => a.latestBuild && !a.workspaceDeleted && !a.deleted);
  // The least privilege: SELECT on the columns read, nothing else (created on the primary, replicated).
  const grants = new pg.Client({ connectionString: pair.url('primary', 'coder') });
  await grants.connect();
  await grants.query(`CREATE ROLE ${ROLE} LOGIN`);
  await grants.query(`GRANT SELECT (id, created_at, name, first_connected_at, resource_id, deleted, connection_timeout_seconds) ON workspace_agents TO ${ROLE}`);
  await grants.query(`GRANT SELECT (id, job_id) ON workspace_resources TO ${ROLE}`);
  await grants.query(`GRANT SELECT (workspace_id, template_version_id, build_number, job_id) ON workspace_builds TO ${ROLE}`);
  await grants.query(`GRANT SELECT (id, owner_id, template_id, deleted, name) ON workspaces TO ${ROLE}`);
  await grants.query(`GRANT SELECT (id, name) ON templates TO ${ROLE}`);
  await grants.query(`GRANT SELECT (id, name) ON template_versions TO ${ROLE}`);
  await grants.query(`GRANT SELECT (id, username) ON users TO ${ROLE}`);
  await grants.end();
  await pair.startStandby();
}, 120_000);

afterAll(async () => {
  for (const e of exporters) {
    e.child.kill('SIGKILL');
    await e.exited;
  }
  await primaryDb?.destroy();
  await pair?.drop();
}, 60_000);

async function onStandby<T>(query: string): Promise<T> {
  const client = new pg.Client({ connectionString: pair.url('standby', 'coder') });
  await client.connect();
  try {
    return (await client.query(query)).rows[0] as T;
  } finally {
    await client.end();
  }
}

async function replayLag(url: string): Promise<number | undefined> {
  const line = (await scrape(url)).split('\n').find((l) => l.startsWith('agentconn_source_replay_lag_seconds'));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('a streaming hot standby as the source', () => {
  it('replay paused 20 s (overlap 10 s) while 10 of 20 agents connect on the primary: after resume all 20 counted once, the lag logged while it lasted', async () => {
    // The standby has replayed the schema and the role before the exporter starts.
    await waitFor(async () => (await onStandby<{ n: number }>(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = '${ROLE}'`)).n === 1, 30_000, 'standby replays');
    const port = await freePort();
    const exporter = spawnExporter([
      '--database-url', pair.url('standby', 'coder', ROLE),
      '--listen', `127.0.0.1:${port}`,
      '--interval', `${INTERVAL_MS}ms`,
      '--overlap', `${OVERLAP_S}s`,
    ]);
    exporters.push(exporter);
    const url = await exporter.started;
    await afterPolls(url, 1);

    const before = counting.slice(0, 10);
    await connectNow(primaryDb, before);
    await waitFor(async () => (await observedCount(url)) === before.length, 15_000, 'the first 10 observed');
    const lagBefore = await replayLag(url);

    await onStandby('SELECT pg_wal_replay_pause()');
    const pausedAt = Date.now();
    const during = counting.slice(10, 20);
    await connectNow(primaryDb, during);
    let maxLag = 0;
    while (Date.now() - pausedAt < 20_000) {
      maxLag = Math.max(maxLag, (await replayLag(url)) ?? 0);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await observedCount(url)).toBe(before.length);
    await onStandby('SELECT pg_wal_replay_resume()');
    const resumedAt = Date.now();
    // Before: 10 of 20, the 10 of the pause never counted.
    await waitFor(async () => (await observedCount(url)) >= before.length + during.length, 15_000, 'the 10 of the pause observed');

    // The lag was exposed and logged (once) while it lasted, and its end was logged.
    expect(lagBefore).toBeLessThan(OVERLAP_S);
    expect(maxLag).toBeGreaterThan(OVERLAP_S);
    const lagLines = exporter.logs.filter((l) => l.msg === LAG_LINE);
    expect(lagLines).toHaveLength(1);
    const loggedAt = Date.parse(String(lagLines[0]!['time']));
    expect(loggedAt).toBeGreaterThan(pausedAt);
    expect(loggedAt).toBeLessThan(resumedAt);
    expect(lagLines[0]).toMatchObject({ level: 'warn', overlap_s: OVERLAP_S });
    await exporter.waitForLog((l) => l.msg === 'the standby caught up with its primary', 10_000);
    await afterPolls(url, 3);
    expect(await observedCount(url)).toBe(before.length + during.length);
    expect(await replayLag(url)).toBe(0);

    // An idle primary: its last commit ages beyond the overlap, which is no lag and no alarm.
    await new Promise((r) => setTimeout(r, (OVERLAP_S + 2) * 1000));
    expect(exporter.logs.filter((l) => l.msg === LAG_LINE)).toHaveLength(1);
    expect(await replayLag(url)).toBe(0);
    const after = counting.slice(20, 23);
    await connectNow(primaryDb, after);
    await waitFor(async () => (await observedCount(url)) === before.length + during.length + after.length, 15_000, 'after the idle time');
    expect(exporter.logs.filter((l) => l.level === 'error')).toEqual([]);
  }, 120_000);
});
