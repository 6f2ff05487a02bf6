/**
 * `agentconn-exporter report`: reads the history in one read-only transaction, renders it, writes it
 * whole. Errors are one line on stderr and an exit code, never a stack trace.
 */
import type { Writable } from 'node:stream';
import { errorMessage } from '@agentconn/core';
import { redactDatabaseUrl, redactSecrets, templateNamesQuery, type CoderDatabase } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { sql, type Kysely } from 'kysely';
import { ConfigError } from '../config.js';
import { formatDurationMs } from '../duration.js';
import { existingStateError, handOverState, ReportInputError, stateFileExists, writeHandOverState } from './cut-over.js';
import { reportFamilies } from './families.js';
import { renderTable } from './format/table.js';
import { REPORT_SCHEMA_VERSION, reportHasData, type FamilyReport, type HistoryReport } from './model.js';
import {
  DEFAULT_STEP,
  MAX_SERIES_STEPS,
  MAX_TREND_PERIODS,
  parseReportCommand,
  reportDurationMs,
  reportHelpText,
  type InstantSpec,
  type ReportOptions,
} from './options.js';
import { fileOutput, streamOutput, type ReportOutput } from './output.js';
import { periodCount, readFamily, type ResolvedRange } from './read.js';


export const REPORT_EXIT_CODES = { ok: 0, failed: 1, badInput: 2, noData: 3 } as const;

export interface ReportIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: Writable;
  readonly stderr: Writable & { readonly isTTY?: boolean };
  /** A database the program supplies (an embedded PGlite, a test's); the database flags are then refused. */
  readonly db?: Kysely<CoderDatabase>;
  readonly program?: string;
}

