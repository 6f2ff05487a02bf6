import {
  DEFAULT_CARDINALITY_LIMIT,
  DEFAULT_LABEL_KEYS,
  DEFAULT_START_LABEL_KEYS,
  LABEL_KEYS,
  START_LABEL_KEYS,
  parseLabelList,
  validateStartLabels,
  type StartLabelKey,
  type BackfillPolicy,
  type DiscoveryMode,
  type LabelKey,
} from '@agentconn/core';
import { readFileSync } from 'node:fs';
import { DatabaseUrlError, parseDatabaseUrl } from '@agentconn/kysely';
import { formatDurationMs, parseDurationMs } from './duration.js';
import { LOG_LEVELS, type LogLevel } from './log.js';

export type ExpositionKind = 'fast' | 'otel';

/** Every setting of the exporter except the database. */
export interface ExporterSettings {
  /** Host '' (`--listen :PORT`): every interface. */
  readonly listen: { readonly host: string; readonly port: number };
  readonly intervalMs: number;
  readonly labels: readonly LabelKey[];
  /** The whole start (`--phases`): its six metrics on or off. */
  readonly phases: boolean;
  /** The start family's labels (`--phase-labels`). */
  readonly phaseLabels: readonly StartLabelKey[];
  readonly cardinalityLimit: number;
  readonly otlpEndpoint: string | undefined;
  readonly mode: DiscoveryMode;
  readonly overlapMs: number;
  readonly backfill: BackfillPolicy;
  /** Where the poller's state is kept across restarts; undefined: none (the backfill policy at each start). */
  readonly stateFile: string | undefined;
  readonly statementTimeoutMs: number;
  /** For agents whose `connection_timeout_seconds` is 0 (Coder never times them out); 0: off. */
  readonly connectionTimeoutSeconds: number;
  readonly leaderElection: boolean;
  /** A direct (or session-mode) connection used only by the leader lock; default: the database URL. */
  readonly leaderDatabaseUrl: string | undefined;
  readonly exposition: ExpositionKind;
  /** Leave out the otel_scope_name/otel_scope_version labels. */
  readonly withoutScopeLabels: boolean;
  /** exporter-toolkit web config (TLS, basic auth, headers), if any. */
  readonly webConfigFile: string | undefined;
  /** A /metrics response not finished by then is reset. */
  readonly webResponseTimeoutMs: number;
  /** A /metrics response whose client takes nothing for this long is reset. */
  readonly webDrainTimeoutMs: number;
  readonly logLevel: LogLevel;
}

/** What the flags (or their environment variables) give, before the database settings are combined. */
export interface FlagValues extends ExporterSettings {
  readonly databaseUrl: string | undefined;
  /** The URL read from the file `--database-url-file` names. */
  readonly databaseUrlFromFile: string | undefined;
  /** The password read from the file `--database-password-file` names. */
  readonly databasePasswordFromFile: string | undefined;
}

/** The fields that say where the database is; a program that supplies its own refuses them. */
export const DATABASE_KEYS: ReadonlySet<keyof FlagValues> = new Set(['databaseUrl', 'databaseUrlFromFile', 'databasePasswordFromFile']);

/**
 * One command-line flag. The parser, `--help` and the README's options table are all made from these
 * rows, so a default is written once: as the text a user would type, parsed by `parse` like any input.
 */
export interface FlagSpec<K extends keyof FlagValues> {
  /** The flag without its dashes. */
  readonly flag: string;
  readonly env: string;
  /** What the value looks like in `--help`, e.g. `DURATION`. */
  readonly value: string;
  /** The field of {@link FlagValues} it sets. */
  readonly key: K;
  /** The default, written as a user would type it. Absent: unset unless given. */
  readonly default?: string;
  /** How `--help` shows an absent default, e.g. `(required)` or `(off)`. */
  readonly unset?: string;
  readonly help: string;
  /** Turns the text into the value; throws an Error whose message says what is wrong with the text. */
  readonly parse: (text: string) => Exclude<FlagValues[K], undefined>;
}

