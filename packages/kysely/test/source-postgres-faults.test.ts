/** Faults only a real server can show: other sessions holding locks, cancellation, a closed port. */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { FirstConnectionPoller } from '@agentconn/core';
import { createCoderAgentSource } from '../src/index.js';
import { createPostgresDb } from '../src/postgres.js';
import { openPostgresTestDatabase, type TestDatabase } from './helpers/databases.js';
import { CoderFixture } from './helpers/fixtures.js';
import { PrometheusHarness } from './helpers/prometheus.js';

const never = new AbortController().signal;

/** The rejection reason, or 'resolved': never an unhandled rejection when an assertion fails first. */
function settle(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => 'resolved',
    (error: unknown) => error,
  );
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('Coder agent source on a PostgreSQL server: faults', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await openPostgresTestDatabase();
    const { resourceId } = await new CoderFixture(database.db).workspaceWithBuild();
    await new CoderFixture(database.db).agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:01Z' });
  });
  afterAll(async () => {
    await database?.destroy();
  });

  /** Runs `body` while another session holds an exclusive lock on workspace_agents, so the agents query waits. */
  async function whileLocked(body: () => Promise<void>): Promise<void> {
    const trx = await database.db.startTransaction().execute();
    try {
      await sql`LOCK TABLE workspace_agents IN ACCESS EXCLUSIVE MODE`.execute(trx);
      await body();
    } finally {
      await trx.rollback().execute();
    }
  }

  async function waitingAgentQueries(): Promise<number> {
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND application_name = current_setting('application_name')
        AND state = 'active' AND query LIKE 'select "wa"."id" as "agent_id"%'`.execute(database.db);
    return rows[0]!.n;
  }

  /** Polls `waitingAgentQueries` for up to 2 s until `done` holds; returns the last count. */
  async function waitForWaitingAgentQueries(done: (n: number) => boolean): Promise<number> {
    let n = await waitingAgentQueries();
    for (let i = 0; i < 100 && !done(n); i++) {
      await new Promise((r) => setTimeout(r, 20));
      n = await waitingAgentQueries();
    }
    return n;
  }

  it('applies the statement timeout: a query stuck behind a lock is cancelled by the server', async () => {
    const source = createCoderAgentSource(database.db, { statementTimeoutMs: 300 });
    await whileLocked(async () => {
      const started = performance.now();
      await expect(source.listAgents({ signal: never })).rejects.toThrow(
        'listing agents from the Coder database failed: canceling statement due to statement timeout',
      );
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(5_000);
    });
  });

  it('rejects at once on abort and cancels the running query on the server', async () => {
    const source = createCoderAgentSource(database.db, { statementTimeoutMs: 0 });
    await whileLocked(async () => {
      const controller = new AbortController();
      const pending = settle(source.listAgents({ signal: controller.signal }));
      // Wait until the query is on the server, waiting for the lock.
      expect(await waitForWaitingAgentQueries((n) => n > 0)).toBe(1);

      const aborted = performance.now();
      controller.abort(new Error('poll timed out after 200 ms'));
      expect(String(await pending)).toBe('CoderDatabaseError: listing agents from the Coder database failed: poll timed out after 200 ms');
      expect(performance.now() - aborted).toBeLessThan(100);

      // The lock is still held: only a cancel can have ended the query.
      expect(await waitForWaitingAgentQueries((n) => n === 0)).toBe(0);
    });
    // The pool is healthy afterwards.
    await expect(source.listAgents({ signal: never })).resolves.toHaveProperty('agents');
  });

  it('without cancelOnAbort still rejects at once, and the query runs on until its statement timeout', async () => {
    const source = createCoderAgentSource(database.db, { statementTimeoutMs: 1_500, cancelOnAbort: false });
    await whileLocked(async () => {
      const controller = new AbortController();
      const pending = settle(source.listAgents({ signal: controller.signal }));
      expect(await waitForWaitingAgentQueries((n) => n > 0)).toBe(1);
      const aborted = performance.now();
      controller.abort(new Error('stop'));
      expect(String(await pending)).toBe('CoderDatabaseError: listing agents from the Coder database failed: stop');
      expect(performance.now() - aborted).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 300));
      expect(await waitingAgentQueries()).toBe(1);
    });
  });

  it('names a missing workspace_agents table', async () => {
    const broken = await openPostgresTestDatabase();
    try {
      await sql`DROP TABLE workspace_agents CASCADE`.execute(broken.db); // CASCADE: the agent scripts reference it
      await expect(createCoderAgentSource(broken.db).listAgents({ signal: never })).rejects.toThrow(
        'listing agents from the Coder database failed: relation "workspace_agents" does not exist',
      );
    } finally {
      await broken.destroy();
    }
  });

  it('fails a poll tick with a clear error on an unreachable database, without the password and without crashing', async () => {
    const port = await closedPort();
    const password = 's3cret-Pa55';
    const db = createPostgresDb(`postgres://agentconn:${password}@127.0.0.1:${port}/coder`);
    const harness = new PrometheusHarness();
    try {
      const poller = new FirstConnectionPoller({
        source: createCoderAgentSource(db),
        recorder: harness.recorder,
        meterProvider: harness.meterProvider,
        logger: harness.logger,
      });
      const first = await poller.tick();
      expect(first.outcome).toBe('error');
      expect(first.error?.message).toBe(`listing agents from the Coder database failed: connect ECONNREFUSED 127.0.0.1:${port}`);
      const second = await poller.tick();
      expect(second.outcome).toBe('error');
      // One error line per outage, not per tick.
      expect(harness.logger.records.filter((l) => l.level === 'error')).toHaveLength(1);
      expect(JSON.stringify(harness.logger.records)).not.toContain(password);
      expect(String(first.error?.stack)).not.toContain(password);
    } finally {
      await db.destroy();
      await harness.meterProvider.shutdown();
    }
  });
});
