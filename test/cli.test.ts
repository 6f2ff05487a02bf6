import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORTER_CLI, nonJsonLines, spawnExporter } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [EXPORTER_CLI, ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'], ...env }, timeout: 20_000 });
}

describe('exporter CLI', () => {
  it('--help documents the flags and exits 0', () => {
    const result = run(['--help']);
    expect(result.status).toBe(0);
    for (const flag of ['--database-url', '--listen', '--interval', '--labels', '--otlp-endpoint', '--log-level', '--backfill', '--version']) {
      expect(result.stdout).toContain(flag);
    }
  });

  it('--version prints the version and exits 0', () => {
    const result = run(['--version']);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^agentconn-exporter \d+\.\d+\.\d+\n$/);
  });

  it.each([
    [['--database-url', 'postgres://x@127.0.0.1/db', '--interval', 'often'], '--interval'],
    [['--database-url', 'postgres://x@127.0.0.1/db', '--bogus'], '--bogus'],
    [['--database-url', 'postgres://x@127.0.0.1/db', '--labels', 'template_name,nope'], '--labels'],
    [[], '--database-url'],
  ])('bad flags %j exit 2 with one line naming %s', (args, flag) => {
    const result = run(args);
    expect(result.status).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(flag);
  });
  it('a database URL that is not one exits 2 with the expected form written out whole', () => {
    const result = run(['--database-url', 'reader:pw@db/coder']);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('agentconn-exporter: --database-url: not a URL (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)\n');
  });
});

describe('exporter process', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('agentconn_cli');
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('with an unreachable database: one clear line without the password, keeps serving /metrics, exits 0 on SIGTERM within 5 s', async () => {
    const port = await freePort();
    const deadPort = await freePort();
    const exporter = spawnExporter([
      '--database-url', `postgres://reader:Sup3rSecret@127.0.0.1:${deadPort}/coder`,
      '--listen', `127.0.0.1:${port}`,
      '--interval', '1s',
    ]);
    try {
      const url = await exporter.started;
      const failure = await exporter.waitForLog((l) => l.level === 'error');
      expect(failure.msg).toMatch(/polling the agent source failed/);
      expect(String(failure['error'])).toMatch(/ECONNREFUSED|connect/);
      expect(String(failure['error'])).toContain(`127.0.0.1:${deadPort}`);
      expect(failure['err']).toMatchObject({ code: 'ECONNREFUSED' });
      for (let i = 0; i < 3; i++) {
        const response = await fetch(url);
        expect(response.status).toBe(200);
        const text = await response.text();
        expect(text).toMatch(/agentconn_polls_total\{[^}]*outcome="error"/);
        await new Promise((r) => setTimeout(r, 1100));
      }
      // One line per outage, however many ticks failed.
      expect(exporter.logs.filter((l) => l.level === 'error')).toHaveLength(1);
      expect(exporter.stderr()).not.toContain('Sup3rSecret');
      const stopping = Date.now();
      expect(await exporter.stop('SIGTERM')).toBe(0);
      expect(Date.now() - stopping).toBeLessThan(5000);
    } finally {
      exporter.child.kill('SIGKILL');
    }
  });

  it.each([['true'], ['false']])(
    'a server that accepts and never answers (--leader-election %s): the first error within seconds, naming host and port; /readyz says what it waits for',
    async (election) => {
      const { createServer } = await import('node:net');
      const sockets: import('node:net').Socket[] = [];
      const silent = createServer((socket) => void sockets.push(socket)).listen(0, '127.0.0.1');
      await new Promise((r) => silent.once('listening', r));
      const silentPort = (silent.address() as import('node:net').AddressInfo).port;
      const port = await freePort();
      const exporter = spawnExporter([
        '--database-url', `postgres://reader:Sup3rSecret@127.0.0.1:${silentPort}/coder`,
        '--listen', `127.0.0.1:${port}`,
        '--interval', '1s',
        '--leader-election', election,
      ]);
      try {
        const url = await exporter.started;
        const started = Date.now();
        const waiting = await (await fetch(url.replace('/metrics', '/readyz'))).text();
        expect(waiting).toContain(`(waiting for the database at 127.0.0.1:${silentPort} to answer the preflight, each connection attempt up to 5 s)`);
        const failure = await exporter.waitForLog((l) => l.level === 'error', 15_000);
        expect(Date.now() - started).toBeLessThan(8000);
        expect(String(failure['error'])).toContain(`connecting to 127.0.0.1:${silentPort} timed out after 5 s`);
        expect(await exporter.stop()).toBe(0);
        expect(nonJsonLines(exporter.stderr())).toEqual([]);
        expect(exporter.stderr()).not.toContain('Sup3rSecret');
      } finally {
        exporter.child.kill('SIGKILL');
        for (const socket of sockets) socket.destroy();
        silent.close();
      }
    },
    30_000,
  );

  it('a database without the Coder tables gives an error naming the table, and SIGINT exits 0', async () => {
    const port = await freePort();
    const exporter = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--interval', '1s']);
    try {
      await exporter.started;
      const failure = await exporter.waitForLog((l) => l.level === 'error');
      expect(String(failure['error'])).toMatch(/workspace_agents|workspaces|relation .* does not exist/);
      expect(await exporter.stop('SIGINT')).toBe(0);
    } finally {
      exporter.child.kill('SIGKILL');
    }
  });

  it.each(['fast', 'otel'])('--exposition %s serves /metrics, answers 404 elsewhere and 405 to POST', async (kind) => {
    const port = await freePort();
    const exporter = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--exposition', kind, '--interval', '1s']);
    try {
      const url = await exporter.started;
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await response.text()).toMatch(/^# HELP agentconn_polls_total /m);
      expect((await fetch(url.replace('/metrics', '/nope'))).status).toBe(404);
      // The otel exposition answered POST with 200 before.
      const post = await fetch(url, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET, HEAD');
      expect(await exporter.stop('SIGTERM')).toBe(0);
    } finally {
      exporter.child.kill('SIGKILL');
    }
  });

  it.each(['fast', 'otel'])('--exposition %s --without-scope-labels true leaves out the otel_scope_* labels (they are there by default)', async (kind) => {
    const scrape = async (extra: string[]) => {
      const port = await freePort();
      const exporter = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--exposition', kind, '--interval', '1s', ...extra]);
      try {
        const url = await exporter.started;
        const response = await fetch(url, { headers: { 'accept-encoding': 'gzip' } });
        const text = await response.text();
        expect(await exporter.stop('SIGTERM')).toBe(0);
        return { text, encoding: response.headers.get('content-encoding') };
      } finally {
        exporter.child.kill('SIGKILL');
      }
    };
    const withScope = await scrape([]);
    expect(withScope.text).toMatch(/^agentconn_polls_total\{[^}]*otel_scope_name="/m);
    const without = await scrape(['--without-scope-labels', 'true']);
    expect(without.text).toMatch(/^# HELP agentconn_polls_total /m);
    expect(without.text).not.toContain('otel_scope_');
    // Ours answers gzip to a client that takes it (the official exporter does not).
    if (kind === 'fast') expect(without.encoding).toBe('gzip');
  });

  it('a port in use is a fatal error with exit code 1 and a clear line', async () => {
    const port = await freePort();
    const { createServer } = await import('node:net');
    const blocker = createServer().listen(port, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      const exporter = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`]);
      expect(await exporter.exited).toBe(1);
      expect(exporter.stderr()).toMatch(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      expect(exporter.logs.find((l) => l.msg === 'fatal')?.['err']).toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      blocker.close();
    }
  });
});
