/**
 * The exporter against a server set up as operators set theirs up: password authentication and TLS
 * with a private CA, and against the plain server at DATABASE_URL (no TLS). `sslmode` means what it
 * means to libpq, errors name the URL parameter to set, and stderr holds JSON lines only (no driver text).
 */
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { EXPORTER_CLI, nonJsonLines, spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { createSecureCluster, type SecureCluster } from './helpers/secure-cluster.js';

const PASSWORD = 'Reader-Pw-7';
let cluster: SecureCluster;
/** A Coder database on the server at DATABASE_URL, which has no TLS. */
let plain: TestDatabase;

beforeAll(async () => {
  plain = await createTestDatabase('agentconn_tls');
  const plainDb = createPostgresDb(plain.url);
  try {
    await migrateToLatest(plainDb);
  } finally {
    await plainDb.destroy();
  }
  cluster = await createSecureCluster([55400, 55449]);
  await cluster.sql(`CREATE ROLE reader LOGIN PASSWORD '${PASSWORD}'`);
  await cluster.sql('CREATE DATABASE coder');
  const admin = createPostgresDb({ host: '/var/run/postgresql', port: cluster.port, user: 'postgres', database: 'coder' });
  try {
    await migrateToLatest(admin);
  } finally {
    await admin.destroy();
  }
  await cluster.sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader', 'coder');
}, 120_000);
afterAll(async () => {
  await cluster?.drop();
  await plain?.drop();
});

async function readyz(url: string): Promise<{ code: number; body: string }> {
  const response = await fetch(url.replace('/metrics', '/readyz'));
  return { code: response.status, body: await response.text() };
}

/** Runs the exporter on `url` until `until` (asked with its /readyz every 200 ms) gives a result; returns both. */
async function runExporterUntil<T>(
  url: string,
  until: (ready: { code: number; body: string }) => Promise<T | undefined> | T | undefined,
): Promise<{ exporter: ExporterProcess; result: T }> {
  const port = await freePort();
  const exporter = spawnExporter(['--database-url', url, '--listen', `127.0.0.1:${port}`, '--interval', '1s']);
  try {
    const metricsUrl = await exporter.started;
    const end = Date.now() + 20_000;
    for (;;) {
      const ready = await readyz(metricsUrl);
      const result = await until(ready);
      if (result !== undefined) return { exporter, result };
      if (Date.now() > end) throw new Error(`/readyz never satisfied the test: ${ready.code} ${ready.body}\n${exporter.stderr()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await exporter.stop();
    exporter.child.kill('SIGKILL');
  }
}

/** Runs the exporter on `params` until `done` holds of its /readyz, and returns what it logged. */
async function withExporter(
  params: Record<string, string>,
  done: (ready: { code: number; body: string }) => boolean,
  options: { password?: string; host?: string } = {},
): Promise<{ exporter: ExporterProcess; ready: { code: number; body: string } }> {
  const url = cluster.url({ user: 'reader', password: options.password ?? PASSWORD, database: 'coder', params, ...(options.host !== undefined && { host: options.host }) });
  const { exporter, result } = await runExporterUntil(url, (ready) => (done(ready) ? ready : undefined));
  return { exporter, ready: result };
}

describe('TLS and passwords as an operator configures them', () => {
  it('sslmode=require against a server whose certificate a private CA signed: encrypts without verifying, and polls', async () => {
    const { exporter, ready } = await withExporter({ sslmode: 'require' }, (r) => r.code === 200);
    expect(ready.body).toMatch(/^ready: last successful poll/);
    expect(exporter.stderr()).not.toMatch(/SECURITY WARNING|certificate/i);
    expect(nonJsonLines(exporter.stderr())).toEqual([]);
  });

  it('sslmode=verify-full without sslrootcert fails naming sslrootcert, in the log and on /readyz', async () => {
    const { exporter, ready } = await withExporter({ sslmode: 'verify-full' }, (r) => /sslrootcert/.test(r.body));
    expect(ready.code).toBe(503);
    expect(ready.body).toMatch(/add sslrootcert=PATH/);
    const failure = exporter.logs.find((l) => l.level === 'error');
    expect(String(failure?.['error'])).toMatch(/sslmode=verify-full verifies the server's certificate, which needs the CA that signed it: add sslrootcert=PATH/);
    expect(exporter.stderr()).not.toContain('--use-system-ca');
    expect(nonJsonLines(exporter.stderr())).toEqual([]);
  });

  it('verify-full with another CA as sslrootcert names sslrootcert; with the right CA and a host the certificate holds it polls', async () => {
    const wrong = await withExporter({ sslmode: 'verify-full', sslrootcert: cluster.otherCaFile }, (r) => r.code === 503 && /sslrootcert/.test(r.body));
    expect(wrong.ready.body).toMatch(/set sslrootcert=PATH to the certificate of the CA that signed it/);
    expect(wrong.exporter.stderr()).not.toContain('--use-system-ca');
    const right = await withExporter({ sslmode: 'verify-full', sslrootcert: cluster.caFile }, (r) => r.code === 200, { host: 'localhost' });
    expect(right.ready.body).toMatch(/^ready: /);
    for (const run of [wrong, right]) expect(nonJsonLines(run.exporter.stderr())).toEqual([]);
  });

  it('verify-full checks the host (the certificate names localhost, not 127.0.0.1); verify-ca does not', async () => {
    const host = await withExporter({ sslmode: 'verify-full', sslrootcert: cluster.caFile }, (r) => r.code === 503 && /verify-ca/.test(r.body));
    expect(host.ready.body).toMatch(/does not name the host of the URL: .*sslmode=verify-ca/);
    const chainOnly = await withExporter({ sslmode: 'verify-ca', sslrootcert: cluster.caFile }, (r) => r.code === 200);
    expect(chainOnly.ready.body).toMatch(/^ready: /);
    for (const run of [host, chainOnly]) expect(nonJsonLines(run.exporter.stderr())).toEqual([]);
  });

  it('a wrong password is one error line with err.code 28P01, never the password', async () => {
    const { exporter } = await withExporter({ sslmode: 'require' }, (r) => r.code === 503 && /password/.test(r.body), { password: 'Wrong-Pw-9' });
    const failure = exporter.logs.find((l) => l.level === 'error');
    expect(failure?.['err']).toMatchObject({ code: '28P01' });
    expect(String(failure?.['error'])).toMatch(/password authentication failed for user "reader"/);
    expect(exporter.stderr()).not.toContain('Wrong-Pw-9');
    expect(nonJsonLines(exporter.stderr())).toEqual([]);
  });
});

/** The exporter's sessions (its pool's and its leader lock's) as `server` sees them: whether each is encrypted. */
async function sessionsTls(server: (text: string) => Promise<pg.QueryResult>): Promise<Record<string, boolean>> {
  const { rows } = await server(
    `SELECT a.application_name AS name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.datname = current_database() AND a.application_name LIKE 'agentconn%' ORDER BY 1`,
  );
  return Object.fromEntries((rows as Array<{ name: string; ssl: boolean }>).map((r) => [r.name.startsWith('agentconn-leader') ? 'leader lock' : 'pool', r.ssl]));
}

/** Runs the exporter (leader election on, as by default) on `url` until it polled and holds the lock; returns its sessions' TLS. */
async function exporterSessions(url: string, server: (text: string) => Promise<pg.QueryResult>): Promise<{ sessions: Record<string, boolean>; stderr: string }> {
  const { exporter, result } = await runExporterUntil(url, async (ready) => {
    const sessions = await sessionsTls(server);
    return ready.code === 200 && Object.keys(sessions).length === 2 ? sessions : undefined;
  });
  return { sessions: result, stderr: exporter.stderr() };
}

function check(url: string) {
  return spawnSync(process.execPath, [EXPORTER_CLI, 'check', '--database-url', url], { encoding: 'utf8', env: { PATH: process.env['PATH'] }, timeout: 30_000 });
}

async function onPlainServer(text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: plain.url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

describe('sslmode=prefer, and no sslmode (which means prefer, as in libpq)', () => {
  it.each([{ sslmode: 'prefer' }, {}])('%j against a server with TLS: the pool and the leader lock both encrypt', async (params) => {
    const url = cluster.url({ user: 'reader', password: PASSWORD, database: 'coder', params });
    const { sessions, stderr } = await exporterSessions(url, (text) => cluster.sql(text, 'coder'));
    expect(sessions).toEqual({ pool: true, 'leader lock': true });
    expect(nonJsonLines(stderr)).toEqual([]);
    const report = check(url);
    expect(report.stdout).toMatch(/^server +PostgreSQL 15\.\d+.*; TLS TLSv1\.\d, sslmode=prefer$/m);
    expect(report.stdout).toMatch(/^leader +none: /m);
  });

  it.each([{ sslmode: 'prefer' }, {}])('%j against a server without TLS: both go on unencrypted, as psql does', async (params) => {
    const url = `${plain.url}${params.sslmode === undefined ? '' : `?sslmode=${params.sslmode}`}`;
    const { sessions, stderr } = await exporterSessions(url, onPlainServer);
    expect(sessions).toEqual({ pool: false, 'leader lock': false });
    expect(nonJsonLines(stderr)).toEqual([]);
    const report = check(url);
    expect(report.stdout).toMatch(/^server +PostgreSQL 15\.\d+.*; not encrypted, sslmode=prefer$/m);
    expect(report.stdout).toMatch(/^leader +none: /m);
    expect(report.status).toBe(0);
  });

  it('sslmode=require against a server without TLS fails, naming sslmode', async () => {
    const report = check(`${plain.url}?sslmode=require`);
    expect(report.status).toBe(1);
    expect(report.stdout + report.stderr).toMatch(/The server does not support SSL connections.*sslmode=/);
  });
});
