import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { generateCoderData, migrateToLatest } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { EXPORTER_CLI, spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';

const PASSWORD = 'c0rrect-horse';

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all made here with openssl. */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=agentconn test CA');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth'],
  ] as const) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
}

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
}

function get(url: string, options: RequestOptions = {}): Promise<Reply> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (part: string) => (body += part));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.end();
  });
}

const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('--web.config.file (exporter-toolkit format)', () => {
  let dir: string;
  let database: TestDatabase;
  let ca: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentconn-web-'));
    makeCertificates(dir);
    ca = execFileSync('cat', [join(dir, 'ca.crt')]);
    database = await createTestDatabase('agentconn_tls');
    const db = createPostgresDb(database.url);
    await migrateToLatest(db);
    await generateCoderData(db, { seed: 3, users: 3, templates: 2, workspaces: 12, buildsPerWorkspace: 1, neverConnectedRatio: 0, negativeRatio: 0, deletedWorkspaceRatio: 0, deletedAgentRatio: 0 });
    await db.destroy();
  }, 60_000);
  afterAll(async () => {
    await database?.drop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('a real Prometheus scrapes over TLS with basic auth: up == 1 and the histogram arrives; no or wrong credentials 401; plain HTTP fails', async () => {
    const hash = bcrypt.hashSync(PASSWORD, 10).replace(/^\$2b\$/, '$2y$'); // htpasswd writes $2y$
    const configFile = join(dir, 'web.yml');
    const writeConfig = (passwordHash: string) =>
      writeFileSync(
        configFile,
        [
          'tls_server_config:',
          '  cert_file: server.crt',
          '  key_file: server.key',
          '  min_version: TLS12',
          'http_server_config:',
          '  headers:',
          '    X-Content-Type-Options: nosniff',
          'basic_auth_users:',
          `  prometheus: ${passwordHash}`,
          '',
        ].join('\n'),
      );
    writeConfig(hash);
    writeFileSync(join(dir, 'password'), PASSWORD);
    const port = await freePort();
    const exporter = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--interval', '1s', '--backfill', 'all', '--web.config.file', configFile]);
    let prometheus: PrometheusServer | undefined;
    try {
      const url = await exporter.started;
      expect(url).toBe(`https://127.0.0.1:${port}/metrics`);
      prometheus = await startPrometheus([`127.0.0.1:${port}`], {
        scheme: 'https',
        jobLines: ['tls_config:', `  ca_file: ${join(dir, 'ca.crt')}`, 'basic_auth:', '  username: prometheus', `  password_file: ${join(dir, 'password')}`],
      });
      await prometheus.waitForScrapes(2);
      const up = await prometheus.query('up{job="agentconn"}');
      expect(up.map((s) => s.value[1])).toEqual(['1']);
      await until(async () => {
        const count = await prometheus!.query('sum(coderd_agents_first_connection_seconds_count)');
        return Number(count[0]?.value[1] ?? 0) >= 12;
      }, 20_000);

      const anonymous = await get(url, { ca });
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toMatch(/^Basic /);
      expect(anonymous.headers['x-content-type-options']).toBe('nosniff');
      expect((await get(url, { ca, headers: basic('prometheus', 'wrong') })).status).toBe(401);
      expect((await get(url, { ca, headers: basic('nobody', PASSWORD) })).status).toBe(401);
      expect((await get(`https://127.0.0.1:${port}/healthz`, { ca })).status).toBe(401);
      const good = await get(url, { ca, headers: basic('prometheus', PASSWORD) });
      expect(good.status).toBe(200);
      expect(good.body).toMatch(/^coderd_agents_first_connection_seconds_count\{/m);
      await expect(get(`http://127.0.0.1:${port}/metrics`, { headers: basic('prometheus', PASSWORD) })).rejects.toThrow();

      // A new password in the file applies without a restart (the file is watched), and on SIGHUP.
      writeConfig(bcrypt.hashSync('n3w-password', 10));
      await until(async () => (await get(url, { ca, headers: basic('prometheus', 'n3w-password') })).status === 200);
      expect((await get(url, { ca, headers: basic('prometheus', PASSWORD) })).status).toBe(401);
      writeConfig(hash);
      exporter.child.kill('SIGHUP');
      await until(async () => (await get(url, { ca, headers: basic('prometheus', PASSWORD) })).status === 200);
      expect(exporter.logs.some((l) => l.msg === 'web config reloaded')).toBe(true);
      // Neither password nor hash is ever logged.
      expect(exporter.stderr()).not.toContain(PASSWORD);
      expect(exporter.stderr()).not.toContain(hash.slice(7));
      expect(await exporter.stop('SIGTERM')).toBe(0);
    } finally {
      await prometheus?.stop();
      exporter.child.kill('SIGKILL');
    }
  }, 90_000);

  it('client-certificate mode rejects a client without one and serves one with a certificate from the CA', async () => {
    const configFile = join(dir, 'mtls.yml');
    writeFileSync(configFile, ['tls_server_config:', '  cert_file: server.crt', '  key_file: server.key', '  client_auth_type: RequireAndVerifyClientCert', '  client_ca_file: ca.crt', ''].join('\n'));
    const port = await freePort();
    const exporter: ExporterProcess = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--interval', '1s', '--web.config.file', configFile]);
    try {
      const url = await exporter.started;
      await expect(get(url, { ca })).rejects.toThrow();
      const cert = execFileSync('cat', [join(dir, 'client.crt')]);
      const key = execFileSync('cat', [join(dir, 'client.key')]);
      expect((await get(url, { ca, cert, key })).status).toBe(200);
      // A certificate the CA did not sign (the server's own key pair, self-signed here) is refused too.
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.crt', '-days', '1', '-subj', '/CN=rogue'], { cwd: dir, stdio: 'pipe' });
      await expect(
        get(url, { ca, cert: execFileSync('cat', [join(dir, 'rogue.crt')]), key: execFileSync('cat', [join(dir, 'rogue.key')]) }),
      ).rejects.toThrow();
      expect(await exporter.stop('SIGTERM')).toBe(0);
    } finally {
      exporter.child.kill('SIGKILL');
    }
  }, 60_000);

  it.each([
    ['tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  bogus: 1\n', 'unknown key tls_server_config.bogus'],
    ['basic_auth_user:\n  a: b\n', 'unknown key basic_auth_user'],
    ['basic_auth_users:\n  alice: hunter2hunter2\n', 'basic_auth_users.alice is not a bcrypt hash'],
    ['tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n', 'tls_server_config.cert_file missing.crt: cannot read it (ENOENT)'],
    ['tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n', 'client_auth_type "Sometimes"'],
    ['tls_server_config: [1\n', 'not valid YAML'],
    ['rate_limit:\n  interval: 1s\n  burst: 2\n', 'rate_limit is not supported'],
    ['http_server_config:\n  headers:\n    X-Frame-Options: allow\n', 'X-Frame-Options "allow"'],
  ])('a bad file (%j) exits 2 with one line naming it', (text, expected) => {
    const file = join(dir, `bad-${Math.random().toString(36).slice(2)}.yml`);
    writeFileSync(file, text);
    const run = spawnSync(process.execPath, [EXPORTER_CLI, '--database-url', 'postgres://x@127.0.0.1:1/db', '--web.config.file', file], { encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(2);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toContain(expected);
    expect(run.stderr).not.toContain('hunter2');
  });
});
