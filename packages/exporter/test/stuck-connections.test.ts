/** A pooled connection that goes silent mid-query (no FIN) is ended after its poll was aborted. */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '@agentconn/core';
import { watchStuckConnections } from '../src/stuck-connections.js';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { startTcpProxy } from '@agentconn/test-support/tcp-proxy';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function frozenPool() {
  const target = new URL(BASE_DATABASE_URL);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  cleanups.push(() => proxy.close());
  const url = new URL(BASE_DATABASE_URL);
  url.host = `127.0.0.1:${proxy.port}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  pool.on('error', () => undefined);
  cleanups.push(() => pool.end());
  const watch = watchStuckConnections(pool, quiet);
  const client = await pool.connect();
  await client.query('SELECT 1');
  const query = client.query('SELECT pg_sleep(0.3)').then(
    () => 'answered',
    () => 'ended',
  );
  proxy.freeze();
  return { pool, watch, client, query };
}

describe('watchStuckConnections', () => {
  it('ends a connection still checked out 2 s after the abort, freeing its pool slot', async () => {
    const { pool, watch, client, query } = await frozenPool();
    watch.endStuckAfterAbort();
    await new Promise((r) => setTimeout(r, 1000));
    expect(pool.totalCount).toBe(1);
    expect(await query).toBe('ended');
    client.release();
    expect(pool.totalCount).toBe(0);
  });

  it('drained() waits for checked-out clients at most the given time, then ends them', async () => {
    const { pool, watch, client, query } = await frozenPool();
    const started = Date.now();
    await watch.drained(500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(await query).toBe('ended');
    client.release();
    expect(pool.totalCount).toBe(0);
  });
});