/** Runs the command; resolves with its exit code and never rejects. */
export async function runReport(argv: readonly string[], io: ReportIo): Promise<number> {
  const program = io.program ?? 'agentconn-exporter';
  const fail = (code: number, message: string): number => {
    io.stderr.write(`${program} report: ${redactSecrets(message)}\n`);
    return code;
  };
  let options: ReportOptions;
  try {
    const command = parseReportCommand(argv, io.env, io.db === undefined ? undefined : { db: io.db });
    if (command.kind === 'help') {
      io.stdout.write(reportHelpText(program));
      return REPORT_EXIT_CODES.ok;
    }
    options = command.options;
  } catch (error) {
    if (error instanceof ConfigError) return fail(REPORT_EXIT_CODES.badInput, error.message);
    return fail(REPORT_EXIT_CODES.failed, errorMessage(error));
  }

  const db =
    'db' in options.database
      ? options.database.db
      : createPostgresDb(
          {
            connectionString: options.database.url,
            application_name: 'agentconn-report',
            // Connecting is not the statement: a short --statement-timeout must not fail the connection.
            connectionTimeoutMillis: 10_000,
            max: 1,
          },
          { onIdleClientError: () => undefined },
        );
  const progress = new Progress(io.stderr);
  let output: ReportOutput | undefined;
  try {
    const handOver = options.format === 'openmetrics' && options.until === undefined && options.stateFile !== undefined;
    if (handOver && options.stateFile !== undefined && (await stateFileExists(options.stateFile))) throw existingStateError(options.stateFile);
    let handOverAt: { untilMs: number; clockOffsetMs: number } | undefined;
    let hasData = false;
    output = options.output === undefined ? streamOutput(io.stdout) : await fileOutput(options.output);
    const out = output;
    await db
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute(async (trx) => {
        // For this transaction only: the timeout, and JIT (where the server has it on) without inlining
        // and optimization, whose compilation of the report's large statement costs more than it saves;
        // work_mem is the server's (at 1M agents its default 4MB made the hash joins cheaper than 64MB did
        // more than it slowed the sorts: bench/RESULTS.md).
        const { rows } = await sql<{ now: Date }>`SELECT now() AS now,
          set_config('statement_timeout', ${String(options.statementTimeoutMs)}, true),
          set_config('jit_inline_above_cost', '-1', true),
          set_config('jit_optimize_above_cost', '-1', true)`.execute(trx);
        const nowMs = new Date(rows[0]?.now ?? Date.now()).getTime();
        const range = resolveRange(options, nowMs);
        if (handOver) handOverAt = { untilMs: range.untilMs, clockOffsetMs: nowMs - Date.now() };
        await checkTemplates(trx, options.templates);
        if (options.format === 'openmetrics') {
          progress.start('reading the history');
          // Loaded for this format only, as the HTML's charts are.
          const { writeOpenMetricsHistory } = await import('./openmetrics.js');
          const series = await writeOpenMetricsHistory(
            trx,
            reportFamilies(options.phases),
            {
              range,
              templates: options.templates,
              labels: options.labels,
              phaseLabels: options.phaseLabels,
              withoutScopeLabels: options.withoutScopeLabels,
              onProgress: (written) => progress.update(`${written} series written`),
            },
            out.write,
          );
          hasData = series > 0;
          return;
        }
        const families: FamilyReport[] = [];
        for (const family of reportFamilies(options.phases)) {
          progress.start(`reading the ${family.title.toLowerCase()} history`);
          families.push(await readFamily(trx, family, { range, templates: options.templates, slowest: options.slowest }));
        }
        const report: HistoryReport = {
          schema_version: REPORT_SCHEMA_VERSION,
          generated_at: new Date(nowMs).toISOString(),
          range: {
            since: new Date(range.sinceMs).toISOString(),
            until: new Date(range.untilMs).toISOString(),
            step_seconds: range.stepMs / 1000,
            previous_since: new Date(range.previousSinceMs).toISOString(),
          },
          templates_filter: [...options.templates],
          families,
        };
        hasData = reportHasData(report);
        progress.start('rendering');
        await out.write(await render(report, options.format));
      });
    progress.stop();
    await output.commit();
    if (handOverAt !== undefined && options.stateFile !== undefined) {
      await writeHandOverState(options.stateFile, handOverState(handOverAt.untilMs, handOverAt.clockOffsetMs));
      io.stderr.write(
        `${program} report: the history ends at ${new Date(handOverAt.untilMs).toISOString()}; ${options.stateFile} now tells the exporter to count from there\n`,
      );
    }
    if (!hasData) return fail(REPORT_EXIT_CODES.noData, 'no data: no sample in the range (the report says so)');
    return REPORT_EXIT_CODES.ok;
  } catch (error) {
    progress.stop();
    await output?.abandon();
    if (error instanceof ReportInputError) return fail(REPORT_EXIT_CODES.badInput, error.message);
    return fail(REPORT_EXIT_CODES.failed, describeDatabaseError(error, options));
  } finally {
    if ('url' in options.database) await db.destroy().catch(() => undefined);
  }
}

async function render(report: HistoryReport, format: 'table' | 'json' | 'html'): Promise<string> {
  if (format === 'json') return `${JSON.stringify(report, null, 2)}\n`;
  // Loaded for this format only: the chart libraries are most of the report's start-up time.
  if (format === 'html') return (await import('./format/html.js')).renderHtml(report);
  return renderTable(report);
}

