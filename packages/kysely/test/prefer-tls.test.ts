/**
 * libpq's `sslmode=prefer` (and no `sslmode`, which means it) on real connections: TLS when the server offers
 * it, else unencrypted on the same connection; `require` never goes on unencrypted. The server at
 * DATABASE_URL runs without TLS; loopback endpoints of this file's own answer the TLS request as a server could.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pg from 'pg';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { createPostgresDb, postgresTlsConfig } from '../src/postgres.js';

const withParams = (params: string): string => `${BASE_DATABASE_URL}${BASE_DATABASE_URL.includes('?') ? '&' : '?'}${params}`;

/** Whether the session that runs the query is encrypted, as the server sees it. */
async function encrypted(url: string): Promise<boolean> {
  const db = createPostgresDb(url);
  try {
    const { rows } = await sql<{ ssl: boolean }>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(db);
    return rows[0]?.ssl ?? false;
  } finally {
    await db.destroy();
  }
}

/** The error a connection made with `url`'s settings fails with, or 'connected'. */
async function connectError(url: string): Promise<unknown> {
  const tls = postgresTlsConfig(url, { env: {} });
  const client = new pg.Client({ connectionString: tls.connectionString, ssl: tls.ssl, ...(tls.stream !== undefined && { stream: tls.stream }), connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return 'connected';
  } catch (error) {
    return error;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

interface Endpoint {
  readonly port: number;
  /** Per connection, in order: the bytes it sent after its first 8 (the TLS request, or a startup's start). */
  readonly connections: Array<{ first: Buffer; after: Buffer }>;
}

/**
 * A loopback endpoint that answers a connection's TLS request with `reply` (and then ends it when `thenEnd`),
 * and records what every connection sends.
 */
async function answering(reply: Buffer, thenEnd = false): Promise<Endpoint> {
  const connections: Array<{ first: Buffer; after: Buffer }> = [];
  const server = createServer((socket: Socket) => {
    const seen = { first: Buffer.alloc(0), after: Buffer.alloc(0) };
    connections.push(seen);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (seen.first.length === 8) {
        seen.after = Buffer.concat([seen.after, chunk]);
        return;
      }
      const all = Buffer.concat([seen.first, chunk]);
      seen.first = all.subarray(0, 8);
      seen.after = all.subarray(8);
      if (seen.first.length === 8 && seen.first.equals(SSL_REQUEST)) {
        if (thenEnd) socket.end(reply);
        else socket.write(reply);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, connections };
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
/** Protocol 3.0, the second word of a startup message. */
const PROTOCOL_3 = 196608;

async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition() && waited < 3000; waited += 20) await new Promise((r) => setTimeout(r, 20));
}


describe('sslmode=prefer as libpq means it', () => {
  it('against a server without TLS: connects unencrypted (pool, and a client of its own)', async () => {
    expect(await encrypted(withParams('sslmode=prefer'))).toBe(false);
    expect(await connectError(withParams('sslmode=prefer'))).toBe('connected');
  });

  it('no sslmode means prefer, as in libpq', async () => {
    expect(postgresTlsConfig(BASE_DATABASE_URL, { env: {} }).sslmode).toBe('prefer');
    expect(await encrypted(BASE_DATABASE_URL)).toBe(false);
  });

  it('require never goes on unencrypted', async () => {
    const error = await connectError(withParams('sslmode=require'));
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('The server does not support SSL connections');
  });

  it('sends its startup on the same connection after N, and nothing after any other answer', async () => {
    const refusing = await answering(Buffer.from('N'));
    void connectError(`postgres://someone@127.0.0.1:${refusing.port}/db?sslmode=prefer&connect_timeout=2`);
    await until(() => (refusing.connections[0]?.after.length ?? 0) > 0);
    expect(refusing.connections).toHaveLength(1);
    expect(refusing.connections[0]?.first).toEqual(SSL_REQUEST);
    const startup = refusing.connections[0]?.after ?? Buffer.alloc(0);
    expect(startup.readInt32BE(4)).toBe(PROTOCOL_3);
    expect(startup.includes(Buffer.from('user\0someone\0'))).toBe(true);

    const odd = await answering(Buffer.from('E'));
    const error = await connectError(`postgres://someone@127.0.0.1:${odd.port}/db?sslmode=prefer`);
    expect((error as Error).message).toMatch(/answered the request for TLS with neither S nor N/);
    expect(odd.connections.map((c) => c.after.length)).toEqual([0]);
  });

  it('refuses bytes sent with the N (they would be read as if from the server, unencrypted)', async () => {
    const injecting = await answering(Buffer.from('NR\0\0\0\x08\0\0\0\0'));
    const error = await connectError(`postgres://someone@127.0.0.1:${injecting.port}/db?sslmode=prefer`);
    expect((error as Error).message).toMatch(/sent more than its one-byte answer to the request for TLS/);
    expect(injecting.connections.map((c) => c.after.length)).toEqual([0]);
  });

  it('a TLS handshake that fails is tried again without TLS on a new connection; require does not', async () => {
    const broken = await answering(Buffer.from('S'), true);
    void connectError(`postgres://someone@127.0.0.1:${broken.port}/db?sslmode=prefer&connect_timeout=2`);
    await until(() => broken.connections.length === 2 && broken.connections[1]?.first.length === 8);
    expect(broken.connections[0]?.first).toEqual(SSL_REQUEST);
    expect(broken.connections[1]?.first.readInt32BE(4)).toBe(PROTOCOL_3);

    const strict = await answering(Buffer.from('S'), true);
    const error = await connectError(`postgres://someone@127.0.0.1:${strict.port}/db?sslmode=require`);
    expect(error).toBeInstanceOf(Error);
    expect(strict.connections).toHaveLength(1);
  });

  it('a Unix socket is never asked for TLS, as libpq does not', async () => {
    const local = new URL(BASE_DATABASE_URL);
    const url = `postgres://${local.username}@/${local.pathname.slice(1)}?host=/var/run/postgresql&port=${local.port || 5432}&sslmode=prefer`;
    expect(await encrypted(url)).toBe(false);
  });
});
