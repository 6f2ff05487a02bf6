import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnExporter } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { BASE_DATABASE_URL, createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';

/**
 * The password must be written nowhere, whatever its place in the database URL: userinfo,
 * `password=`/`sslpassword=` parameters, PGPASSWORD; encoded or not. Each variant runs the real CLI at
 * debug level against a reachable and an unreachable server; every form of the password (as written,
 * decoded, re-encoded, and the tail an unencoded `@`/`#` would split off) is searched in all it prints.
 */
interface Variant {
  readonly name: string;
  /** The URL for a server at `host` (`127.0.0.1:PORT`), `port` and database `db`. */
  readonly url: (host: string, port: number, db: string) => string;
  readonly env?: NodeJS.ProcessEnv;
  /** Every text that would give the password away. */
  readonly secrets: readonly string[];
  /** A URL that cannot be read unambiguously is refused at start: exit 2, one line matching this. */
  readonly rejected?: RegExp;
}

const VARIANTS: readonly Variant[] = [
  { name: 'userinfo', url: (h, _p, d) => `postgres://postgres:Plain-Pw-1@${h}/${d}`, secrets: ['Plain-Pw-1'] },
  { name: 'password= query parameter', url: (h, _p, d) => `postgres://postgres@${h}/${d}?password=Query-Pw-2`, secrets: ['Query-Pw-2'] },
  {
    name: 'sslpassword= query parameter',
    url: (h, _p, d) => `postgres://postgres@${h}/${d}?sslmode=disable&sslpassword=Ssl-Pw-3`,
    secrets: ['Ssl-Pw-3'],
  },
  {
    name: "percent-encoding other than encodeURIComponent's (S3cret%21)",
    url: (h, _p, d) => `postgres://postgres:S3cret%21x4@${h}/${d}`,
    secrets: ['S3cret%21x4', 'S3cret!x4'],
  },
  {
    name: 'lower-case hex (%2a, %2f)',
    url: (h, _p, d) => `postgres://postgres:Low%2ahex%2fPw5@${h}/${d}`,
    secrets: ['Low%2ahex%2fPw5', 'Low%2Ahex%2FPw5', 'Low*hex/Pw5', 'Low*hex%2FPw5'],
  },
  {
    name: 'a percent-encoded parameter name (pass%77ord=)',
    url: (h, _p, d) => `postgres://postgres@${h}/${d}?pass%77ord=Key-Enc-Pw6`,
    secrets: ['Key-Enc-Pw6'],
  },
  { name: 'IPv6 host', url: (_h, p, d) => `postgres://postgres:Ipv6-Pw-7@[::1]:${p}/${d}`, secrets: ['Ipv6-Pw-7'] },
  {
    name: 'unix socket path in host=',
    url: (_h, p, d) => `postgres://postgres:Sock-Pw-8@/${d}?host=/var/run/postgresql&port=${p}`,
    secrets: ['Sock-Pw-8'],
  },
  { name: 'PGPASSWORD', url: (h, _p, d) => `postgres://postgres@${h}/${d}`, env: { PGPASSWORD: 'Env-Pw-9' }, secrets: ['Env-Pw-9'] },
  {
    name: 'userinfo and password= both',
    url: (h, _p, d) => `postgresql://postgres:User-Pw-10@${h}/${d}?application_name=x&password=Query-Pw-10b`,
    secrets: ['User-Pw-10', 'Query-Pw-10b'],
  },
  {
    name: 'encoded space and colon',
    url: (h, _p, d) => `postgres://postgres:Sp%20ce%3APw11@${h}/${d}`,
    secrets: ['Sp%20ce%3APw11', 'Sp ce:Pw11', 'Sp+ce%3APw11', 'ce:Pw11', 'ce%3APw11'],
  },
  {
    name: "an unencoded '@' in the password",
    url: (h, _p, d) => `postgres://postgres:At@Pw12@${h}/${d}`,
    secrets: ['At@Pw12', 'At%40Pw12', 'Pw12'],
    rejected: /--database-url: .*'@'/,
  },
  {
    name: "an unencoded '#' in the password",
    url: (h, _p, d) => `postgres://postgres:Hash#Pw13@${h}/${d}`,
    secrets: ['Hash#Pw13', 'Hash%23Pw13', 'Pw13'],
    rejected: /--database-url: .*'#'/,
  },
  {
    name: "an unencoded '%' in the password",
    url: (h, _p, d) => `postgres://postgres:50%off-Pw14@${h}/${d}`,
    secrets: ['50%off-Pw14', 'off-Pw14', '50%25off-Pw14'],
    rejected: /--database-url: .*'%'/,
  },
];

describe('the database password is written nowhere (14 URL variants, debug level, reachable and unreachable server)', () => {
  let database: TestDatabase;
  let reachable: { host: string; port: number };
  let unreachable: { host: string; port: number };
  beforeAll(async () => {
    database = await createTestDatabase('agentconn_secrets');
    const base = new URL(BASE_DATABASE_URL);
    reachable = { host: base.host, port: Number(base.port || 5432) };
    const deadPort = await freePort();
    unreachable = { host: `127.0.0.1:${deadPort}`, port: deadPort };
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('has the fourteen variants', () => {
    expect(VARIANTS).toHaveLength(14);
  });

  describe.concurrent.each(VARIANTS)('$name', (variant) => {
    it.each(['reachable', 'unreachable'] as const)('%s server', async (which) => {
      const server = which === 'reachable' ? reachable : unreachable;
      const url = variant.url(server.host, server.port, database.name);
      const port = await freePort();
      const exporter = spawnExporter(
        ['--database-url', url, '--listen', `127.0.0.1:${port}`, '--interval', '200ms', '--log-level', 'debug'],
        variant.env ?? {},
      );
      let stdout = '';
      exporter.child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      try {
        if (variant.rejected !== undefined) {
          expect(await exporter.exited).toBe(2);
          const lines = exporter.stderr().trim().split('\n');
          expect(lines).toHaveLength(1);
          expect(lines[0]).toMatch(variant.rejected);
        } else {
          await exporter.started;
          // The first failure is logged at error, the next ones at debug: both levels are seen.
          await exporter.waitForLog((l) => l.level === 'debug' && /failed again/.test(l.msg));
          expect(await exporter.stop('SIGTERM')).toBe(0);
          const started = exporter.logs.find((l) => l.msg === 'agentconn exporter started');
          expect(String(started?.['database'])).toMatch(/^postgres(ql)?:\/\//);
        }
      } finally {
        exporter.child.kill('SIGKILL');
      }
      const printed = `${exporter.stderr()}\n${stdout}`;
      for (const secret of variant.secrets) expect(printed, `"${secret}" was printed`).not.toContain(secret);
    });
  });

  it("a one-letter password hides the password, not every 'p' of every line", async () => {
    const port = await freePort();
    const exporter = spawnExporter(['--database-url', `postgres://postgres:p@${unreachable.host}/coder`, '--listen', `127.0.0.1:${port}`, '--interval', '200ms']);
    try {
      await exporter.started;
      const failure = await exporter.waitForLog((l) => l.level === 'error');
      expect(failure.msg).toBe('polling the agent source failed; retrying every interval');
      const started = exporter.logs.find((l) => l.msg === 'agentconn exporter started');
      expect(started?.['database']).toBe(`postgres://postgres:***@${unreachable.host}/coder`);
      expect(await exporter.stop('SIGTERM')).toBe(0);
    } finally {
      exporter.child.kill('SIGKILL');
    }
  });

  it('sslmode=bogus is refused at start (exit 2) naming sslmode', async () => {
    const exporter = spawnExporter(['--database-url', `postgres://postgres:Bogus-Pw@${reachable.host}/${database.name}?sslmode=bogus`]);
    expect(await exporter.exited).toBe(2);
    const lines = exporter.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/--database-url: sslmode "bogus" is not one of disable, /);
    expect(exporter.stderr()).not.toContain('Bogus-Pw');
  });
});