export type AnyFlagSpec = { [K in keyof FlagValues]: FlagSpec<K> }[keyof FlagValues];

/** Node's timers hold at most 2^31-1 ms; a longer delay fires at once (and again, and again). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** A poll's own timeout is the statement timeout plus this grace, and must fit in a timer too. */
export const POLL_TIMEOUT_GRACE_MS = 5_000;
/**
 * How far back the overlap or the backfill may reach: 1000 years each, so that even both together
 * stay inside the range of a JavaScript Date and of PostgreSQL's timestamptz (from 4713 BC).
 */
export const MAX_LOOKBACK_MS = 365_250 * 86_400_000;

/** The flags, in `--help` order. To add one: a field in FlagValues (or ExporterSettings) and a row here. */
export const FLAGS: readonly AnyFlagSpec[] = [
  {
    flag: 'database-url', env: 'DATABASE_URL', value: 'URL', key: 'databaseUrl', unset: '(required unless --database-url-file)',
    help: 'PostgreSQL URL of the Coder database; a SELECT-only role is enough',
    parse: databaseUrl,
  },
  {
    flag: 'database-url-file', env: 'DATABASE_URL_FILE', value: 'PATH', key: 'databaseUrlFromFile', unset: '(none)',
    help: 'read the database URL from this file (a mounted secret; a trailing newline is ignored)',
    parse: (path) => databaseUrlFile(path),
  },
  {
    flag: 'database-password-file', env: 'DATABASE_PASSWORD_FILE', value: 'PATH', key: 'databasePasswordFromFile', unset: '(none)',
    help: "read the database password from this file; it replaces the URL's password",
    parse: (path) => secretFile(path),
  },
  {
    flag: 'listen', env: 'AGENTCONN_LISTEN', value: 'HOST:PORT', key: 'listen', default: '127.0.0.1:9464',
    help: 'where /metrics is served (loopback unless told otherwise)',
    parse: listen,
  },
  {
    flag: 'interval', env: 'AGENTCONN_INTERVAL', value: 'DURATION', key: 'intervalMs', default: '60s',
    help: 'time between polls, e.g. 30s, 1m, 1m30s',
    parse: (text) => duration(text, { min: 100, max: MAX_TIMER_MS, why: "Node's timers hold at most 2^31-1 ms" }),
  },
  {
    flag: 'labels', env: 'AGENTCONN_LABELS', value: 'LIST', key: 'labels', default: DEFAULT_LABEL_KEYS.join(','),
    help: `labels to keep, any of ${LABEL_KEYS.join(', ')}; the last two cost a series per workspace and rate() misses each new one's first connection (exemplars name it anyway)`,
    parse: parseLabelList,
  },
  {
    flag: 'phases', env: 'AGENTCONN_PHASES', value: 'true|false', key: 'phases', default: 'false',
    help: 'also serve the whole start (docs/whole-start.md)',
    parse: boolean,
  },
  {
    flag: 'phase-labels', env: 'AGENTCONN_PHASE_LABELS', value: 'LIST', key: 'phaseLabels', default: DEFAULT_START_LABEL_KEYS.join(','),
    help: `its labels, any of ${START_LABEL_KEYS.join(', ')}`,
    parse: startLabelList,
  },
  {
    flag: 'cardinality-limit', env: 'AGENTCONN_CARDINALITY_LIMIT', value: 'N', key: 'cardinalityLimit',
    default: String(DEFAULT_CARDINALITY_LIMIT),
    help: 'most label sets of each metric; more go to its otel_metric_overflow series',
    parse: (text) => integer(text, { min: 2 }),
  },
  {
    flag: 'otlp-endpoint', env: 'AGENTCONN_OTLP_ENDPOINT', value: 'URL', key: 'otlpEndpoint', unset: '(off)',
    help: 'also push metrics over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318/v1/metrics',
    parse: httpUrl,
  },
  {
    flag: 'mode', env: 'AGENTCONN_MODE', value: 'MODE', key: 'mode', default: 'incremental',
    help: "incremental (only recent connections each poll) or full-scan (Coder PR #24179's rule)",
    parse: (text) => oneOf(text, ['incremental', 'full-scan'] as const),
  },
  {
    flag: 'overlap', env: 'AGENTCONN_OVERLAP', value: 'DURATION', key: 'overlapMs', default: '5m',
    help: 'how far behind the last poll each incremental query reaches (late commits, replica clocks)',
    parse: (text) => duration(text, { min: 0, max: MAX_LOOKBACK_MS, why: 'dates that far back do not exist' }),
  },
  {
    flag: 'backfill', env: 'AGENTCONN_BACKFILL', value: 'none|all|DURATION', key: 'backfill', default: 'none',
    help: 'connections before start that are counted: none (restart-safe), all, or those within DURATION',
    parse: backfill,
  },
  {
    flag: 'state-file', env: 'AGENTCONN_STATE_FILE', value: 'PATH', key: 'stateFile', unset: '(off)',
    help: "keep the count's progress here (written atomically each poll); a restart resumes from it, not --backfill",
    parse: filePath,
  },
  {
    flag: 'statement-timeout', env: 'AGENTCONN_STATEMENT_TIMEOUT', value: 'DURATION', key: 'statementTimeoutMs', default: '30s',
    help: 'a poll query running longer is cancelled',
    parse: (text) => duration(text, { min: 1, max: MAX_TIMER_MS - POLL_TIMEOUT_GRACE_MS, why: "the poll's timeout, 5s more, must fit Node's timers (2^31-1 ms)" }),
  },
  {
    flag: 'connection-timeout', env: 'AGENTCONN_CONNECTION_TIMEOUT', value: 'off|DURATION', key: 'connectionTimeoutSeconds', default: 'off',
    help: 'for agents with connection_timeout_seconds 0 (Coder: never); whole seconds',
    parse: connectionTimeout,
  },
  {
    flag: 'leader-election', env: 'AGENTCONN_LEADER_ELECTION', value: 'true|false', key: 'leaderElection', default: 'true',
    help: 'with several replicas on one database only the advisory-lock holder observes',
    parse: boolean,
  },
  {
    flag: 'leader-database-url', env: 'AGENTCONN_LEADER_DATABASE_URL', value: 'URL', key: 'leaderDatabaseUrl', unset: '(the database URL)',
    help: 'PostgreSQL URL for the leader lock only; it must keep its session (not a transaction pooler)',
    parse: databaseUrl,
  },
  {
    flag: 'exposition', env: 'AGENTCONN_EXPOSITION', value: 'fast|otel', key: 'exposition', default: 'fast',
    help: 'the /metrics serializer: fast (OpenMetrics with exemplars or Prometheus text, as Accept asks) or otel (@opentelemetry/exporter-prometheus, Prometheus text only)',
    parse: (text) => oneOf(text, ['fast', 'otel'] as const),
  },
  {
    flag: 'without-scope-labels', env: 'AGENTCONN_WITHOUT_SCOPE_LABELS', value: 'true|false', key: 'withoutScopeLabels', default: 'false',
    help: 'leave out the otel_scope_name/otel_scope_version labels',
    parse: boolean,
  },
  {
    flag: 'web.config.file', env: 'AGENTCONN_WEB_CONFIG_FILE', value: 'FILE', key: 'webConfigFile', unset: '(off)',
    help: "TLS, basic auth and headers in Prometheus exporter-toolkit's format; re-read on change and SIGHUP",
    parse: filePath,
  },
  {
    flag: 'web.response-timeout', env: 'AGENTCONN_WEB_RESPONSE_TIMEOUT', value: 'DURATION', key: 'webResponseTimeoutMs', default: '15s',
    help: '/metrics response deadline, near the scrape_timeout (--exposition fast only)',
    parse: (text) => duration(text, { min: 1, max: MAX_TIMER_MS, why: "Node's timers hold at most 2^31-1 ms" }),
  },
  {
    flag: 'web.drain-timeout', env: 'AGENTCONN_WEB_DRAIN_TIMEOUT', value: 'DURATION', key: 'webDrainTimeoutMs', default: '5s',
    help: 'reset /metrics responses stalled this long (--exposition fast only)',
    parse: (text) => duration(text, { min: 1, max: MAX_TIMER_MS, why: "Node's timers hold at most 2^31-1 ms" }),
  },
  {
    flag: 'log-level', env: 'AGENTCONN_LOG_LEVEL', value: 'LEVEL', key: 'logLevel', default: 'info',
    help: `one of ${LOG_LEVELS.join(', ')}; logs are JSON lines on stderr`,
    parse: (text) => oneOf(text, LOG_LEVELS),
  },
];

