import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { AGENT_SOURCE_COLUMNS, CODER_TABLES, START_SOURCE_COLUMNS, SUPPORTED_CODER_SCHEMA_TEXT, type CoderDatabase } from '@agentconn/kysely';
import { describe, expect, it } from 'vitest';
import { ConfigError, FLAGS, defaultSettings, flagTableMarkdown, helpText, parseCommand } from '../src/config.js';
import { parseDurationMs } from '../src/duration.js';
import { redactDatabaseUrl, redactSecrets } from '@agentconn/kysely';

const URL_OK = ['--database-url', 'postgres://reader:s3cret@127.0.0.1:5432/coder'];

function config(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const parsed = parseCommand(argv, env);
  if (parsed.kind !== 'run') throw new Error(`expected run, got ${parsed.kind}`);
  return parsed.config;
}

describe('parseCommand', () => {
  it('--connection-timeout is off by default, in whole seconds, also from AGENTCONN_CONNECTION_TIMEOUT', () => {
    expect(config(URL_OK).connectionTimeoutSeconds).toBe(0);
    expect(config([...URL_OK, '--connection-timeout', 'off']).connectionTimeoutSeconds).toBe(0);
    expect(config([...URL_OK, '--connection-timeout', '10m']).connectionTimeoutSeconds).toBe(600);
    expect(config(URL_OK, { AGENTCONN_CONNECTION_TIMEOUT: '2m' }).connectionTimeoutSeconds).toBe(120);
    expect(helpText('x')).toMatch(/--connection-timeout off\|DURATION[\s\S]*default: off \[env AGENTCONN_CONNECTION_TIMEOUT\]/);
  });

  it('has safe defaults: loopback, 60 s, Coder #24355\'s two labels, incremental, no backfill, leader election', () => {
    const c = config(URL_OK);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(c.intervalMs).toBe(60_000);
    expect(c.labels).toEqual(['template_name', 'agent_name']);
    expect(c.mode).toBe('incremental');
    expect(c.backfill).toEqual({ sinceMs: 0 });
    expect(c.leaderElection).toBe(true);
    expect(c.otlpEndpoint).toBeUndefined();
    expect(c.logLevel).toBe('info');
    expect(c.withoutScopeLabels).toBe(false);
    expect(config([...URL_OK, '--without-scope-labels', 'true']).withoutScopeLabels).toBe(true);
    expect(config(URL_OK, { AGENTCONN_WITHOUT_SCOPE_LABELS: 'true' }).withoutScopeLabels).toBe(true);
  });

  it('keeps Coder PR #24179\'s four labels one flag away, and says what they cost in --help', () => {
    const c = config([...URL_OK, '--labels', 'template_name,agent_name,username,workspace_name']);
    expect(c.labels).toEqual(['template_name', 'agent_name', 'username', 'workspace_name']);
    const help = helpText('agentconn-exporter').replace(/\s+/g, ' ');
    expect(help).toContain('default: template_name,agent_name');
    expect(help).toMatch(/series per workspace/);
    expect(help).toMatch(/rate\(\) misses/);
  });

  it('keeps the whole start off by default, with its default labels', () => {
    expect(config(URL_OK)).toMatchObject({ phases: false, phaseLabels: ['template_name', 'is_prebuild'] });
    expect(config([...URL_OK, '--phases', 'true', '--phase-labels', 'workspace_name,template_name'])).toMatchObject({
      phases: true,
      phaseLabels: ['template_name', 'workspace_name'],
    });
  });

  it('reads flags and environment variables, flags winning', () => {
    const c = config(['--interval', '1m30s', '--labels', 'agent_name,template_name', '--listen', '[::1]:9999', '--backfill', '2h'], {
      DATABASE_URL: 'postgresql://u@h/db',
      AGENTCONN_INTERVAL: '5s',
      AGENTCONN_LOG_LEVEL: 'debug',
      AGENTCONN_LEADER_ELECTION: 'false',
    });
    expect(c.database).toEqual({ url: 'postgresql://u@h/db' });
    expect(c.intervalMs).toBe(90_000);
    expect(c.labels).toEqual(['agent_name', 'template_name']);
    expect(c.listen).toEqual({ host: '::1', port: 9999 });
    expect(c.backfill).toEqual({ sinceMs: 7_200_000 });
    expect(c.logLevel).toBe('debug');
    expect(c.leaderElection).toBe(false);
  });

  it('--listen :PORT means every interface, as Go exporters read it; a host keeps its own meaning', () => {
    expect(config([...URL_OK, '--listen', ':9464']).listen).toEqual({ host: '', port: 9464 });
    expect(config([...URL_OK, '--listen', '0.0.0.0:9464']).listen).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(config([...URL_OK, '--listen', 'localhost:1']).listen).toEqual({ host: 'localhost', port: 1 });
    expect(helpText('x').replace(/\s+/g, ' ')).toContain('--listen :PORT (no host) listens on every interface');
  });

  it('--leader-database-url (or AGENTCONN_LEADER_DATABASE_URL) gives the lock its own connection; default: none', () => {
    expect(config(URL_OK).leaderDatabaseUrl).toBeUndefined();
    expect(config([...URL_OK, '--leader-database-url', 'postgres://lock@db:5432/coder']).leaderDatabaseUrl).toBe('postgres://lock@db:5432/coder');
    expect(config(URL_OK, { AGENTCONN_LEADER_DATABASE_URL: 'postgresql://lock@db/coder' }).leaderDatabaseUrl).toBe('postgresql://lock@db/coder');
    expect(() => config([...URL_OK, '--leader-database-url', 'mysql://x'])).toThrow(/--leader-database-url: scheme "mysql"/);
  });

  it.each([
    [['--nope'], /unknown flag --nope/],
    [['--interval', 'soon'], /--interval: "soon" is not a duration/],
    [['--interval', '60'], /--interval: "60" is not a duration/],
    [['--labels', 'template_name,owner'], /--labels: unknown label "owner"/],
    [['--phase-labels', 'template_name,agent_name'], /--phase-labels: unknown start label "agent_name"/],
    [['--phases', 'maybe'], /--phases: "maybe" is not true or false/],
    [['--listen', 'localhost'], /--listen: "localhost" is not HOST:PORT/],
    [['--listen', '127.0.0.1:70000'], /--listen/],
    [['--cardinality-limit', '1'], /--cardinality-limit/],
    [['--mode', 'fast'], /--mode: "fast" is not one of incremental, full-scan/],
    [['--otlp-endpoint', 'grpc://x'], /--otlp-endpoint/],
    [['--log-level', 'loud'], /--log-level/],
    [['--backfill', 'some'], /--backfill/],
    [['--connection-timeout', '1500ms'], /--connection-timeout: 1500ms is not a whole number of seconds/],
    [['--connection-timeout', '500ms'], /--connection-timeout: 500ms is below the minimum of 1s/],
    [['--connection-timeout', 'never'], /--connection-timeout: "never" is not a duration/],
    [['--database-url', 'mysql://x'], /--database-url: scheme "mysql"/],
    [['stray'], /unexpected argument "stray"/],
  ])('%j gives a ConfigError naming the flag', (argv, message) => {
    const args = argv.includes('--database-url') ? argv : [...URL_OK, ...argv];
    expect(() => parseCommand(args, {})).toThrow(ConfigError);
    expect(() => parseCommand(args, {})).toThrow(message);
  });

  it.each([
    [['--interval', '2147483647ms'], (c: ReturnType<typeof config>) => c.intervalMs, 2_147_483_647],
    [['--statement-timeout', '2147478647ms'], (c: ReturnType<typeof config>) => c.statementTimeoutMs, 2_147_478_647],
    [['--overlap', '365250d'], (c: ReturnType<typeof config>) => c.overlapMs, 31_557_600_000_000],
    [['--backfill', '365250d'], (c: ReturnType<typeof config>) => c.backfill, { sinceMs: 31_557_600_000_000 }],
  ])('%j is the largest value accepted', (argv, pick, expected) => {
    expect(pick(config([...URL_OK, ...argv]))).toEqual(expected);
  });

  it.each([
    [['--interval', '2147483648ms'], /--interval: 2147483648ms is above the maximum of 24d20h31m23s647ms \(Node's timers/],
    [['--statement-timeout', '2147478648ms'], /--statement-timeout: 2147478648ms is above the maximum of 24d20h31m18s647ms/],
    [['--overlap', '365251d'], /--overlap: 365251d is above the maximum of 365250d/],
    [['--backfill', '365251d'], /--backfill: 365251d is above the maximum of 365250d/],
  ])('%j is refused', (argv, message) => {
    expect(() => parseCommand([...URL_OK, ...argv], {})).toThrow(message);
  });

  it('names the environment variable when the bad value came from there', () => {
    expect(() => parseCommand(URL_OK, { AGENTCONN_INTERVAL: 'x' })).toThrow(/AGENTCONN_INTERVAL \(--interval\)/);
  });

  it('--state-file / AGENTCONN_STATE_FILE: off by default, a path when given, an empty path is an error', () => {
    expect(config(URL_OK).stateFile).toBeUndefined();
    expect(config([...URL_OK, '--state-file', '/var/lib/agentconn/state.json']).stateFile).toBe('/var/lib/agentconn/state.json');
    expect(config(URL_OK, { AGENTCONN_STATE_FILE: 'state.json' }).stateFile).toBe('state.json');
    expect(() => config([...URL_OK, '--state-file', ' '])).toThrow('--state-file: needs a file path');
  });

  it('requires a database URL', () => {
    expect(() => parseCommand([], {})).toThrow(/--database-url is required/);
  });

  it('documents every flag in --help', () => {
    const text = helpText('agentconn-exporter');
    for (const f of FLAGS) expect(text).toContain(`--${f.flag}`);
  });

  it('--help shows each default as the table writes it, once, and each environment variable', () => {
    const text = helpText('agentconn-exporter');
    for (const f of FLAGS) {
      expect(text).toContain(`default: ${f.default ?? f.unset ?? ''} [env ${f.env}]`);
      // The default is written once, in `default`, never again in the help sentence.
      expect(f.help).not.toMatch(/default/i);
    }
  });

  it('--web.response-timeout and --web.drain-timeout say in --help that they hold for --exposition fast only', () => {
    const lines = helpText('agentconn-exporter').split('\n');
    for (const flag of ['--web.response-timeout', '--web.drain-timeout']) {
      expect(lines.find((line) => line.trimStart().startsWith(`${flag} `))).toMatch(/\(--exposition fast only\)$/);
    }
  });

  it('every default of the table is a valid input of its own parser, and is what parseCommand gives', () => {
    const c = config(URL_OK);
    const defaults = defaultSettings();
    for (const f of FLAGS) {
      if (f.default !== undefined) expect(() => f.parse(f.default ?? '')).not.toThrow();
    }
    const { database: _, ...settings } = c;
    expect(settings).toEqual(defaults);
  });

  it("the README's options table is the one made from the flag table", () => {
    const readmeUrl = new URL('../README.md', import.meta.url);
    const readme = readFileSync(readmeUrl, 'utf8');
    const block = /(<!-- flags:begin[^>]*-->\n)([\s\S]*?)(\n<!-- flags:end -->)/;
    const expected = flagTableMarkdown();
    if (process.env['AGENTCONN_UPDATE_README'] === '1') {
      writeFileSync(readmeUrl, readme.replace(block, (_, begin: string, _old: string, end: string) => `${begin}${expected}${end}`));
      return;
    }
    expect(block.exec(readme)?.[2], 'run with AGENTCONN_UPDATE_README=1 to rewrite the table').toBe(expected);
  });

  it("the README's GRANTs are the columns the queries read, and the range the preflight states", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const block = /<!-- grants:begin[^>]*-->\n```sql\n([\s\S]*?)```\n<!-- grants:end -->/.exec(readme)?.[1] ?? '';
    const grants = block.split('\n').filter((line) => line.startsWith('GRANT SELECT ('));
    expect(grants).toEqual(CODER_TABLES.map((table) => `GRANT SELECT (${AGENT_SOURCE_COLUMNS[table].join(', ')}) ON ${table} TO agentconn_reader;`));
    expect(readme).toContain(`supported: ${SUPPORTED_CODER_SCHEMA_TEXT};`);
  });

  it("the whole start's GRANTs are the columns its queries read beyond the first connection's", () => {
    const page = readFileSync(new URL('../docs/whole-start.md', import.meta.url), 'utf8');
    const grants = page.split('\n').filter((line) => line.startsWith('GRANT SELECT (')).sort();
    const firstConnection: Readonly<Record<string, readonly string[]>> = AGENT_SOURCE_COLUMNS;
    const expected = Object.entries(START_SOURCE_COLUMNS)
      .map(([table, columns]) => [table, columns.filter((c) => !(firstConnection[table] ?? []).includes(c))] as const)
      .filter(([, columns]) => columns.length > 0)
      .map(([table, columns]) => `GRANT SELECT (${columns.join(', ')}) ON ${table} TO agentconn_reader;`)
      .sort();
    expect(grants).toEqual(expected);
  });

  it.each([
    [['--interval'], /^--interval needs a value$/],
    [['--interval', '--labels', 'agent_name'], /^--interval needs a value$/],
    [['--help=yes'], /^--help takes no value$/],
    [['-x'], /^unknown flag -x \(see --help\)$/],
    [['--', 'stray'], /^unexpected argument "stray"/],
  ])('parse error %j is recognised by its code and names the argument', (argv, message) => {
    expect(() => parseCommand([...URL_OK, ...argv], {})).toThrow(message);
  });

  it('with a database supplied by the program: no URL needed, the database flags refused', () => {
    const db = {} as Kysely<CoderDatabase>;
    const parsed = parseCommand(['--interval', '5s', '--leader-election', 'false'], {}, { db });
    expect(parsed.kind === 'run' && parsed.config.database).toEqual({ db });
    expect(() => parseCommand(['--interval', '5s'], {}, { db })).toThrow(/--leader-election: needs --database-url/);
    expect(() => parseCommand(URL_OK, {}, { db })).toThrow(/--database-url: not accepted here/);
    expect(() => parseCommand([], { DATABASE_URL: 'postgres://u@h/db' }, { db })).toThrow(/DATABASE_URL \(--database-url\): not accepted/);
  });
});

describe('a command-line flag beats the environment', () => {
  const run = (argv: string[], env: NodeJS.ProcessEnv) => {
    const parsed = parseCommand(argv, env);
    if (parsed.kind !== 'run') throw new Error(`expected run, got ${parsed.kind}`);
    return parsed;
  };

  it('names each environment variable a flag overrode', () => {
    const parsed = run([...URL_OK, '--interval', '10s'], { AGENTCONN_INTERVAL: '30s', AGENTCONN_LABELS: 'agent_name' });
    expect(parsed.config.intervalMs).toBe(10_000);
    expect(parsed.config.labels).toEqual(['agent_name']);
    expect(parsed.ignoredEnvironment).toEqual([{ variable: 'AGENTCONN_INTERVAL', flag: '--interval' }]);
  });

  it('--database-url-file on the command line wins over DATABASE_URL in the environment, and the other way round', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentconn-config-'));
    try {
      const file = join(dir, 'url');
      writeFileSync(file, 'postgres://from-file@127.0.0.1/db\n');
      const fromFile = run(['--database-url-file', file], { DATABASE_URL: 'postgres://from-env@127.0.0.1/db' });
      expect(fromFile.config.database).toEqual({ url: 'postgres://from-file@127.0.0.1/db' });
      expect(fromFile.ignoredEnvironment).toEqual([{ variable: 'DATABASE_URL', flag: '--database-url-file' }]);
      // The variable's file is not even read: a flag on the command line settles it.
      const fromFlag = run(['--database-url', 'postgres://from-flag@127.0.0.1/db'], { DATABASE_URL_FILE: join(dir, 'missing') });
      expect(fromFlag.config.database).toEqual({ url: 'postgres://from-flag@127.0.0.1/db' });
      expect(fromFlag.ignoredEnvironment).toEqual([{ variable: 'DATABASE_URL_FILE', flag: '--database-url' }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a password in --database-url wins over DATABASE_PASSWORD_FILE in the environment; without one the file gives it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentconn-config-'));
    try {
      const file = join(dir, 'pw');
      writeFileSync(file, 'from-file\n');
      const withOwn = run(['--database-url', 'postgres://u:from-flag@127.0.0.1/db'], { DATABASE_PASSWORD_FILE: file });
      expect(withOwn.config.database).toEqual({ url: 'postgres://u:from-flag@127.0.0.1/db' });
      expect(withOwn.ignoredEnvironment).toEqual([{ variable: 'DATABASE_PASSWORD_FILE', flag: '--database-url' }]);
      const without = run(['--database-url', 'postgres://u@127.0.0.1/db'], { DATABASE_PASSWORD_FILE: file });
      expect(without.config.database).toEqual({ url: 'postgres://u:from-file@127.0.0.1/db' });
      expect(without.ignoredEnvironment).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('two sources of the database URL on one level still fail, naming both', () => {
    expect(() => run(['--database-url', 'postgres://a@h/db', '--database-url-file', '/nonexistent'], {})).toThrow(
      'the database URL is given twice: use --database-url (DATABASE_URL) or --database-url-file (DATABASE_URL_FILE), not both',
    );
    expect(() => run([], { DATABASE_URL: 'postgres://a@h/db', DATABASE_URL_FILE: '/nonexistent' })).toThrow(
      'the database URL is given twice in the environment: DATABASE_URL and DATABASE_URL_FILE; set one',
    );
  });
});

describe('durations and secrets', () => {
  it('parses human durations', () => {
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('1.5s')).toBe(1500);
    expect(parseDurationMs('5 m')).toBeUndefined();
    expect(parseDurationMs('')).toBeUndefined();
  });

  it('never shows the password', () => {
    expect(redactDatabaseUrl('postgres://reader:s3cret@db:5432/coder')).toBe('postgres://reader:***@db:5432/coder');
    expect(redactDatabaseUrl('host=db password=s3cret user=x')).toBe('host=db password=*** user=x');
    expect(redactSecrets('auth failed for postgres://reader:s%40cret@db/coder')).toBe('auth failed for postgres://reader:***@db/coder');
    expect(redactSecrets('auth failed for postgres://reader:s@cret@db/coder')).toBe('auth failed for postgres://reader:***@db/coder');
  });
});
