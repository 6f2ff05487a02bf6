/**
 * An operator's first hour, on an own cluster with password authentication and TLS: a role missing
 * grants, a database that is not Coder's, a dropped optional column, `check`, and followers that say
 * who leads. stderr holds JSON lines only in every case. `AGENTCONN_TEST_SSLMODE=disable` runs it without
 * TLS (with `AGENTCONN_EXPORTER_CLI`, against a build whose TLS differs).
 */
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { AGENT_SOURCE_COLUMNS, CODER_TABLES, type CoderDatabase } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { generateCoderData, migrateToLatest } from '@agentconn/kysely/testing';
import { freePort } from '@agentconn/test-support/ports';
import { connectNow, observedCount, scrape, waitFor } from './helpers/coder-data.js';
import { EXPORTER_CLI, nonJsonLines, spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { createSecureCluster, type SecureCluster } from './helpers/secure-cluster.js';

const PASSWORD = 'First-Hour-Pw';
let cluster: SecureCluster;
let coder: Kysely<CoderDatabase>;
let dropped: Kysely<CoderDatabase>;
const running: ExporterProcess[] = [];

const SSLMODE = process.env['AGENTCONN_TEST_SSLMODE'] ?? 'require';
const url = (user: string, database: string) => cluster.url({ user, password: PASSWORD, database, params: { sslmode: SSLMODE } });

async function grantReader(db: Kysely<CoderDatabase>, role: string, tables: readonly (typeof CODER_TABLES)[number][]): Promise<void> {
  for (const table of tables) {
    const columns = sql.join(AGENT_SOURCE_COLUMNS[table].map((c) => sql.id(c)));
    await sql`GRANT SELECT (${columns}) ON ${sql.id(table)} TO ${sql.id(role)}`.execute(db);
  }
}

async function migrated(name: string): Promise<Kysely<CoderDatabase>> {
  await cluster.sql(`CREATE DATABASE ${name}`);
  const db = createPostgresDb({ host: '/var/run/postgresql', port: cluster.port, user: 'postgres', database: name });
  await migrateToLatest(db);
  return db;
}

beforeAll(async () => {
  cluster = await createSecureCluster([55450, 55499]);
  for (const role of ['reader', 'partial']) await cluster.sql(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
  await cluster.sql('CREATE DATABASE empty');
  coder = await migrated('coder');
  await grantReader(coder, 'reader', CODER_TABLES);
  await grantReader(coder, 'partial', ['workspace_agents', 'workspace_resources', 'workspace_builds', 'workspaces']);
  dropped = await migrated('dropped');
  await generateCoderData(dropped, { seed: 3, users: 2, templates: 1, workspaces: 4, buildsPerWorkspace: 1, neverConnectedRatio: 1, deletedWorkspaceRatio: 0, deletedAgentRatio: 0, negativeRatio: 0 });
  await sql`ALTER TABLE workspace_agents DROP COLUMN connection_timeout_seconds`.execute(dropped);
  await grantReader(dropped, 'reader', CODER_TABLES.filter((t) => t !== 'workspace_agents'));
  await sql`GRANT SELECT (id, created_at, name, first_connected_at, resource_id, deleted) ON workspace_agents TO reader`.execute(dropped);
}, 180_000);

afterAll(async () => {
  for (const exporter of running) exporter.child.kill('SIGKILL');
  await coder?.destroy();
  await dropped?.destroy();
  await cluster?.drop();
});

function start(args: string[]): ExporterProcess {
  const exporter = spawnExporter(['--interval', '1s', ...args]);
  running.push(exporter);
  return exporter;
}

async function listen(): Promise<string[]> {
  return ['--listen', `127.0.0.1:${await freePort()}`];
}

async function readyz(metricsUrl: string): Promise<{ code: number; body: string }> {
  const response = await fetch(metricsUrl.replace('/metrics', '/readyz'));
  return { code: response.status, body: await response.text() };
}

async function advisoryLocks(database: string): Promise<number> {
  const { rows } = await cluster.sql(
    `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '${database}'`,
  );
  return (rows[0] as { n: number }).n;
}

function check(args: string[]) {
  return spawnSync(process.execPath, [EXPORTER_CLI, 'check', ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'] }, timeout: 30_000 });
}

describe('the preflight', () => {
  it('a role missing three grants gets one message naming all three, with the GRANTs, and no lock is taken', async () => {
    const exporter = start(['--database-url', url('partial', 'coder'), ...(await listen())]);
    const metricsUrl = await exporter.started;
    const line = await exporter.waitForLog((l) => l.msg.startsWith('preflight: the exporter cannot read'));
    expect(line['problems']).toEqual(['templates: permission denied', 'template_versions: permission denied', 'users: permission denied']);
    expect(line['fixes']).toEqual([
      'GRANT SELECT (id, name) ON templates TO partial;',
      'GRANT SELECT (id, name) ON template_versions TO partial;',
      'GRANT SELECT (id, username) ON users TO partial;',
    ]);
    const failure = await exporter.waitForLog((l) => l.msg.startsWith('polling the agent source failed'));
    expect(failure['err']).toMatchObject({ code: '42501' });
    const ready = await readyz(metricsUrl);
    expect(ready.code).toBe(503);
    for (const table of ['templates', 'template_versions', 'users']) expect(ready.body).toContain(`${table}: permission denied`);
    await new Promise((r) => setTimeout(r, 2500)); // a few more ticks: still one preflight line, still no lock
    expect(exporter.logs.filter((l) => l.msg.startsWith('preflight: the exporter cannot read'))).toHaveLength(1);
    expect(await advisoryLocks('coder')).toBe(0);
    expect(await exporter.stop()).toBe(0);
    expect(nonJsonLines(exporter.stderr())).toEqual([]);

    const report = check(['--database-url', url('partial', 'coder')]);
    expect(report.status).toBe(1);
    expect(report.stdout).toMatch(/^problem +templates: permission denied$/m);
    expect(report.stdout).toMatch(/^problem +template_versions: permission denied$/m);
    expect(report.stdout).toMatch(/^problem +users: permission denied$/m);
    expect(report.stdout).toMatch(/^fix +GRANT SELECT \(id, username\) ON users TO partial;$/m);
    expect(report.stdout).toMatch(/^server +PostgreSQL 15\.\d+.*; TLS TLSv1\.\d, sslmode=require$/m);
    expect(nonJsonLines(report.stderr)).toEqual([]);
  });

  it('a database that is not Coder\'s says so, takes no lock, and check exits 1', async () => {
    const exporter = start(['--database-url', url('reader', 'empty'), ...(await listen())]);
    const metricsUrl = await exporter.started;
    const line = await exporter.waitForLog((l) => l.msg.startsWith('preflight: the exporter cannot read'));
    expect(String(line['error'])).toMatch(/^this database has no Coder schema: none of workspace_agents, .* is in database empty \(role reader\)/);
    expect(String(line['error'])).toContain("supported: Coder's schema from migration 000338 (Coder v2.24.0) through 000532");
    await waitFor(async () => /no Coder schema/.test((await readyz(metricsUrl)).body), 10_000, '/readyz naming the missing schema');
    expect(await advisoryLocks('empty')).toBe(0);
    expect(await exporter.stop()).toBe(0);
    expect(nonJsonLines(exporter.stderr())).toEqual([]);
    const report = check(['--database-url', url('reader', 'empty')]);
    expect(report.status).toBe(1);
    expect(report.stdout).toMatch(/^problem +this database has no Coder schema/m);
  });

  it('a dropped connection_timeout_seconds turns off only the awaiting metrics: one warning naming it, the histogram serves', async () => {
    const exporter = start(['--database-url', url('reader', 'dropped'), ...(await listen())]);
    const metricsUrl = await exporter.started;
    const warning = await exporter.waitForLog((l) => l.level === 'warn' && l.msg.startsWith('preflight:'));
    expect(warning.msg).toContain('workspace_agents.connection_timeout_seconds: missing');
    await waitFor(async () => (await readyz(metricsUrl)).code === 200, 15_000, 'ready');
    const agents = (await sql<{ id: string }>`SELECT id FROM workspace_agents ORDER BY id LIMIT 2`.execute(dropped)).rows;
    await connectNow(dropped, agents.map((a) => ({ id: a.id }) as never));
    await waitFor(async () => (await observedCount(metricsUrl)) === agents.length, 15_000, 'the connections observed');
    const text = await scrape(metricsUrl);
    expect(text).toMatch(/^coderd_agents_first_connection_seconds_count\{/m);
    expect(text).not.toMatch(/^coderd_agents_awaiting_first_connection\{/m);
    expect(exporter.logs.filter((l) => l.level === 'warn' && String(l.msg).includes('connection_timeout_seconds'))).toHaveLength(1);
    expect(exporter.logs.filter((l) => l.level === 'error')).toEqual([]);
    expect(await exporter.stop()).toBe(0);
    expect(nonJsonLines(exporter.stderr())).toEqual([]);
    const report = check(['--database-url', url('reader', 'dropped')]);
    expect(report.status).toBe(0);
    expect(report.stdout).toMatch(/^off +coderd_agents_awaiting_first_connection.*: workspace_agents\.connection_timeout_seconds: missing$/m);
    expect(report.stdout).toMatch(/^result +ready: 1 metric family is off/m);
  });
});

describe('schema drift while running', () => {
  it('a column dropped under a running exporter fails the poll with err.code 42703, then the preflight names it', async () => {
    const drifting = await migrated('drifting');
    try {
      await grantReader(drifting, 'reader', CODER_TABLES);
      const exporter = start(['--database-url', url('reader', 'drifting'), ...(await listen())]);
      const metricsUrl = await exporter.started;
      await waitFor(async () => (await readyz(metricsUrl)).code === 200, 15_000, 'ready');
      await sql`ALTER TABLE template_versions DROP COLUMN name`.execute(drifting);
      const failure = await exporter.waitForLog((l) => l.msg.startsWith('polling the agent source failed'));
      expect(failure['err']).toMatchObject({ code: '42703' });
      const preflight = await exporter.waitForLog((l) => l.msg.startsWith('preflight: the exporter cannot read'));
      expect(preflight['problems']).toEqual(['template_versions.name: missing']);
      expect(String(preflight['error'])).toContain("supported: Coder's schema from migration 000338 (Coder v2.24.0) through 000532");
      expect(await exporter.stop()).toBe(0);
      expect(nonJsonLines(exporter.stderr())).toEqual([]);
    } finally {
      await drifting.destroy();
    }
  });
});

describe('leadership you can see', () => {
  it('a follower logs, serves on /readyz and / and in agentconn_leader_info who leads; a leader change and a stale leader are said', async () => {
    const leader = start(['--database-url', url('reader', 'coder'), ...(await listen())]);
    const leaderUrl = await leader.started;
    await leader.waitForLog((l) => l.msg.startsWith('became leader'));
    const follower = start(['--database-url', url('reader', 'coder'), '--labels', 'template_name,agent_name,username', ...(await listen())]);
    const followerUrl = await follower.started;
    const following = await follower.waitForLog((l) => l.msg.startsWith('following; leader is'));
    const who = `host ${hostname()} pid ${leader.child.pid}`;
    expect(following.msg).toContain(`following; leader is ${who} (application_name "agentconn-leader `);
    expect(following.msg).toMatch(/, labels template_name,agent_name, last published poll (none published yet|\d{4}-\d\d-\d\dT[^ ]+ \(\d+ s ago\))$/);
    expect(following).toMatchObject({ leader_pid: leader.child.pid, leader_labels: 'template_name,agent_name' });
    const labels = await follower.waitForLog((l) => l.level === 'warn' && String(l.msg).startsWith('the leader exports the labels'));
    expect(labels['fix']).toBe('give every replica the same --labels');

    await waitFor(async () => (await readyz(followerUrl)).code === 200, 10_000, 'follower ready');
    expect((await readyz(followerUrl)).body).toMatch(new RegExp(`^ready: following; leader is ${who} \\(`));
    const landing = await (await fetch(followerUrl.replace('/metrics', '/'))).text();
    expect(landing).toContain(`<th align="left">leader</th><td>${who}`);
    const metrics = await scrape(followerUrl);
    expect(metrics).toMatch(new RegExp(`^agentconn_leader_info\\{[^}]*leader_pid="${leader.child.pid}"[^}]*\\} 1$`, 'm'));
    expect(await scrape(leaderUrl)).toMatch(new RegExp(`^agentconn_leader_info\\{[^}]*leader_pid="${leader.child.pid}"[^}]*\\} 1$`, 'm'));

    // A leader that holds the lock but stopped polling (here: stopped by SIGSTOP) goes stale.
    leader.child.kill('SIGSTOP');
    const stale = await follower.waitForLog((l) => l.level === 'warn' && String(l.msg).startsWith('the leader holds the lock but its last published poll'), 15_000);
    expect(String(stale['fix'])).toContain(who);
    leader.child.kill('SIGCONT');

    // A second follower, then the leader goes: the follower left follows the new leader and says so.
    const third = start(['--database-url', url('reader', 'coder'), ...(await listen())]);
    await third.started;
    await third.waitForLog((l) => l.msg.startsWith('following; leader is'));
    expect(await leader.stop()).toBe(0);
    const newLeader = await Promise.race([
      follower.waitForLog((l) => l.msg.startsWith('became leader'), 30_000).then(() => ({ leads: follower, follows: third })),
      third.waitForLog((l) => l.msg.startsWith('became leader'), 30_000).then(() => ({ leads: third, follows: follower })),
    ]);
    await waitFor(
      () => newLeader.follows.logs.some((l) => l.msg.includes(`following; leader is host ${hostname()} pid ${newLeader.leads.child.pid} `)),
      15_000,
      'the remaining follower naming the new leader',
    );
    for (const exporter of [follower, third]) expect(await exporter.stop()).toBe(0);
    for (const exporter of [leader, follower, third]) expect(nonJsonLines(exporter.stderr())).toEqual([]);
  }, 90_000);

  it('check names who holds the lock, and reads a database with everything granted as ready', async () => {
    const leader = start(['--database-url', url('reader', 'coder'), ...(await listen())]);
    await leader.started;
    await leader.waitForLog((l) => l.msg.startsWith('became leader'));
    const report = check(['--database-url', url('reader', 'coder')]);
    expect(report.status).toBe(0);
    expect(report.stdout).toMatch(/^ok +coderd_agents_first_connection_seconds$/m);
    expect(report.stdout).toMatch(new RegExp(`^leader +host ${hostname()} pid ${leader.child.pid} \\(`, 'm'));
    expect(report.stdout).toMatch(/^result +ready: every metric family can be read$/m);
    expect(await leader.stop()).toBe(0);
  });
});