function duration(text: string, bounds: { min: number; max: number; why: string }): number {
  const ms = parseDurationMs(text);
  if (ms === undefined) throw new Error(`"${text}" is not a duration (e.g. 500ms, 30s, 5m, 1h30m)`);
  if (ms < bounds.min) throw new Error(`${text} is below the minimum of ${formatDurationMs(bounds.min)}`);
  if (Math.round(ms) > bounds.max) throw new Error(`${text} is above the maximum of ${formatDurationMs(bounds.max)} (${bounds.why})`);
  return Math.round(ms);
}

function integer(text: string, bounds: { min: number }): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < bounds.min) {
    throw new Error(`"${text}" is not an integer of at least ${bounds.min}`);
  }
  return n;
}

function boolean(text: string): boolean {
  const normalized = text.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(normalized)) return true;
  if (['false', '0', 'no', 'off'].includes(normalized)) return false;
  throw new Error(`"${text}" is not true or false`);
}

function oneOf<T extends string>(text: string, allowed: readonly T[]): T {
  const found = allowed.find((a) => a === text);
  if (found === undefined) throw new Error(`"${text}" is not one of ${allowed.join(', ')}`);
  return found;
}

/** `HOST:PORT`, `[IPv6]:PORT`, or `:PORT`: every interface (host ''), as Go's net.Listen reads it. */
function listen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new Error(`"${text}" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464, :9464 for every interface)`);
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

