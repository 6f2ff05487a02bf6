/**
 * `agentconn-exporter report` flags. The database, labels, statement timeout and state file are the
 * exporter's own flags (same names, environment variables, defaults and checks, through
 * `parseCommand`); the report adds its range, step, filter and format.
 */
import { parseArgs } from 'node:util';
import { toEpochMicros, type LabelKey, type StartLabelKey } from '@agentconn/core';
import type { CoderDatabase } from '@agentconn/kysely';
import type { Kysely } from 'kysely';
import { ConfigError, FLAGS, parseCommand } from '../config.js';
import { formatDurationMs, parseDurationMs } from '../duration.js';

export const REPORT_FORMATS = ['table', 'json', 'html', 'openmetrics'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

/** An instant as given: `now`, a duration before now, or an absolute time (epoch ms). */
export type InstantSpec = { readonly kind: 'now' } | { readonly kind: 'ago'; readonly ms: number } | { readonly kind: 'at'; readonly ms: number };

export interface ReportOptions {
  /** A URL the report connects to, or a Kysely instance the program supplies. */
  readonly database: { readonly url: string } | { readonly db: Kysely<CoderDatabase> };
  readonly labels: readonly LabelKey[];
  /** `--phases`: the whole start and its phases too, labelled by `--phase-labels`. */
  readonly phases: boolean;
  readonly phaseLabels: readonly StartLabelKey[];
  readonly statementTimeoutMs: number;
  readonly stateFile: string | undefined;
  readonly withoutScopeLabels: boolean;
  readonly since: InstantSpec;
  /** Undefined: now, or for `openmetrics` the cut-over with the exporter (see `cut-over.ts`). */
  readonly until: InstantSpec | undefined;
  /** Undefined: the format's default step. */
  readonly stepMs: number | undefined;
  readonly templates: readonly string[];
  readonly format: ReportFormat;
  /** Undefined: standard output. */
  readonly output: string | undefined;
  readonly slowest: number;
}

export type ParsedReportCommand = { readonly kind: 'run'; readonly options: ReportOptions } | { readonly kind: 'help' };

/** The exporter flags the report takes as they are. */
const SHARED_FLAGS = [
  'database-url',
  'database-url-file',
  'database-password-file',
  'labels',
  'phases',
  'phase-labels',
  'statement-timeout',
  'state-file',
  'without-scope-labels',
];

export const DEFAULT_STEP = { trend: '1d', openmetrics: '5m' } as const;
/** The trend is one row per period and group: more would be a table nobody reads and a slow query. */
export const MAX_TREND_PERIODS = 2000;
/** OpenMetrics steps per series (30 days at 1 minute is 43 200). */
export const MAX_SERIES_STEPS = 500_000;

interface ReportFlag {
  readonly flag: string;
  readonly value: string;
  readonly default: string;
  readonly help: string;
  readonly multiple?: boolean;
}

/** The report's own flags, in `--help` order. */
export const REPORT_FLAGS: readonly ReportFlag[] = [
  { flag: 'since', value: 'DURATION|TIME', default: '30d', help: 'start of the range: a duration before now (30d, 12h) or an RFC 3339 time (2026-01-02T00:00:00Z, or a date)' },
  {
    flag: 'until', value: 'now|DURATION|TIME', default: 'now',
    help: 'end of the range (excluded); for --format openmetrics with --state-file the cut-over with the exporter (see below)',
  },
  { flag: 'step', value: 'DURATION', default: `${DEFAULT_STEP.trend} (${DEFAULT_STEP.openmetrics} for openmetrics)`, help: 'trend period; for openmetrics the time between samples' },
  { flag: 'template', value: 'NAME', default: '(all)', help: 'only this template; repeat or separate with commas for several', multiple: true },
  { flag: 'format', value: 'FORMAT', default: 'table', help: `one of ${REPORT_FORMATS.join(', ')}` },
  { flag: 'output', value: 'PATH', default: '(standard output)', help: 'write here instead, complete or not at all (a temporary file renamed into place)' },
  { flag: 'slowest', value: 'N', default: '5', help: 'slowest workspaces listed per template (0: none)' },
];

const PARSE_OPTIONS = {
  help: { type: 'boolean' },
  ...Object.fromEntries(REPORT_FLAGS.map((f) => [f.flag, { type: 'string', multiple: f.multiple === true }] as const)),
  ...Object.fromEntries(SHARED_FLAGS.map((f) => [f, { type: 'string' }] as const)),
  o: { type: 'string' },
} as const;

/** Reads `report`'s arguments (after the word `report`) and the environment; throws a ConfigError naming the flag. */
export function parseReportCommand(argv: readonly string[], env: NodeJS.ProcessEnv, supplied?: { readonly db: Kysely<CoderDatabase> }): ParsedReportCommand {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError(describeArgsError(error));
  }
  if (values['help'] === true) return { kind: 'help' };

  const shared: string[] = [];
  for (const flag of SHARED_FLAGS) {
    const value = values[flag];
    if (typeof value === 'string') shared.push(`--${flag}=${value}`);
  }
  // The exporter's own parser: the same checks, environment variables and defaults. Serving-only
  // settings it reads from the environment are not used here, so they must not stop the report.
  // A supplied database needs no URL, and the report takes no leader lock.
  if (supplied !== undefined) shared.push('--leader-election=false');
  const command = parseCommand(shared, onlyVariablesOf(env, SHARED_FLAGS), supplied ?? {});
  if (command.kind !== 'run') throw new ConfigError('--database-url is required (or set DATABASE_URL, or give --database-url-file)');
  const { config } = command;

  const text = (flag: string): string | undefined => {
    const value = values[flag];
    return typeof value === 'string' ? value : undefined;
  };
  const output = text('output') ?? text('o');
  if (text('output') !== undefined && text('o') !== undefined) throw new ConfigError('-o and --output: give one');
  const format = oneOf('format', text('format') ?? 'table', REPORT_FORMATS);
  const since = instant('since', text('since') ?? '30d', false);
  const untilText = text('until');
  const stepText = text('step');
  return {
    kind: 'run',
    options: {
      database: config.database,
      labels: config.labels,
      phases: config.phases,
      phaseLabels: config.phaseLabels,
      statementTimeoutMs: config.statementTimeoutMs,
      stateFile: config.stateFile,
      withoutScopeLabels: config.withoutScopeLabels,
      since,
      until: untilText === undefined ? undefined : instant('until', untilText, true),
      stepMs: stepText === undefined ? undefined : step(stepText),
      templates: templateList(values['template']),
      format,
      output: output === undefined || output === '-' ? undefined : output,
      slowest: count('slowest', text('slowest') ?? '5'),
    },
  };
}