/** The range from the flags and the database's clock; a range that cannot be reported is an input error. */
export function resolveRange(options: ReportOptions, nowMs: number): ResolvedRange {
  const at = (spec: InstantSpec): number => (spec.kind === 'now' ? nowMs : spec.kind === 'ago' ? nowMs - spec.ms : spec.ms);
  const stepMs = options.stepMs ?? (reportDurationMs(options.format === 'openmetrics' ? DEFAULT_STEP.openmetrics : DEFAULT_STEP.trend) as number);
  // A start given as "that long ago" begins on a step boundary (midnight UTC for days, Monday for weeks),
  // so periods are calendar periods; one given as a time is kept as it is.
  // Whole seconds: OpenMetrics timestamps are seconds, and whole ones also pass `promtool check metrics`.
  const sinceMs = options.since.kind === 'ago' ? alignDown(at(options.since), stepMs) : alignDown(at(options.since), 1000);
  const untilMs = alignDown(at(options.until ?? { kind: 'now' }), 1000);
  const iso = (ms: number) => new Date(ms).toISOString();
  if (untilMs === sinceMs) throw new ReportInputError(`empty range: --since and --until are both ${iso(sinceMs)}`);
  if (untilMs < sinceMs) throw new ReportInputError(`--until (${iso(untilMs)}) is before --since (${iso(sinceMs)})`);
  const range = { sinceMs, untilMs, stepMs, previousSinceMs: sinceMs - (untilMs - sinceMs) };
  const periods = periodCount(range);
  const limit = options.format === 'openmetrics' ? MAX_SERIES_STEPS : MAX_TREND_PERIODS;
  if (periods > limit) {
    throw new ReportInputError(
      `--step ${formatDurationMs(stepMs)} makes ${periods} periods from ${iso(sinceMs)} to ${iso(untilMs)}; at most ${limit}: give a longer --step or a shorter range`,
    );
  }
  return range;
}

/** Monday 1970-01-05T00:00:00Z: periods of a week start on Mondays, of a day at midnight UTC. */
const ALIGNMENT_ORIGIN_MS = 4 * 86_400_000;

function alignDown(ms: number, stepMs: number): number {
  return ms - ((((ms - ALIGNMENT_ORIGIN_MS) % stepMs) + stepMs) % stepMs);
}

async function checkTemplates(db: Kysely<CoderDatabase>, templates: readonly string[]): Promise<void> {
  if (templates.length === 0) return;
  const known = new Set((await templateNamesQuery(db).execute()).map((row) => row.name));
  const unknown = templates.filter((name) => !known.has(name));
  if (unknown.length === 0) return;
  const list = [...known].slice(0, 20).join(', ');
  throw new ReportInputError(
    `unknown template${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `"${n}"`).join(', ')} (templates: ${list === '' ? 'none' : list}${known.size > 20 ? ', …' : ''})`,
  );
}

function describeDatabaseError(error: unknown, options: ReportOptions): string {
  const code = error !== null && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
  if (code === '57014') {
    return `the database did not answer within --statement-timeout ${formatDurationMs(options.statementTimeoutMs)}; give a longer one, a shorter range or fewer templates`;
  }
  const where = 'url' in options.database ? ` (database ${redactDatabaseUrl(options.database.url)})` : '';
  // A table missing (42P01) or not granted (42501): with --phases most likely one of the whole start's.
  const hint = options.phases && (code === '42P01' || code === '42501') ? '; --phases reads the whole start\'s tables too (see docs/whole-start.md)' : '';
  return `reading the Coder database failed: ${errorMessage(error) || String(code ?? 'error')}${where}${hint}`;
}

/** One line on stderr, rewritten every second, only when stderr is a terminal. */
class Progress {
  readonly #stream: Writable & { readonly isTTY?: boolean };
  #label = '';
  #startedAt = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(stream: Writable & { readonly isTTY?: boolean }) {
    this.#stream = stream;
  }

  start(label: string): void {
    if (this.#stream.isTTY !== true) return;
    this.#label = label;
    this.#startedAt = performance.now();
    this.#timer ??= setInterval(() => this.#draw(''), 1000).unref();
    this.#draw('');
  }

  update(detail: string): void {
    if (this.#stream.isTTY === true) this.#draw(detail);
  }

  stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stream.write('\r\u001b[K');
  }

  #draw(detail: string): void {
    const seconds = ((performance.now() - this.#startedAt) / 1000).toFixed(0);
    this.#stream.write(`\r\u001b[K${this.#label}… ${seconds} s${detail === '' ? '' : `, ${detail}`}`);
  }
}
