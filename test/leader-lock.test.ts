/** AdvisoryLockLeadership on the real PostgreSQL server, with a test-owned proxy that freezes connections. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LogFields, Logger } from '@agentconn/core';
import { AdvisoryLockLeadership } from '../packages/exporter/src/leader-lock.js';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { startTcpProxy, type TcpProxy } from '@agentconn/test-support/tcp-proxy';

const never = new AbortController().signal;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

function memoryLogger(): Logger & { lines: Array<{ level: string; message: string; fields: LogFields }> } {
  const lines: Array<{ level: string; message: string; fields: LogFields }> = [];
  const at = (level: string) => (message: string, fields: LogFields = {}) => void lines.push({ level, message, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

let database: TestDatabase;
let admin: pg.Client;
/** A role that may only connect (no table grant at all): the lock, its holder and its progress still work. */
const role = `agentconn_lock_${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  database = await createTestDatabase('agentconn_lock');
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  await admin.query(`CREATE ROLE ${role} LOGIN`);
  await admin.query(`GRANT CONNECT ON DATABASE ${database.name} TO ${role}`);
});
afterAll(async () => {
  await admin?.end();
  await database?.drop();
  const base = new pg.Client({ connectionString: database.url.replace(/\/[^/]*$/, '/postgres') });
  await base.connect();
  await base.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  await base.end();
});

function url(options: { asRole?: boolean; via?: TcpProxy } = {}): string {
  const u = new URL(database.url);
  if (options.asRole) u.username = role;
  if (options.via) u.host = `127.0.0.1:${options.via.port}`;
  return u.toString();
}

async function proxy(): Promise<TcpProxy> {
  const target = new URL(database.url);
  const p = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  cleanups.push(() => p.close());
  return p;
}

function leadership(connectionString: string, logger = memoryLogger()): AdvisoryLockLeadership {
  const l = new AdvisoryLockLeadership({ connectionString, logger, lockKey: String(BigInt.asIntN(64, BigInt(`0x${randomBytes(8).toString('hex')}`))), queryTimeoutMs: 500 });
  cleanups.push(() => l.release());
  return l;
}

/** Two leaderships on one key. */
function pair(a: string, b: string): [AdvisoryLockLeadership, AdvisoryLockLeadership] {
  const key = String(BigInt.asIntN(64, BigInt(`0x${randomBytes(8).toString('hex')}`)));
  const make = (connectionString: string) => {
    const l = new AdvisoryLockLeadership({ connectionString, logger: memoryLogger(), lockKey: key, queryTimeoutMs: 500 });
    cleanups.push(() => l.release());
    return l;
  };
  return [make(a), make(b)];
}

async function holderPid(instance: string): Promise<number> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
      WHERE a.application_name LIKE $1`,
    [`agentconn-leader ${instance}%`],
  );
  if (rows[0] === undefined) throw new Error(`no lock session of ${instance}`);
  return rows[0].pid;
}

describe('AdvisoryLockLeadership', () => {
  it('its own stale session (connection silent, no FIN) is ended and the lock taken again, as the SELECT-only role (issue figures: 20 counted of 290)', async () => {
    const p = await proxy();
    const lock = leadership(url({ asRole: true, via: p }));
    expect(await lock.isLeader(never)).toBe(true);
    const stalePid = await holderPid(lock.instance);
    p.freeze();
    const started = Date.now();
    expect(await lock.isLeader(never)).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(lock.takeover()).toEqual({ kind: 'continue' });
    const { rows } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [stalePid]);
    expect(rows).toHaveLength(0);
    expect(await holderPid(lock.instance)).not.toBe(stalePid);
  });

  // Mutant from the HA attack: answering "leader" after the held session's check failed while another took the lock.
  it('a leader whose session check fails while another replica took the lock is not leader', async () => {
    const p = await proxy();
    const [a, b] = pair(url({ via: p }), url());
    expect(await a.isLeader(never)).toBe(true);
    expect(await b.isLeader(never)).toBe(false);
    p.blackhole();
    // PostgreSQL ends A's session (as TCP keepalive would); A does not hear of it.
    await admin.query('SELECT pg_terminate_backend($1, 5000)', [await holderPid(a.instance)]);
    expect(await b.isLeader(never)).toBe(true);
    await expect(a.isLeader(never)).rejects.toThrow(/leader lock/);
    expect(a.held).toBe(false);
    p.heal();
    expect(await a.isLeader(never)).toBe(false);
    expect(await b.isLeader(never)).toBe(true);
  });

  it('a follower of another role reads the leader\'s published progress and resumes from it when the leader is gone', async () => {
    const [a, b] = pair(url(), url({ asRole: true }));
    expect(await a.isLeader(never)).toBe(true);
    await a.publishProgress(Date.parse('2026-11-25T12:05:00.123Z'), never);
    expect(await b.isLeader(never)).toBe(false);
    await a.publishProgress(Date.parse('2026-11-25T12:06:00.456Z'), never);
    expect(await b.isLeader(never)).toBe(false);
    // A is gone without publishing again; B keeps the last value it read.
    await admin.query('SELECT pg_terminate_backend($1, 5000)', [await holderPid(a.instance)]);
    expect(await b.isLeader(never)).toBe(true);
    expect(b.takeover()).toEqual({ kind: 'resume', fromMs: Date.parse('2026-11-25T12:06:00.456Z') });
    // A, back as a follower, learns B's progress in turn.
    await b.publishProgress(Date.parse('2026-11-25T12:07:00Z'), never);
    expect(await a.isLeader(never)).toBe(false);
  });

  it('publishing fails once the session no longer holds the lock; released leadership reads as not held', async () => {
    const logger = memoryLogger();
    const lock = leadership(url(), logger);
    expect(await lock.isLeader(never)).toBe(true);
    expect(lock.held).toBe(true);
    await admin.query('SELECT pg_terminate_backend($1, 5000)', [await holderPid(lock.instance)]);
    // The session's end reaches the client: 'leadership released', and held (the leader gauge) follows at once.
    await vi.waitFor(() => expect(lock.held).toBe(false), { timeout: 3000 });
    expect(logger.lines.some((l) => l.message === 'leader lock connection lost; leadership released')).toBe(true);
    await expect(lock.publishProgress(Date.now(), never)).rejects.toThrow(/leader lock lost/);
    expect(lock.held).toBe(false);
    expect(await lock.isLeader(never)).toBe(true);
    await lock.release();
    expect(lock.held).toBe(false);
  });
});
