import pg from 'pg';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { connectNow, createCoderFixture, observedCount, scrape, waitFor, type CoderFixture, afterPolls } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { startTcpProxy, type TcpProxy } from '@agentconn/test-support/tcp-proxy';
import { startPgBouncer } from './helpers/pgbouncer.js';

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
    await admin.query(`GRANT SELECT (id, created_at, name, first_connected_at, resource_id, deleted, connection_timeout_seconds) ON workspace_agents TO ${role}`);
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
    // The preflight names the table and the grant that fixes it (the driver said "permission denied for table users").
    expect(String(failure['error'])).toContain('users: permission denied');
    expect(String(failure['error'])).toContain(`GRANT SELECT (id, username) ON users TO ${role};`);
    expect(denied.process.stderr()).not.toContain('Ro-Secret-1');
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function proxyTo(databaseUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
  const target = new URL(databaseUrl);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  cleanups.push(() => proxy.close());
  const via = new URL(databaseUrl);
  via.host = `127.0.0.1:${proxy.port}`;
  return { proxy, url: via.toString() };
}

/** Scrapes every replica's agentconn_leader until stopped; counts scrapes where more than one said 1. */
function watchLeaders(urls: string[]): { stop(): Promise<{ scrapes: number; twoLeaders: number }> } {
  let running = true;
  let scrapes = 0;
  let twoLeaders = 0;
  const loop = (async () => {
    while (running) {
      const gauges = await Promise.all(urls.map((u) => leaderGauge(u).catch(() => 0)));
      scrapes++;
      if (gauges.filter((g) => g === 1).length > 1) twoLeaders++;
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { scrapes, twoLeaders };
    },
  };
}

async function terminateLockHolder(databaseUrl: string): Promise<number> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    for (const { pid } of rows) await admin.query('SELECT pg_terminate_backend($1, 5000)', [pid]);
    return rows.length;
  } finally {
    await admin.end();
  }
}

