import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { connectNow, createCoderFixture, observedCount, scrape, waitFor, type CoderFixture } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { startTcpProxy, type TcpProxy } from '@agentconn/test-support/tcp-proxy';

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

async function successfulPolls(url: string): Promise<number> {
  const text = await scrape(url);
  const line = text.split('\n').find((l) => l.startsWith('agentconn_polls_total{') && l.includes('outcome="success"'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function afterPolls(url: string, n: number): Promise<void> {
  const start = await successfulPolls(url);
  await waitFor(async () => (await successfulPolls(url)) >= start + n, 20_000, `${n} more successful polls`);
}

async function leaderGauge(url: string): Promise<number> {
  return sumSamples(await scrape(url), 'agentconn_leader');
}

describe('late commits', () => {
  it('a first connection committed after the tick that should have seen it is still observed exactly once', async () => {
    const f = await fixture();
    const { url } = await exporter(f.database.url);
    await afterPolls(url, 1);
    const late = f.counting[0]!;
    const client = new pg.Client({ connectionString: f.database.url });
    await client.connect();
    cleanups.push(() => client.end());
    await client.query('BEGIN');
    await client.query(
      `UPDATE workspace_agents SET created_at = clock_timestamp() - interval '42 seconds', first_connected_at = clock_timestamp() WHERE id = $1`,
      [late.id],
    );
    // Several ticks pass with first_connected_at in the past but not yet visible.
    await afterPolls(url, 3);
    expect(await observedCount(url)).toBe(0);
    await client.query('COMMIT');
    await waitFor(async () => (await observedCount(url)) === 1, 10_000, 'late row observed');
    await afterPolls(url, 3);
    expect(await observedCount(url)).toBe(1);
  });
});

describe('restarts', () => {
  it('by default a restart does not re-count connected agents; with --backfill all it counts them exactly once', async () => {
    const f = await fixture();
    const first = await exporter(f.database.url);
    await afterPolls(first.url, 1);
    const before = f.counting.slice(0, 10);
    await connectNow(f.db, before);
    await waitFor(async () => (await observedCount(first.url)) === before.length, 10_000, 'first run observes');
    expect(await first.process.stop('SIGTERM')).toBe(0);

    const second = await exporter(f.database.url);
    await afterPolls(second.url, 3);
    expect(await observedCount(second.url)).toBe(0);
    const after = f.counting.slice(10, 14);
    await connectNow(f.db, after);
    await waitFor(async () => (await observedCount(second.url)) === after.length, 10_000, 'second run observes new ones');
    expect(await second.process.stop('SIGTERM')).toBe(0);

    const third = await exporter(f.database.url, ['--backfill', 'all']);
    await afterPolls(third.url, 3);
    expect(await observedCount(third.url)).toBe(before.length + after.length);
  });
});

describe('replicas', () => {
  it('exactly one of two exporters observes; after kill -9 of the leader the other takes over within two intervals and re-counts at most the last interval', async () => {
    const f = await fixture({ workspaces: 60 });
    const a = await exporter(f.database.url);
    await afterPolls(a.url, 1);
    const b = await exporter(f.database.url);
    const polled = async (url: string) => /agentconn_polls_total\{/.test(await scrape(url));
    await waitFor(async () => (await polled(a.url)) && (await polled(b.url)), 10_000, 'both polling');
    await waitFor(async () => (await leaderGauge(a.url)) + (await leaderGauge(b.url)) === 1, 10_000, 'exactly one leader');
    const [leader, follower] = (await leaderGauge(a.url)) === 1 ? [a, b] : [b, a];
    expect(await leaderGauge(follower.url)).toBe(0);

    const wave1 = f.counting.slice(0, 12);
    await connectNow(f.db, wave1);
    await waitFor(async () => (await observedCount(leader.url)) === wave1.length, 10_000, 'leader observes wave 1');
    await new Promise((r) => setTimeout(r, 3.5 * INTERVAL_MS));
    expect(await observedCount(follower.url)).toBe(0);
    expect((await observedCount(leader.url)) + (await observedCount(follower.url))).toBe(wave1.length);

    // Wave 2 connects right before the leader dies: the one interval that may be counted twice.
    const wave2 = f.counting.slice(12, 15);
    await connectNow(f.db, wave2);
    await waitFor(async () => (await observedCount(leader.url)) === wave1.length + wave2.length, 10_000, 'leader observes wave 2');
    const leaderFinal = await observedCount(leader.url);
    const killedAt = Date.now();
    leader.process.child.kill('SIGKILL');
    await leader.process.exited;

    await waitFor(async () => (await leaderGauge(follower.url)) === 1, 2 * INTERVAL_MS + 1500, 'takeover');
    expect(Date.now() - killedAt).toBeLessThanOrEqual(2 * INTERVAL_MS + 1500);
    const wave3 = f.counting.slice(15, 20);
    await connectNow(f.db, wave3);
    await waitFor(async () => (await observedCount(follower.url)) >= wave3.length, 10_000, 'new leader observes wave 3');
    await afterPolls(follower.url, 2);
    const recounted = (await observedCount(follower.url)) - wave3.length;
    // The documented bound: only connections of the last interval before the takeover (wave 2) can be counted twice.
    expect(recounted).toBeGreaterThanOrEqual(0);
    expect(recounted).toBeLessThanOrEqual(wave2.length);
    expect(leaderFinal + (await observedCount(follower.url)) - recounted).toBe(wave1.length + wave2.length + wave3.length);
  }, 60_000);
});

describe('outages', () => {
  it('backend killed and database unreachable for several ticks: /metrics answers every scrape, one error line, nothing lost or double-counted', async () => {
    const f = await fixture();
    const target = new URL(BASE_DATABASE_URL);
    const proxy: TcpProxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    cleanups.push(() => proxy.close());
    const viaProxy = new URL(f.database.url);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const { process: exp, url } = await exporter(viaProxy.toString());
    await afterPolls(url, 1);
    const before = f.counting.slice(0, 5);
    await connectNow(f.db, before);
    await waitFor(async () => (await observedCount(url)) === before.length, 10_000, 'before outage');

    // Kill the exporter's sessions, then cut it off.
    const admin = new pg.Client({ connectionString: f.database.url });
    await admin.connect();
    cleanups.push(() => admin.end());
    const killed = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'agentconn-%'`,
    );
    expect(killed.rowCount).toBeGreaterThanOrEqual(1);
    await proxy.block();
    const during = f.counting.slice(5, 13);
    const outageStart = Date.now();
    let scrapes = 0;
    while (Date.now() - outageStart < 5 * INTERVAL_MS) {
      const response = await fetch(url);
      expect(response.status).toBe(200);
      await response.text();
      scrapes++;
      if (scrapes === 3) await connectNow(f.db, during);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await observedCount(url)).toBe(before.length);
    await proxy.unblock();
    await waitFor(async () => (await observedCount(url)) === before.length + during.length, 20_000, 'recovery');
    await afterPolls(url, 3);
    expect(await observedCount(url)).toBe(before.length + during.length);
    const errors = exp.logs.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(exp.logs.filter((l) => l.msg === 'agent source recovered')).toHaveLength(1);
    const text = await scrape(url);
    expect(text).toMatch(/agentconn_polls_total\{[^}]*outcome="error"[^}]*\} [1-9]/);
  }, 60_000);
});

describe('least privilege', () => {
  it('works with a role that may only SELECT the columns it reads; without a grant the error names the table', async () => {
    const f = await fixture();
    const role = `agentconn_ro_${f.database.name.slice(-6)}`;
    const admin = new pg.Client({ connectionString: f.database.url });
    await admin.connect();
    cleanups.push(async () => {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await admin.end();
    });
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'Ro-Secret-1'`);
    await admin.query(`GRANT CONNECT ON DATABASE ${f.database.name} TO ${role}`);
    await admin.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
    await admin.query(`GRANT SELECT (id, created_at, name, first_connected_at, resource_id, deleted) ON workspace_agents TO ${role}`);
    await admin.query(`GRANT SELECT (id, job_id) ON workspace_resources TO ${role}`);
    await admin.query(`GRANT SELECT (workspace_id, template_version_id, build_number, job_id) ON workspace_builds TO ${role}`);
    await admin.query(`GRANT SELECT (id, owner_id, template_id, deleted, name) ON workspaces TO ${role}`);
    await admin.query(`GRANT SELECT (id, name) ON templates TO ${role}`);
    await admin.query(`GRANT SELECT (id, name) ON template_versions TO ${role}`);
    await admin.query(`GRANT SELECT (id, username) ON users TO ${role}`);
    const asRole = new URL(f.database.url);
    asRole.username = role;
    asRole.password = 'Ro-Secret-1';

    const ok = await exporter(asRole.toString());
    await afterPolls(ok.url, 1);
    await connectNow(f.db, f.counting.slice(0, 4));
    await waitFor(async () => (await observedCount(ok.url)) === 4, 10_000, 'observed as the read-only role');
    expect(ok.process.logs.filter((l) => l.level === 'error')).toHaveLength(0);
    expect(await ok.process.stop('SIGTERM')).toBe(0);

    await admin.query(`REVOKE SELECT ON users FROM ${role}`);
    await admin.query(`REVOKE SELECT (id, username) ON users FROM ${role}`);
    const denied = await exporter(asRole.toString());
    const failure = await denied.process.waitForLog((l) => l.level === 'error');
    expect(String(failure['error'])).toMatch(/permission denied for table users/);
    expect(denied.process.stderr()).not.toContain('Ro-Secret-1');
  });
});