function onlyVariablesOf(env: NodeJS.ProcessEnv, flags: readonly string[]): NodeJS.ProcessEnv {
  const names = new Set(FLAGS.filter((f) => flags.includes(f.flag)).map((f) => f.env));
  return Object.fromEntries(Object.entries(env).filter(([name]) => names.has(name)));
}

/** `now`, a duration before now, an RFC 3339 time with a zone, or a date (UTC midnight). */
export function instant(flag: string, text: string, allowNow: boolean): InstantSpec {
  const trimmed = text.trim();
  if (allowNow && trimmed === 'now') return { kind: 'now' };
  const ago = reportDurationMs(trimmed);
  if (ago !== undefined) {
    if (ago <= 0) throw new ConfigError(`--${flag}: ${text} is not a duration above 0`);
    return { kind: 'ago', ms: ago };
  }
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(trimmed) ? `${trimmed}T00:00:00Z` : trimmed;
  const micros = toEpochMicros(dateOnly);
  if (micros === undefined) {
    throw new ConfigError(`--${flag}: "${text}" is not ${allowNow ? 'now, ' : ''}a duration (30d, 12h) or an RFC 3339 time (2026-01-02T15:04:05Z, 2026-01-02)`);
  }
  return { kind: 'at', ms: Math.floor(micros / 1000) };
}

