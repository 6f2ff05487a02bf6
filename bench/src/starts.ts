/**
 * `pnpm bench:starts`: what the whole-start family (`--phases`) adds to a poll tick, on the real server,
 * at 10k, 100k and 1M start builds of history, with Coder's own indexes only (stock) and with the
 * opt-in indexes (`createWorkspaceStartIndexes`). Before each tick a fixed number of new start builds go
 * the whole path (`writeTickEvents`); then the tick reads, on one connection, what the exporter reads,
 * on the exporter's path: the first connections since the window's bound, leaving out the agents handled
 * inside the overlap (the family off), then the core's `WorkspaceStartStream` over `createCoderStartSource`
 * with a `WorkspaceStartRecorder` and a `CountWindow` of the exporter's interval and overlap (on = both).
 * The simulated clock moves one interval per tick, so the first ticks after the start are the ones that
 * reconcile (read every agent not ready) and the ticks past the overlap are the steady ones; both are
 * reported. Per tick: wall and this process's CPU of each read, the start source's `rowsRead` against the
 * events, and `EXPLAIN (ANALYZE, BUFFERS)` of each statement the sources ran, as they ran it (captured
 * from Kysely's log: server execution time, sequential scans, rows examined). Medians over the measured
 * ticks; progress on stderr, the Markdown report on stdout and, with the JSON, in `--out`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  CountWindow,
  MAX_EXCLUDED_AGENT_IDS,
  toEpochMicros,
  WorkspaceStartRecorder,
  WorkspaceStartStream,
  workspaceStart,
} from '@agentconn/core';
import {
  createCoderAgentSource,
  createCoderStartSource,
  createWorkspaceStartIndexes,
  dropAwaitingCreatedAtIndex,
  dropFirstConnectedAtIndex,
  dropWorkspaceStartIndexes,
  type CoderDatabase,
} from '@agentconn/kysely';
import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { machineFacts } from './machine.js';
import { progress } from './progress.js';
import { median } from './stats.js';
import { ROWS_PER_TICK_BUILD, removeTickEvents, writeTickEvents } from './starts-events.js';
import { STARTS_TEMPLATES, openStartsDatabase, type StartsSeedMeta } from './starts-seed.js';

export const STARTS_HELP = `Usage: pnpm bench:starts [options]

  --builds LIST       start builds of history per database, e.g. 10k,100k,1M        default 10k,100k,1M
  --events N          new start builds before each tick (each: 7 rows to return)   default 20
  --ticks N           measured steady ticks (past the overlap) per index mode      default 10
  --warmup N          unmeasured ticks after the start                             default 1
  --interval-ms N     simulated time between ticks (the exporter's --interval)     default 60000
  --overlap-ms N      the read bound is the last tick minus this (its --overlap)   default 300000
  --indexes LIST      stock (Coder's indexes only), opt-in (createWorkspaceStartIndexes) default stock,opt-in
  --keep              keep each database (agentconn_bench_starts_<builds>) and reuse it next time
  --database-url URL  server to create the databases on   default $DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres
  --out DIR           where results.md and results.json go                      default bench/results/starts
`;

export interface StartsOptions {
  readonly sizes: readonly number[];
  readonly events: number;
  readonly ticks: number;
  readonly warmup: number;
  readonly intervalMs: number;
  readonly overlapMs: number;
  readonly indexes: readonly IndexMode[];
  readonly keep: boolean;
  readonly baseUrl: string;
  readonly out: string;
}

export type IndexMode = 'stock' | 'opt-in';
const INDEX_MODES: readonly IndexMode[] = ['stock', 'opt-in'];

export function parseStartsArgs(argv: readonly string[]): StartsOptions | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      builds: { type: 'string', default: '10k,100k,1M' },
      events: { type: 'string', default: '20' },
      ticks: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '1' },
      'interval-ms': { type: 'string', default: '60000' },
      'overlap-ms': { type: 'string', default: '300000' },
      indexes: { type: 'string', default: 'stock,opt-in' },
      keep: { type: 'boolean', default: false },
      'database-url': { type: 'string' },
      out: { type: 'string', default: 'bench/results/starts' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const count = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name} must be an integer of at least ${min}, got "${text}"`);
    return n;
  };
  return {
    sizes: values.builds.split(',').map(parseSize),
    events: count('events', values.events, 1),
    ticks: count('ticks', values.ticks, 1),
    warmup: count('warmup', values.warmup, 0),
    intervalMs: count('interval-ms', values['interval-ms'], 1000),
    overlapMs: count('overlap-ms', values['overlap-ms'], 0),
    indexes: values.indexes.split(',').map((mode) => {
      if (!(INDEX_MODES as readonly string[]).includes(mode)) throw new RangeError(`--indexes: "${mode}" is not one of ${INDEX_MODES.join(', ')}`);
      return mode as IndexMode;
    }),
    keep: values.keep,
    baseUrl: values['database-url'] ?? process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    out: values.out,
  };
}

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (match === null) throw new RangeError(`--builds: "${text}" is not a size (10k, 1M)`);
  const unit = match[2]?.toLowerCase() === 'k' ? 1e3 : match[2]?.toLowerCase() === 'm' ? 1e6 : 1;
  return Math.round(Number(match[1]) * unit);
}

/** One statement's `EXPLAIN (ANALYZE, BUFFERS)`, summarised. */
export interface PlanSummary {
  readonly statement: string;
  readonly executionMs: number;
  /** Tables read by a sequential scan. */
  readonly seqScans: readonly string[];
  /** Rows the scans produced or filtered out, times their loops: what the server examined. */
  readonly rowsExamined: number;
  readonly sharedBlocks: number;
}

