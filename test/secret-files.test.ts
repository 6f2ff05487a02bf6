import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORTER_CLI, spawnExporter } from './helpers/exporter-process.js';
import { startPasswordCaptureServer, type PasswordCaptureServer } from './helpers/password-capture-server.js';
import { freePort } from '@agentconn/test-support/ports';

let dir: string;
let server: PasswordCaptureServer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentconn-secret-files-'));
  server = await startPasswordCaptureServer();
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, contents: string): string {
  const path = join(dir, name);
  writeFileSync(path, contents, { mode: 0o600 });
  return path;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [EXPORTER_CLI, ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'], ...env }, timeout: 5_000 });
}

/** Runs the exporter until the server saw a password; returns what the server got and all it printed. */
async function passwordSent(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ password: string | undefined; printed: string }> {
  const seen = server.passwords.length;
  const port = await freePort();
  const exporter = spawnExporter([...args, '--listen', `127.0.0.1:${port}`, '--interval', '200ms', '--log-level', 'debug'], env);
  try {
    await exporter.started;
    await exporter.waitForLog((l) => l.level === 'error' && /password authentication failed/.test(String(l['error'])));
    expect(await exporter.stop('SIGTERM')).toBe(0);
  } finally {
    exporter.child.kill('SIGKILL');
  }
  return { password: server.passwords[seen], printed: exporter.stderr() };
}

describe('secrets from files', () => {
  it('--database-url-file: the URL is read from the file (trailing newline trimmed) and its password is the one sent, never printed', async () => {
    const path = file('url', `postgres://reader:From-File-Pw@127.0.0.1:${server.port}/coder\n`);
    const { password, printed } = await passwordSent(['--database-url-file', path]);
    expect(password).toBe('From-File-Pw');
    expect(printed).not.toContain('From-File-Pw');
    expect(printed).toContain(`"database":"postgres://reader:***@127.0.0.1:${server.port}/coder"`);
  });

  it("--database-password-file: the file's password (CRLF trimmed) replaces the URL's and its password= parameter", async () => {
    const path = file('password', 'P@ss w#rd%\r\n');
    const { password, printed } = await passwordSent([
      '--database-url', `postgres://reader:Url-Pw@127.0.0.1:${server.port}/coder?password=Query-Pw`,
      '--database-password-file', path,
    ]);
    expect(password).toBe('P@ss w#rd%');
    for (const secret of ['P@ss w#rd%', 'P%40ss%20w%23rd%25', 'Url-Pw', 'Query-Pw']) expect(printed).not.toContain(secret);
  });

  it('DATABASE_URL_FILE and DATABASE_PASSWORD_FILE from the environment', async () => {
    const url = file('url-env', `postgres://reader@127.0.0.1:${server.port}/coder`);
    const pw = file('password-env', 'Env-File-Pw\n');
    const { password, printed } = await passwordSent([], { DATABASE_URL_FILE: url, DATABASE_PASSWORD_FILE: pw });
    expect(password).toBe('Env-File-Pw');
    expect(printed).not.toContain('Env-File-Pw');
  });

  it.each<[string, () => string[], NodeJS.ProcessEnv, () => string]>([
    ['a missing URL file', () => ['--database-url-file', join(dir, 'nope')], {}, () => `--database-url-file: cannot read "${join(dir, 'nope')}" (ENOENT)`],
    ['a URL file that is a directory', () => ['--database-url-file', dir], {}, () => `--database-url-file: cannot read "${dir}" (EISDIR)`],
    [
      'a missing password file (from the environment)',
      () => ['--database-url', 'postgres://u@127.0.0.1/db'],
      { DATABASE_PASSWORD_FILE: '/nonexistent/agentconn-password' },
      () => 'DATABASE_PASSWORD_FILE (--database-password-file): cannot read "/nonexistent/agentconn-password" (ENOENT)',
    ],
    ['an empty password file', () => ['--database-url', 'postgres://u@127.0.0.1/db', '--database-password-file', file('empty', '\n')], {}, () => 'is empty'],
  ])('%s exits 2 naming the flag and the path', (_name, args, env, message) => {
    const result = run(args(), env);
    expect(result.status).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(message());
  });

  it('a URL file whose URL is ambiguous exits 2 naming the file and the problem, not the contents', () => {
    const path = file('bad-url', 'postgres://reader:Hash#In-Pw@127.0.0.1/coder\n');
    const result = run(['--database-url-file', path]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`--database-url-file: the URL in "${path}": has a '#'`);
    expect(result.stderr).not.toContain('In-Pw');
    expect(result.stderr).not.toContain('Hash');
  });

  it('a URL and a URL file both on the command line exit 2 naming both', () => {
    const path = file('url-both', 'postgres://u:Both-Pw@127.0.0.1/db\n');
    const result = run(['--database-url', 'postgres://u@127.0.0.1/db', '--database-url-file', path]);
    expect(result.status).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([
      'agentconn-exporter: the database URL is given twice: use --database-url (DATABASE_URL) or --database-url-file (DATABASE_URL_FILE), not both',
    ]);
  });

  it('--database-url-file on the command line wins over an exported DATABASE_URL, and the log says which was ignored', async () => {
    const path = file('url-flag', 'postgres://from-file:File-Pw@127.0.0.1:1/db\n');
    const port = await freePort();
    const exporter = spawnExporter(['--database-url-file', path, '--listen', `127.0.0.1:${port}`], { DATABASE_URL: 'postgres://from-env@127.0.0.1:1/db' });
    try {
      await exporter.started;
      const ignored = await exporter.waitForLog((l) => l.msg.startsWith('environment variable ignored'));
      expect(ignored).toMatchObject({ level: 'info', variable: 'DATABASE_URL', flag: '--database-url-file' });
      const started = await exporter.waitForLog((l) => l.msg === 'agentconn exporter started');
      expect(started['database']).toBe('postgres://from-file:***@127.0.0.1:1/db');
      expect(await exporter.stop()).toBe(0);
      expect(exporter.stderr()).not.toContain('File-Pw');
    } finally {
      exporter.child.kill('SIGKILL');
    }
  });
});