/** The exporter's durations, plus weeks (`1w` is `7d`). */
export function reportDurationMs(text: string): number | undefined {
  return parseDurationMs(text.replace(/(\d+(?:\.\d+)?)w/g, (_, weeks: string) => `${Number(weeks) * 7}d`));
}

function step(text: string): number {
  const ms = reportDurationMs(text);
  if (ms === undefined) throw new ConfigError(`--step: "${text}" is not a duration (e.g. 5m, 1h, 1d, 1w is 7d)`);
  if (ms < 1000 || ms % 1000 !== 0) throw new ConfigError(`--step: ${text} is not a whole number of seconds of at least 1s`);
  return ms;
}

function count(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n > 1000) throw new ConfigError(`--${flag}: "${text}" is not an integer from 0 to 1000`);
  return n;
}

function oneOf<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  const found = allowed.find((a) => a === text);
  if (found === undefined) throw new ConfigError(`--${flag}: "${text}" is not one of ${allowed.join(', ')}`);
  return found;
}

function templateList(value: string | boolean | string[] | undefined): string[] {
  const given = Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
  const names = given.flatMap((v) => v.split(',')).map((n) => n.trim());
  if (names.some((n) => n === '')) throw new ConfigError('--template: an empty template name');
  return [...new Set(names)];
}

function describeArgsError(error: unknown): string {
  const code = error !== null && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'([^']+)'/.exec(message)?.[1];
    return `unknown flag ${flag ?? ''} for report (see report --help)`.replace('  ', ' ');
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const word = /'([^']+)'/.exec(message)?.[1];
    return `unexpected argument ${word === undefined ? '' : `"${word}"`}: every setting is a --flag VALUE (see report --help)`.replace('  ', ' ');
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const flag = /(--?[\w.-]+)/.exec(message)?.[1];
    return `${flag ?? 'a flag'} needs a value (see report --help)`;
  }
  return `${message} (see report --help)`;
}

/** `report --help`. */
export function reportHelpText(program: string): string {
  const own = REPORT_FLAGS.map((f) => `  ${`--${f.flag} ${f.value}`.padEnd(30)} ${f.help}\n${''.padEnd(33)}default: ${f.default}`);
  const shared = FLAGS.filter((f) => SHARED_FLAGS.includes(f.flag)).map(
    (f) => `  ${`--${f.flag} ${f.value}`.padEnd(30)} as the exporter's [env ${f.env}]`,
  );
  return [
    `Usage: ${program} report (--database-url URL | --database-url-file PATH) [flags]`,
    '',
    'History from the Coder database, read-only, with the exporter\'s population and labels: per template the',
    'count, exact P50/P90/P95/P99, max and the slowest workspaces, the trend per --step and the change against',
    'the period of the same length before --since. With --phases also the whole start by outcome and each',
    'of its phases (failure counts are the outcomes\' counts).',
    '',
    'Formats: table (default), json (stable fields, schema_version), html (one self-contained file with SVG',
    'charts), openmetrics (the histogram the exporter serves as timestamped samples, ending in # EOF, for',
    '`promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`).',
    '',
    'Flags:',
    ...own,
    `  ${'-o PATH'.padEnd(30)} as --output`,
    ...shared,
    `  ${'--help'.padEnd(30)} show this help and exit`,
    '',
    'Cut-over with the live exporter (openmetrics): with --state-file PATH and no file there yet, --until is the',
    "database's now and the report writes PATH, so the exporter started with it counts from exactly there.",
    'With a file already there the exporter has been counting: give --until as the time it started.',
    '',
    `Durations: 30s, 5m, 12h, 1d, 1w (${formatDurationMs(7 * 86_400_000)}). Exit codes: 0 written, 1 database error or timeout,`,
    '2 bad flags or input (empty range, unknown template), 3 no data in the range (an explicit "no data" report is written).',
    '',
  ].join('\n');
}