export interface TickFigures {
  /** `reconciling`: the in-progress read scanned every agent not ready (the first --overlap after a start); `steady`: by key. */
  readonly phase: 'reconciling' | 'steady';
  readonly firstConnectionWallMs: number;
  readonly firstConnectionCpuMs: number;
  readonly firstConnectionDbMs: number;
  readonly startWallMs: number;
  readonly startCpuMs: number;
  readonly startDbMs: number;
  /** The start source's `rowsRead` and what a source that re-reads nothing would return. */
  readonly rowsRead: number;
  readonly events: number;
  readonly inProgress: number;
  readonly startSeqScans: readonly string[];
  readonly startRowsExamined: number;
  readonly plans: readonly PlanSummary[];
}

export interface ModeResult {
  readonly indexes: IndexMode;
  readonly ticks: readonly TickFigures[];
  /** Medians over the steady ticks. */
  readonly medians: Record<string, number>;
  /** Medians over the reconciling ticks measured (after the warmup). */
  readonly reconcilingMedians: Record<string, number>;
}

export interface SizeResult {
  readonly builds: number;
  readonly database: string;
  readonly seeded: boolean;
  readonly meta: StartsSeedMeta;
  readonly modes: readonly ModeResult[];
}

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly 'Actual Rows'?: number;
  readonly 'Actual Loops'?: number;
  readonly 'Rows Removed by Filter'?: number;
  readonly 'Rows Removed by Index Recheck'?: number;
  readonly 'Shared Hit Blocks'?: number;
  readonly 'Shared Read Blocks'?: number;
  readonly Plans?: readonly PlanNode[];
}

