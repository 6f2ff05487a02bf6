import { describe, expect, it } from 'vitest';
import { ConfigError, FLAGS, helpText, parseCommand } from '../src/config.js';
import { parseDurationMs } from '../src/duration.js';
import { databasePassword, redactDatabaseUrl, scrubSecret } from '../src/redact.js';

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

  it('has safe defaults: loopback, 60 s, the four labels, incremental, no backfill, leader election', () => {
    const c = config(URL_OK);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(c.intervalMs).toBe(60_000);
    expect(c.labels).toEqual(['template_name', 'agent_name', 'username', 'workspace_name']);
    expect(c.mode).toBe('incremental');
    expect(c.backfill).toEqual({ sinceMs: 0 });
    expect(c.leaderElection).toBe(true);
    expect(c.otlpEndpoint).toBeUndefined();
    expect(c.logLevel).toBe('info');
  });

  it('reads flags and environment variables, flags winning', () => {
    const c = config(['--interval', '1m30s', '--labels', 'agent_name,template_name', '--listen', '[::1]:9999', '--backfill', '2h'], {
      DATABASE_URL: 'postgresql://u@h/db',
      AGENTCONN_INTERVAL: '5s',
      AGENTCONN_LOG_LEVEL: 'debug',
      AGENTCONN_LEADER_ELECTION: 'false',
    });
    expect(c.databaseUrl).toBe('postgresql://u@h/db');
    expect(c.intervalMs).toBe(90_000);
    expect(c.labels).toEqual(['agent_name', 'template_name']);
    expect(c.listen).toEqual({ host: '::1', port: 9999 });
    expect(c.backfill).toEqual({ sinceMs: 7_200_000 });
    expect(c.logLevel).toBe('debug');
    expect(c.leaderElection).toBe(false);
  });

  it.each([
    [['--nope'], /unknown flag --nope/],
    [['--interval', 'soon'], /--interval: "soon" is not a duration/],
    [['--interval', '60'], /--interval: "60" is not a duration/],
    [['--labels', 'template_name,owner'], /--labels: unknown label "owner"/],
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

  it('names the environment variable when the bad value came from there', () => {
    expect(() => parseCommand(URL_OK, { AGENTCONN_INTERVAL: 'x' })).toThrow(/AGENTCONN_INTERVAL \(--interval\)/);
  });

  it('requires a database URL', () => {
    expect(() => parseCommand([], {})).toThrow(/--database-url is required/);
  });

  it('documents every flag in --help', () => {
    const text = helpText('agentconn-exporter');
    for (const f of FLAGS) expect(text).toContain(`--${f.flag}`);
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
    expect(databasePassword('postgres://reader:s%40cret@db/coder')).toBe('s@cret');
    expect(scrubSecret('auth failed for s@cret and s%40cret', 's@cret')).toBe('auth failed for *** and ***');
  });
});
