import { parseArgs } from 'node:util';
import {
  DEFAULT_CARDINALITY_LIMIT,
  LABEL_KEYS,
  parseLabelList,
  type BackfillPolicy,
  type DiscoveryMode,
  type LabelKey,
} from '@agentconn/core';
import { formatDurationMs, parseDurationMs } from './duration.js';
import { LOG_LEVELS, type LogLevel } from './log.js';

export type ExpositionKind = 'fast' | 'otel';

export interface ExporterConfig {
  /** PostgreSQL connection string of the Coder database. */
  readonly databaseUrl: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly intervalMs: number;
  readonly labels: readonly LabelKey[];
  readonly cardinalityLimit: number;
  readonly otlpEndpoint: string | undefined;
  readonly mode: DiscoveryMode;
  readonly overlapMs: number;
  readonly backfill: BackfillPolicy;
  readonly statementTimeoutMs: number;
  /** For agents whose `connection_timeout_seconds` is 0 (Coder never times them out); 0: off. */
  readonly connectionTimeoutSeconds: number;
  readonly leaderElection: boolean;
  readonly exposition: ExpositionKind;
  readonly logLevel: LogLevel;
}

export type ParsedCommand =
  | { readonly kind: 'run'; readonly config: ExporterConfig }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' };

/** A bad flag or value; the message names the flag (and the environment variable it may come from). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

interface FlagSpec {
  readonly flag: string;
  readonly env?: string;
  readonly value: string;
  readonly fallback: string;
  readonly help: string;
}

export const FLAGS: readonly FlagSpec[] = [
  { flag: 'database-url', env: 'DATABASE_URL', value: 'URL', fallback: '(required)', help: 'PostgreSQL URL of the Coder database; a SELECT-only role is enough' },
  { flag: 'listen', env: 'AGENTCONN_LISTEN', value: 'HOST:PORT', fallback: '127.0.0.1:9464', help: 'where /metrics is served (loopback unless told otherwise)' },
  { flag: 'interval', env: 'AGENTCONN_INTERVAL', value: 'DURATION', fallback: '60s', help: 'time between polls, e.g. 30s, 1m, 1m30s' },
  { flag: 'labels', env: 'AGENTCONN_LABELS', value: 'LIST', fallback: LABEL_KEYS.join(','), help: `labels to keep, any of ${LABEL_KEYS.join(', ')}` },
  { flag: 'cardinality-limit', env: 'AGENTCONN_CARDINALITY_LIMIT', value: 'N', fallback: String(DEFAULT_CARDINALITY_LIMIT), help: 'most label sets; more go to the otel_metric_overflow series' },
  { flag: 'otlp-endpoint', env: 'AGENTCONN_OTLP_ENDPOINT', value: 'URL', fallback: '(off)', help: 'also push metrics over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318/v1/metrics' },
  { flag: 'mode', env: 'AGENTCONN_MODE', value: 'MODE', fallback: 'incremental', help: 'incremental (only recent connections each poll) or full-scan (the seed\'s rule)' },
  { flag: 'overlap', env: 'AGENTCONN_OVERLAP', value: 'DURATION', fallback: '5m', help: 'how far behind the last poll each incremental query reaches (late commits, replica clocks)' },
  { flag: 'backfill', env: 'AGENTCONN_BACKFILL', value: 'none|all|DURATION', fallback: 'none', help: 'connections before start that are counted: none (restart-safe), all, or those within DURATION' },
  { flag: 'statement-timeout', env: 'AGENTCONN_STATEMENT_TIMEOUT', value: 'DURATION', fallback: '30s', help: 'a poll query running longer is cancelled' },
  { flag: 'connection-timeout', env: 'AGENTCONN_CONNECTION_TIMEOUT', value: 'off|DURATION', fallback: 'off', help: 'timeout for agents whose connection_timeout_seconds is 0 (Coder never times them out), in whole seconds' },
  { flag: 'leader-election', env: 'AGENTCONN_LEADER_ELECTION', value: 'true|false', fallback: 'true', help: 'with several replicas on one database only the advisory-lock holder observes' },
  { flag: 'exposition', env: 'AGENTCONN_EXPOSITION', value: 'fast|otel', fallback: 'fast', help: 'the /metrics serializer: ours (fast) or @opentelemetry/exporter-prometheus (otel)' },
  { flag: 'log-level', env: 'AGENTCONN_LOG_LEVEL', value: 'LEVEL', fallback: 'info', help: `one of ${LOG_LEVELS.join(', ')}; logs are JSON lines on stderr` },
];

export function helpText(program: string): string {
  const rows = FLAGS.map((f) => {
    const left = `  --${f.flag} ${f.value}`;
    const env = f.env === undefined ? '' : ` [env ${f.env}]`;
    return `${left.padEnd(40)} ${f.help}\n${''.padEnd(41)}default: ${f.fallback}${env}`;
  });
  return [
    `Usage: ${program} --database-url URL [flags]`,
    '',
    'Serves coderd_agents_first_connection_seconds (time from workspace agent creation to its first',
    'connection to the control plane) on http://HOST:PORT/metrics, read from a Coder PostgreSQL database.',
    '',
    'Flags (each also read from the environment variable shown; a flag wins):',
    ...rows,
    `  --help${''.padEnd(33)} show this help and exit`,
    `  --version${''.padEnd(30)} print the version and exit`,
    '',
    'Durations: 500ms, 30s, 5m, 1h, 1h30m. Exit codes: 0 stopped by SIGINT/SIGTERM, 1 fatal error, 2 bad flags.',
    '',
  ].join('\n');
}

export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedCommand {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, version: { type: 'boolean' } };
  for (const f of FLAGS) options[f.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError(describeParseError(error));
  }
  if (values['help'] === true) return { kind: 'help' };
  if (values['version'] === true) return { kind: 'version' };

  const read = (flag: string): { text: string; source: string } | undefined => {
    const spec = FLAGS.find((f) => f.flag === flag);
    const fromFlag = values[flag];
    if (typeof fromFlag === 'string') return { text: fromFlag, source: `--${flag}` };
    const fromEnv = spec?.env === undefined ? undefined : env[spec.env];
    if (fromEnv !== undefined && fromEnv !== '') return { text: fromEnv, source: `${spec?.env ?? ''} (--${flag})` };
    return undefined;
  };

  const databaseUrlInput = read('database-url');
  if (databaseUrlInput === undefined) throw new ConfigError('--database-url is required (or set DATABASE_URL)');
  const databaseUrl = parseDatabaseUrl(databaseUrlInput);

  const intervalMs = duration(read('interval'), 60_000, { min: 100 });
  const statementTimeoutMs = duration(read('statement-timeout'), 30_000, { min: 1 });
  return {
    kind: 'run',
    config: {
      databaseUrl,
      listen: parseListen(read('listen') ?? { text: '127.0.0.1:9464', source: '--listen' }),
      intervalMs,
      labels: withSource(read('labels'), (text) => parseLabelList(text), [...LABEL_KEYS]),
      cardinalityLimit: integer(read('cardinality-limit'), DEFAULT_CARDINALITY_LIMIT, 2),
      otlpEndpoint: optionalUrl(read('otlp-endpoint')),
      mode: oneOf(read('mode'), ['incremental', 'full-scan'] as const, 'incremental'),
      overlapMs: duration(read('overlap'), 300_000, { min: 0 }),
      backfill: parseBackfill(read('backfill')),
      statementTimeoutMs,
      connectionTimeoutSeconds: read('connection-timeout')?.text === 'off' ? 0 : wholeSeconds(read('connection-timeout')),
      leaderElection: boolean(read('leader-election'), true),
      exposition: oneOf(read('exposition'), ['fast', 'otel'] as const, 'fast'),
      logLevel: oneOf(read('log-level'), LOG_LEVELS, 'info'),
    },
  };
}

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1] ?? ''} (see --help)`;
  const missing = /Option '([^']+?)(?: <value>)?' argument missing/.exec(message);
  if (missing) return `${(missing[1] ?? '').split(',').pop()?.trim() ?? ''} needs a value`;
  const positional = /Unexpected argument '([^']+)'/.exec(message);
  if (positional) return `unexpected argument "${positional[1] ?? ''}": every setting is a --flag VALUE (see --help)`;
  return `${message} (see --help)`;
}

function withSource<T>(input: { text: string; source: string } | undefined, parse: (text: string) => T, fallback: T): T {
  if (input === undefined) return fallback;
  try {
    return parse(input.text);
  } catch (error) {
    throw new ConfigError(`${input.source}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function duration(input: { text: string; source: string } | undefined, fallback: number, bounds: { min: number }): number {
  if (input === undefined) return fallback;
  const ms = parseDurationMs(input.text);
  if (ms === undefined) throw new ConfigError(`${input.source}: "${input.text}" is not a duration (e.g. 500ms, 30s, 5m, 1h30m)`);
  if (ms < bounds.min) throw new ConfigError(`${input.source}: ${input.text} is below the minimum of ${formatDurationMs(bounds.min)}`);
  return Math.round(ms);
}

function wholeSeconds(input: { text: string; source: string } | undefined): number {
  const ms = duration(input, 0, { min: 1000 });
  if (ms % 1000 !== 0 || ms / 1000 > 2_147_483_647) throw new ConfigError(`${input?.source ?? ''}: ${input?.text ?? ''} is not a whole number of seconds`);
  return ms / 1000;
}

function integer(input: { text: string; source: string } | undefined, fallback: number, min: number): number {
  if (input === undefined) return fallback;
  const n = Number(input.text);
  if (!/^\d+$/.test(input.text.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`${input.source}: "${input.text}" is not an integer of at least ${min}`);
  }
  return n;
}

function boolean(input: { text: string; source: string } | undefined, fallback: boolean): boolean {
  if (input === undefined) return fallback;
  const text = input.text.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(text)) return true;
  if (['false', '0', 'no', 'off'].includes(text)) return false;
  throw new ConfigError(`${input.source}: "${input.text}" is not true or false`);
}

function oneOf<T extends string>(input: { text: string; source: string } | undefined, allowed: readonly T[], fallback: T): T {
  if (input === undefined) return fallback;
  if ((allowed as readonly string[]).includes(input.text)) return input.text as T;
  throw new ConfigError(`${input.source}: "${input.text}" is not one of ${allowed.join(', ')}`);
}

function parseListen(input: { text: string; source: string }): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(input.text.trim());
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(`${input.source}: "${input.text}" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)`);
  }
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
}

function parseDatabaseUrl(input: { text: string; source: string }): string {
  let url: URL;
  try {
    url = new URL(input.text);
  } catch {
    throw new ConfigError(`${input.source}: not a URL (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`${input.source}: scheme "${url.protocol.replace(/:$/, '')}" is not postgres or postgresql`);
  }
  return input.text;
}

function optionalUrl(input: { text: string; source: string } | undefined): string | undefined {
  if (input === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(input.text);
  } catch {
    throw new ConfigError(`${input.source}: "${input.text}" is not a URL (e.g. http://127.0.0.1:4318/v1/metrics)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${input.source}: "${input.text}" must be an http or https URL`);
  }
  return input.text;
}

function parseBackfill(input: { text: string; source: string } | undefined): BackfillPolicy {
  if (input === undefined || input.text === 'none') return { sinceMs: 0 };
  if (input.text === 'all') return 'all';
  const ms = parseDurationMs(input.text);
  if (ms === undefined) throw new ConfigError(`${input.source}: "${input.text}" is not none, all or a duration (e.g. 1h)`);
  return { sinceMs: ms };
}