describe('silent connections (no FIN, as behind a dead NAT)', () => {
  it('a single exporter whose open connections freeze keeps observing within two intervals; every connection counted once (issue figures: 20 counted of 290)', async () => {
    const f = await fixture({ workspaces: 60 });
    const { proxy, url: viaProxy } = await proxyTo(f.database.url);
    const intervalMs = 2000;
    const { process: exp, url } = await exporter(viaProxy, ['--interval', `${intervalMs}ms`]);
    const before = f.counting.slice(0, 5);
    await afterPolls(url, 1);
    await connectNow(f.db, before);
    await waitFor(async () => (await observedCount(url)) === before.length, 10_000, 'before the freeze');

    await afterPolls(url, 1);
    proxy.freeze();
    const frozenAt = Date.now();
    const during = f.counting.slice(5, 25);
    await connectNow(f.db, during);
    await waitFor(async () => (await observedCount(url)) === before.length + during.length, 2 * intervalMs + 500, 'observing again within two intervals');
    expect(Date.now() - frozenAt).toBeLessThanOrEqual(2 * intervalMs + 500);

    const later = f.counting.slice(25, 35);
    await connectNow(f.db, later);
    await waitFor(async () => (await observedCount(url)) === before.length + during.length + later.length, 10_000, 'later connections');
    proxy.heal();
    await afterPolls(url, 3);
    expect(await observedCount(url)).toBe(before.length + during.length + later.length);
    expect(exp.logs.filter((l) => l.msg === 'another process is leader; not observing')).toHaveLength(0);
    expect(exp.logs.some((l) => l.msg === "ending this process's stale leader lock session")).toBe(true);
  }, 60_000);

  it('two replicas, the leader black-holed and its session ended by PostgreSQL: the sum equals the SQL truth, never two leaders at once (issue figures: 560 of 650)', async () => {
    const f = await fixture({ workspaces: 80 });
    const { proxy, url: viaProxy } = await proxyTo(f.database.url);
    const a = await exporter(viaProxy);
    await waitFor(async () => (await leaderGauge(a.url)) === 1, 10_000, 'A leads');
    const b = await exporter(f.database.url);
    await waitFor(async () => /agentconn_polls_total\{[^}]*skipped_not_leader[^}]*\} [1-9]/.test(await scrape(b.url)), 10_000, 'B follows');
    const watch = watchLeaders([a.url, b.url]);

    const wave1 = f.counting.slice(0, 10);
    await connectNow(f.db, wave1);
    await waitFor(async () => (await observedCount(a.url)) === wave1.length, 10_000, 'A observes wave 1');
    await afterPolls(a.url, 1);

    proxy.blackhole();
    // Connected while A is cut off but still holds the lock: nobody may observe them yet, nobody may lose them.
    const wave2 = f.counting.slice(10, 25);
    await connectNow(f.db, wave2);
    await sleep(3 * INTERVAL_MS);
    expect(await leaderGauge(a.url)).toBe(0);
    expect(await observedCount(b.url)).toBe(0);
    // PostgreSQL ends A's session (as its TCP keepalive would, later).
    expect(await terminateLockHolder(f.database.url)).toBe(1);
    const wave3 = f.counting.slice(25, 35);
    await connectNow(f.db, wave3);
    await waitFor(async () => (await observedCount(b.url)) === wave2.length + wave3.length, 10_000, 'B took over from A\'s last published poll');

    proxy.heal();
    const wave4 = f.counting.slice(35, 40);
    await connectNow(f.db, wave4);
    const truth = wave1.length + wave2.length + wave3.length + wave4.length;
    await waitFor(async () => (await observedCount(a.url)) + (await observedCount(b.url)) === truth, 20_000, 'all counted');
    await afterPolls(b.url, 3);
    await waitFor(async () => /skipped_not_leader[^}]*\} [1-9]/.test(await scrape(a.url)), 20_000, 'A follows after healing');
    await afterPolls(b.url, 2);
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM workspace_agents
      WHERE first_connected_at IS NOT NULL AND id = ANY(${f.counting.map((x) => x.id)}::uuid[])`.execute(f.db);
    expect(Number(rows[0]?.n)).toBe(truth);
    expect((await observedCount(a.url)) + (await observedCount(b.url))).toBe(truth);
    const leaders = await watch.stop();
    expect(leaders.scrapes).toBeGreaterThan(20);
    expect(leaders.twoLeaders).toBe(0);
  }, 90_000);
});

describe('a transaction pooler between the replicas and the server', () => {
  async function threeReplicas(databaseUrl: string, extra: string[] = []) {
    return Promise.all([exporter(databaseUrl, extra), exporter(databaseUrl, extra), exporter(databaseUrl, extra)]);
  }

  it('PgBouncer pool_mode = transaction: never more than one replica observes; with --leader-database-url direct, one leader and the exact count (issue figures: 82 samples for 41 agents)', async () => {
    const f = await fixture({ workspaces: 60 });
    const bouncer = await startPgBouncer(BASE_DATABASE_URL, 'transaction');
    cleanups.push(() => bouncer.stop());
    const pooled = bouncer.via(f.database.url);

    const replicas = await threeReplicas(pooled);
    const urls = replicas.map((r) => r.url);
    await Promise.all(urls.map((u) => afterPollsOrErrors(u, 2)));
    const watch = watchLeaders(urls);
    const agents = f.counting.slice(0, 41);
    expect(agents).toHaveLength(41);
    await connectNow(f.db, agents);
    await sleep(6 * INTERVAL_MS);
    const counts = await Promise.all(urls.map((u) => observedCount(u)));
    const refusals = replicas.filter((r) => r.process.logs.some((l) => l.level === 'error' && /persists between statements|session of its own|transaction-mode pooler/.test(String(l['error']))));
    const sum = counts.reduce((x, y) => x + y, 0);
    // Never double: either exactly the truth, or the replicas refused to lead with the clear error.
    expect(sum).toBeLessThanOrEqual(agents.length);
    if (sum !== agents.length) expect(refusals.length).toBeGreaterThan(0);
    expect(counts.filter((c) => c > 0).length).toBeLessThanOrEqual(1);
    expect((await watch.stop()).twoLeaders).toBe(0);
    for (const r of refusals) {
      const lines = r.process.logs.filter((l) => l.level === 'error');
      expect(lines).toHaveLength(1);
      expect(String(lines[0]?.['error'])).toMatch(/--leader-database-url/);
    }
    await Promise.all(replicas.map((r) => r.process.stop('SIGTERM')));

    // The lock on a direct connection, the polls through the pooler.
    const g = await fixture({ workspaces: 60, seed: 7 });
    const direct = await threeReplicas(bouncer.via(g.database.url), ['--leader-database-url', g.database.url]);
    const directUrls = direct.map((r) => r.url);
    await Promise.all(directUrls.map((u) => afterPollsOrErrors(u, 2)));
    const watchDirect = watchLeaders(directUrls);
    const second = g.counting.slice(0, 41);
    await connectNow(g.db, second);
    await waitFor(async () => (await Promise.all(directUrls.map((u) => observedCount(u)))).reduce((x, y) => x + y, 0) >= second.length, 10_000, 'counted');
    await sleep(3 * INTERVAL_MS);
    const directCounts = await Promise.all(directUrls.map((u) => observedCount(u)));
    expect(directCounts.reduce((x, y) => x + y, 0)).toBe(second.length);
    expect((await Promise.all(directUrls.map((u) => leaderGauge(u)))).reduce((x, y) => x + y, 0)).toBe(1);
    expect((await watchDirect.stop()).twoLeaders).toBe(0);
    for (const r of direct) expect(r.process.logs.filter((l) => l.level === 'error')).toHaveLength(0);
  }, 120_000);
});

/** Waits for n more polls of any outcome (a replica that refuses to lead polls with errors). */
async function afterPollsOrErrors(url: string, n: number): Promise<void> {
  const total = async () => sumSamples(await scrape(url), 'agentconn_polls_total');
  const start = await total();
  await waitFor(async () => (await total()) >= start + n, 20_000, `${n} more polls`);
}

describe('stopping during a poll', () => {
  it('SIGTERM while the first poll waits on a lock exits promptly, cancels the query on the server and logs no error', async () => {
    const f = await fixture();
    const locker = new pg.Client({ connectionString: f.database.url });
    const watcher = new pg.Client({ connectionString: f.database.url });
    await locker.connect();
    await watcher.connect();
    cleanups.push(() => locker.end());
    cleanups.push(() => watcher.end());
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE workspace_agents IN ACCESS EXCLUSIVE MODE');
    const { process: exp } = await exporter(f.database.url);
    // Outside a transaction: pg_stat_activity is read afresh each time.
    const waiting = async () =>
      (
        await watcher.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'agentconn-exporter' AND wait_event_type = 'Lock'`,
        )
      ).rows[0]?.n;
    await waitFor(async () => (await waiting()) === 1, 10_000, 'the first poll waits on the lock');
    const signalled = Date.now();
    expect(await exp.stop('SIGTERM')).toBe(0);
    // Well before the 30 s statement timeout: the cancel reached the server before the pool closed.
    expect(Date.now() - signalled).toBeLessThan(5000);
    expect(await waiting()).toBe(0);
    expect(exp.logs.filter((l) => l.level === 'error')).toEqual([]);
    await locker.query('ROLLBACK');
  }, 60_000);
});