function databaseUrl(text: string): string {
  return parseDatabaseUrl(text).text;
}

/** The text of a file holding a secret, without its trailing newline. Errors name the path, never the text. */
function secretFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = error !== null && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
    throw new Error(`cannot read "${path}" (${typeof code === 'string' ? code : 'error'})`);
  }
  const secret = text.replace(/[\r\n]+$/, '');
  if (secret === '') throw new Error(`"${path}" is empty`);
  return secret;
}

function databaseUrlFile(path: string): string {
  const text = secretFile(path);
  try {
    return parseDatabaseUrl(text).text;
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new Error(`the URL in "${path}": ${error.message}`);
    throw error;
  }
}

function httpUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL (e.g. http://127.0.0.1:4318/v1/metrics)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`"${text}" must be an http or https URL`);
  return text;
}

function backfill(text: string): BackfillPolicy {
  if (text === 'none') return { sinceMs: 0 };
  if (text === 'all') return 'all';
  if (parseDurationMs(text) === undefined) throw new Error(`"${text}" is not none, all or a duration (e.g. 1h)`);
  return { sinceMs: duration(text, { min: 0, max: MAX_LOOKBACK_MS, why: 'dates that far back do not exist; all counts every connection' }) };
}

/** A comma-separated list of the start family's labels. */
function startLabelList(text: string): StartLabelKey[] {
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
  if (items.length === 0) throw new Error(`empty label list: choose among ${START_LABEL_KEYS.join(', ')}`);
  return validateStartLabels(items);
}

/** `off` (0) or a whole number of seconds that fits PostgreSQL's integer, as `connection_timeout_seconds` does. */
function connectionTimeout(text: string): number {
  if (text === 'off') return 0;
  const ms = duration(text, { min: 1000, max: 2_147_483_647_000, why: 'connection_timeout_seconds is a PostgreSQL integer' });
  if (ms % 1000 !== 0) throw new Error(`${text} is not a whole number of seconds`);
  return ms / 1000;
}

/** A path given as is; only an empty one is refused. */
function filePath(text: string): string {
  if (text.trim() === '') throw new Error('needs a file path');
  return text;
}