export async function explain(db: Kysely<CoderDatabase>, statement: string, query: CompiledQuery): Promise<PlanSummary> {
  const { rows } = await db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
    CompiledQuery.raw(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${query.sql}`, [...query.parameters]),
  );
  const top = rows[0]!['QUERY PLAN'][0];
  const seqScans: string[] = [];
  let rowsExamined = 0;
  const walk = (node: PlanNode): void => {
    if (node['Relation Name'] !== undefined) {
      if (node['Node Type'] === 'Seq Scan') seqScans.push(node['Relation Name']);
      rowsExamined +=
        ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) * (node['Actual Loops'] ?? 1);
    }
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(top.Plan);
  return {
    statement,
    executionMs: top['Execution Time'],
    seqScans,
    rowsExamined,
    sharedBlocks: (top.Plan['Shared Hit Blocks'] ?? 0) + (top.Plan['Shared Read Blocks'] ?? 0),
  };
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/** The statements a read ran, as Kysely compiled them (its `log`), while `on`. */
export class StatementLog {
  on = false;
  readonly queries: CompiledQuery[] = [];

  take(): CompiledQuery[] {
    // The transaction's begin and commit and its clock (`pg_backend_pid()`) are the same for every source
    // and not what is measured: the reads are.
    return this.queries.splice(0).filter((q) => /^\s*(with|select)\b/i.test(q.sql) && !q.sql.includes('pg_backend_pid()'));
  }
}

/** The start source's statements in the order it runs them; the stages only when a job completed. */
function nameStartStatements(queries: readonly CompiledQuery[]): { name: string; query: CompiledQuery }[] {
  const names = queries.length === 4 ? ['changed builds', 'job stages', 'script runs', 'in progress'] : ['changed builds', 'script runs', 'in progress'];
  if (queries.length !== names.length) throw new Error(`the start source ran ${queries.length} statements, expected 3 or 4`);
  return queries.map((query, i) => ({ name: names[i]!, query }));
}

const medianOf = (ticks: readonly TickFigures[]): Record<string, number> => {
  const m = (pick: (t: TickFigures) => number): number => (ticks.length === 0 ? Number.NaN : median(ticks.map(pick)));
  return {
    ticks: ticks.length,
    firstConnectionWallMs: m((t) => t.firstConnectionWallMs),
    firstConnectionCpuMs: m((t) => t.firstConnectionCpuMs),
    firstConnectionDbMs: m((t) => t.firstConnectionDbMs),
    startWallMs: m((t) => t.startWallMs),
    startCpuMs: m((t) => t.startCpuMs),
    startDbMs: m((t) => t.startDbMs),
    rowsRead: m((t) => t.rowsRead),
    events: m((t) => t.events),
    rowsPerEvent: m((t) => t.rowsRead / t.events),
    maxRowsPerEvent: ticks.length === 0 ? Number.NaN : Math.max(...ticks.map((t) => t.rowsRead / t.events)),
    seqScans: m((t) => t.startSeqScans.length),
    rowsExamined: m((t) => t.startRowsExamined),
    inProgress: m((t) => t.inProgress),
    dbOnOverOff: m((t) => (t.firstConnectionDbMs + t.startDbMs) / t.firstConnectionDbMs),
    cpuOnOverOff: m((t) => (t.firstConnectionCpuMs + t.startCpuMs) / t.firstConnectionCpuMs),
  };
};

async function runMode(
  db: Kysely<CoderDatabase>,
  log: StatementLog,
  meta: StartsSeedMeta,
  options: StartsOptions,
  indexes: ModeResult['indexes'],
  firstTick: number,
): Promise<ModeResult> {
  const firstConnections = createCoderAgentSource(db);
  // The exporter's path: the stream decides the bound, what to leave out and when to reconcile.
  const stream = new WorkspaceStartStream(createCoderStartSource(db), new WorkspaceStartRecorder());
  const t0 = Date.parse(meta.historyEnd) + 10 * 60_000;
  // A fresh start at the mode's first tick, on a clock (the simulated one) equal to the source's.
  const startedAtMs = t0 + (firstTick - 1) * options.intervalMs;
  let window = CountWindow.start({ overlapMs: options.overlapMs, intervalMs: options.intervalMs }, startedAtMs);
  /** First connections handled, by agent: what the next read may leave out (as the first-connection stream does). */
  const handledAgents = new Map<string, number>();
  const ticks: TickFigures[] = [];
  let steady = 0;
  // Past the overlap every read is steady; a stream that still reconciles then is reported with what it got.
  const maxTicks = options.warmup + options.ticks + Math.ceil(options.overlapMs / options.intervalMs) + 2;
  for (let i = 0; steady < options.ticks; i++) {
    if (i >= maxTicks) {
      progress(`${indexes}: ${steady} steady ticks after ${i}: the start stream still reconciles past the overlap`);
      break;
    }
    const tick = firstTick + i;
    const fromMs = t0 + (tick - 1) * options.intervalMs;
    const tickAtMs = fromMs + options.intervalMs;
    await writeTickEvents(db, { tick, fromMs, intervalMs: options.intervalMs, builds: options.events, workspaces: meta.workspaces, templates: STARTS_TEMPLATES });
    const sinceMs = window.querySinceMs!;
    const since = new Date(sinceMs);
    const signal = new AbortController().signal;
    const excludeAgentIds = [...handledAgents].filter(([, micros]) => micros >= sinceMs * 1000).map(([id]) => id).slice(-MAX_EXCLUDED_AGENT_IDS);

    log.take();
    log.on = true;
    let cpu = process.cpuUsage();
    let wall = performance.now();
    const agents = await firstConnections.listAgents({ connectedSince: since, excludeAgentIds, signal });
    const firstConnectionWallMs = performance.now() - wall;
    const firstConnectionCpuMs = cpuMs(cpu);
    const firstConnectionStatements = log.take();

    cpu = process.cpuUsage();
    wall = performance.now();
    const read = await stream.read({ signal, window, startedMs: tickAtMs, mode: 'incremental' });
    const startWallMs = performance.now() - wall;
    const startCpuMs = cpuMs(cpu);
    log.on = false;
    const startStatements = nameStartStatements(log.take());

    window = window.afterQuery(tickAtMs, tickAtMs);
    stream.record(read, window);
    stream.prune(read, window);
    for (const agent of agents.agents) {
      const micros = agent.firstConnectedAt === null ? undefined : toEpochMicros(agent.firstConnectedAt);
      if (micros !== undefined) handledAgents.set(agent.agentId, micros);
    }
    for (const [id, micros] of handledAgents) if (micros < window.querySinceMs! * 1000) handledAgents.delete(id);

    // Reconciling: the in-progress read takes every agent not ready; steady: the known builds by key only.
    const phase = /"wa"\."ready_at" is null/.test(startStatements.at(-1)!.query.sql) ? 'reconciling' : 'steady';
    if (phase === 'steady') steady++;
    if (i < options.warmup) continue;

    // The statements the sources ran, with their arguments, again under EXPLAIN.
    const plans: PlanSummary[] = [];
    for (const { name, query } of startStatements) plans.push(await explain(db, name, query));
    let firstConnectionDbMs = 0;
    for (const query of firstConnectionStatements) firstConnectionDbMs += (await explain(db, 'first connections', query)).executionMs;
    const { batch } = read;
    // Only the builds the phase model finds in progress are events: a candidate looked up by key that has
    // ended since (a tick's own build) is a row read for nothing.
    const inProgress = batch.inProgress.filter((b) => workspaceStart({ ...b.instants, now: batch.now }).state === 'in_progress');
    const inProgressRows = inProgress.reduce((n, b) => n + Math.max(1, b.instants.agents.length), 0);
    ticks.push({
      phase,
      firstConnectionWallMs,
      firstConnectionCpuMs,
      firstConnectionDbMs,
      startWallMs,
      startCpuMs,
      startDbMs: plans.reduce((n, p) => n + p.executionMs, 0),
      rowsRead: batch.rowsRead,
      events: options.events * ROWS_PER_TICK_BUILD + inProgressRows,
      inProgress: inProgress.length,
      startSeqScans: plans.flatMap((p) => p.seqScans),
      startRowsExamined: plans.reduce((n, p) => n + p.rowsExamined, 0),
      plans,
    });
  }
  return {
    indexes,
    ticks,
    medians: medianOf(ticks.filter((t) => t.phase === 'steady')),
    reconcilingMedians: medianOf(ticks.filter((t) => t.phase === 'reconciling')),
  };
}

export async function runStartsBench(options: StartsOptions): Promise<SizeResult[]> {
  const results: SizeResult[] = [];
  for (const builds of options.sizes) {
    const bench = await openStartsDatabase({ baseUrl: options.baseUrl, builds, keep: options.keep });
    try {
      // A kept database may hold a previous run's ticks (a run that stopped halfway).
      await removeTickEvents(bench.db);
      // One connection for the reads: the tick's statements run one after another, as in the exporter.
      const log = new StatementLog();
      const db = new Kysely<CoderDatabase>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: bench.url, max: 1, application_name: 'agentconn-bench-starts-ticks' }) }),
        log: (event) => {
          if (log.on && event.level === 'query') log.queries.push(event.query);
        },
      });
      const modes: ModeResult[] = [];
      try {
        let tick = 1;
        for (const indexes of options.indexes) {
          progress(`${builds}: ${indexes} indexes`);
          if (indexes === 'opt-in') await createWorkspaceStartIndexes(bench.db);
          else await dropOptInIndexes(bench.db);
          await sql`ANALYZE`.execute(bench.db);
          const mode = await runMode(db, log, bench.meta, options, indexes, tick);
          tick += options.warmup + mode.ticks.length;
          progress(`${builds} ${indexes}: ${JSON.stringify(mode.medians)}`);
          modes.push(mode);
        }
      } finally {
        await db.destroy();
      }
      await dropOptInIndexes(bench.db);
      await removeTickEvents(bench.db);
      results.push({ builds, database: bench.name, seeded: bench.seeded, meta: bench.meta, modes });
    } finally {
      if (options.keep) await bench.close();
      else await bench.drop();
    }
  }
  return results;
}

/** Coder's indexes only: the start family's opt-in indexes and the first connection's two (which `createWorkspaceStartIndexes` adds too). */
async function dropOptInIndexes(db: Kysely<CoderDatabase>): Promise<void> {
  await dropWorkspaceStartIndexes(db);
  await dropFirstConnectedAtIndex(db);
  await dropAwaitingCreatedAtIndex(db);
}

const f = (n: number | undefined, digits = 1): string => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits));

export function renderStartsMarkdown(results: readonly SizeResult[], options: StartsOptions): string {
  const machine = machineFacts();
  const phases = [
    ['reconciling', (mode: ModeResult) => mode.reconcilingMedians],
    ['steady', (mode: ModeResult) => mode.medians],
  ] as const;
  const lines = [
    `pnpm bench:starts: ${options.events} new start builds per tick (${options.events * ROWS_PER_TICK_BUILD} rows to return, plus the starts in progress), ` +
      `interval ${options.intervalMs / 1000} s, overlap ${options.overlapMs / 1000} s, ${options.warmup} tick(s) after the start unmeasured, ` +
      `then the reconciling ticks (the first overlap) and ${options.ticks} steady ones; medians. ` +
      `${machine.cpus} × ${machine.cpuModel}, load average ${machine.loadAverage.toFixed(2)} at the end.`,
    '',
    '| builds | indexes | ticks | off: first connections, db ms | start family, db ms | on / off, db | off, client CPU ms | start, client CPU ms | on / off, CPU | start wall ms | rows read | events | rows / event (max) | seq scans per tick | rows examined |',
    '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const size of results) {
    for (const mode of size.modes) {
      for (const [phase, of] of phases) {
        const m = of(mode);
        if (!(m['ticks']! > 0)) continue;
        const scans = [...new Set(mode.ticks.filter((t) => t.phase === phase).flatMap((t) => t.startSeqScans))].join(', ') || 'none';
        lines.push(
          `| ${size.builds.toLocaleString('en-US')} | ${mode.indexes} | ${phase} (${m['ticks']}) | ${f(m['firstConnectionDbMs'], 2)} | ${f(m['startDbMs'], 2)} | ${f(m['dbOnOverOff'], 2)} | ` +
            `${f(m['firstConnectionCpuMs'], 2)} | ${f(m['startCpuMs'], 2)} | ${f(m['cpuOnOverOff'], 2)} | ${f(m['startWallMs'], 1)} | ${f(m['rowsRead'], 0)} | ${f(m['events'], 0)} | ` +
            `${f(m['rowsPerEvent'], 2)} (${f(m['maxRowsPerEvent'], 2)}) | ${f(m['seqScans'], 0)} (${scans}) | ${f(m['rowsExamined'], 0)} |`,
        );
      }
    }
  }
  lines.push('', 'Per statement (median server execution ms / rows examined, last tick\'s sequential scans):', '');
  lines.push('| builds | indexes | ticks | statement | db ms | rows examined | seq scans |', '|---:|---|---|---|---:|---:|---|');
  for (const size of results) {
    for (const mode of size.modes) {
      for (const [phase] of phases) {
        const ticks = mode.ticks.filter((t) => t.phase === phase);
        const names = [...new Set(ticks.flatMap((t) => t.plans.map((p) => p.statement)))];
        for (const name of names) {
          const of = ticks.flatMap((t) => t.plans.filter((p) => p.statement === name));
          lines.push(
            `| ${size.builds.toLocaleString('en-US')} | ${mode.indexes} | ${phase} | ${name} | ${f(median(of.map((p) => p.executionMs)), 2)} | ${f(median(of.map((p) => p.rowsExamined)), 0)} | ${of.at(-1)!.seqScans.join(', ') || 'none'} |`,
          );
        }
      }
    }
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  let options: StartsOptions | undefined;
  try {
    options = parseStartsArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench:starts: ${error instanceof Error ? error.message : String(error)}\n\n${STARTS_HELP}`);
    return 2;
  }
  if (options === undefined) {
    process.stdout.write(STARTS_HELP);
    return 0;
  }
  const results = await runStartsBench(options);
  const markdown = renderStartsMarkdown(results, options);
  await mkdir(options.out, { recursive: true });
  await writeFile(join(options.out, 'results.md'), `${markdown}\n`);
  await writeFile(join(options.out, 'results.json'), `${JSON.stringify({ options, machine: machineFacts(), results }, null, 2)}\n`);
  process.stdout.write(`${markdown}\n`);
  progress(`wrote ${join(options.out, 'results.md')} and results.json`);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`bench:starts: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
