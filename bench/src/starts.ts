/**
 * `pnpm bench:starts`: what the whole-start family (`--phases`) adds to a poll tick, on the real server,
 * at 10k, 100k and 1M start builds of history, with Coder's own indexes only (stock) and with the
 * opt-in indexes (`createWorkspaceStartIndexes`). Before each tick a fixed number of new start builds go
 * the whole path (`writeTickEvents`); then the tick reads, on one connection, what the exporter reads:
 * the first connections since the bound (the family off), then the starts since the same bound (on =
 * both). Per tick: wall and this process's CPU of each read, the start source's `rowsRead` against the
 * events, and `EXPLAIN (ANALYZE, BUFFERS)` of each statement the start source ran (server execution
 * time, sequential scans, rows examined). Medians over the measured ticks; progress on stderr, the
 * Markdown report on stdout and, with the JSON, in `--out`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  changedStartBuildsQuery,
  connectedAgentsQuery,
  createCoderAgentSource,
  createCoderStartSource,
  createWorkspaceStartIndexes,
  dropAwaitingCreatedAtIndex,
  dropFirstConnectedAtIndex,
  dropWorkspaceStartIndexes,
  jobStagesQuery,
  startScriptRunsQuery,
  startsInProgressQuery,
  type CoderDatabase,
} from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import { machineFacts } from './machine.js';
import { progress } from './progress.js';
import { median } from './stats.js';
import { ROWS_PER_TICK_BUILD, removeTickEvents, writeTickEvents } from './starts-events.js';
import { STARTS_TEMPLATES, openStartsDatabase, type StartsSeedMeta } from './starts-seed.js';

export const STARTS_HELP = `Usage: pnpm bench:starts [options]

  --builds LIST       start builds of history per database, e.g. 10k,100k,1M        default 10k,100k,1M
  --events N          new start builds before each tick (each: 7 rows to return)   default 20
  --ticks N           measured ticks per index mode                                default 10
  --warmup N          unmeasured ticks before them                                 default 2
  --interval-ms N     simulated time between ticks                                 default 60000
  --overlap-ms N      the read bound is the previous tick minus this               default 0
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
      warmup: { type: 'string', default: '2' },
      'interval-ms': { type: 'string', default: '60000' },
      'overlap-ms': { type: 'string', default: '0' },
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
  readonly medians: Record<string, number>;
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

async function runMode(
  db: Kysely<CoderDatabase>,
  meta: StartsSeedMeta,
  options: StartsOptions,
  indexes: ModeResult['indexes'],
  firstTick: number,
): Promise<ModeResult> {
  const firstConnections = createCoderAgentSource(db);
  const starts = createCoderStartSource(db);
  const t0 = Date.parse(meta.historyEnd) + 10 * 60_000;
  const ticks: TickFigures[] = [];
  const total = options.warmup + options.ticks;
  for (let i = 0; i < total; i++) {
    const tick = firstTick + i;
    const fromMs = t0 + (tick - 1) * options.intervalMs;
    await writeTickEvents(db, { tick, fromMs, intervalMs: options.intervalMs, builds: options.events, workspaces: meta.workspaces, templates: STARTS_TEMPLATES });
    const since = new Date(fromMs - options.overlapMs);
    const signal = new AbortController().signal;

    let cpu = process.cpuUsage();
    let wall = performance.now();
    await firstConnections.listAgents({ connectedSince: since, signal });
    const firstConnectionWallMs = performance.now() - wall;
    const firstConnectionCpuMs = cpuMs(cpu);

    cpu = process.cpuUsage();
    wall = performance.now();
    const batch = await starts.listStarts({ since, signal });
    const startWallMs = performance.now() - wall;
    const startCpuMs = cpuMs(cpu);
    if (i < options.warmup) continue;

    // The statements the start source ran, with its arguments, again under EXPLAIN.
    const completedJobs = batch.jobs.map((j) => j.jobId);
    const plans = [
      await explain(db, 'changed builds', changedStartBuildsQuery(db, since).compile()),
      await explain(db, 'job stages', jobStagesQuery(db, completedJobs).compile()),
      await explain(db, 'script runs', startScriptRunsQuery(db, since).compile()),
      await explain(db, 'in progress', startsInProgressQuery(db).compile()),
    ];
    const firstConnectionPlan = await explain(db, 'first connections', connectedAgentsQuery(db, since).compile());
    const inProgressRows = batch.inProgress.reduce((n, b) => n + Math.max(1, b.instants.agents.length), 0);
    ticks.push({
      firstConnectionWallMs,
      firstConnectionCpuMs,
      firstConnectionDbMs: firstConnectionPlan.executionMs,
      startWallMs,
      startCpuMs,
      startDbMs: plans.reduce((n, p) => n + p.executionMs, 0),
      rowsRead: batch.rowsRead,
      events: options.events * ROWS_PER_TICK_BUILD + inProgressRows,
      inProgress: batch.inProgress.length,
      startSeqScans: plans.flatMap((p) => p.seqScans),
      startRowsExamined: plans.reduce((n, p) => n + p.rowsExamined, 0),
      plans,
    });
  }
  const m = (pick: (t: TickFigures) => number): number => median(ticks.map(pick));
  return {
    indexes,
    ticks,
    medians: {
      firstConnectionWallMs: m((t) => t.firstConnectionWallMs),
      firstConnectionCpuMs: m((t) => t.firstConnectionCpuMs),
      firstConnectionDbMs: m((t) => t.firstConnectionDbMs),
      startWallMs: m((t) => t.startWallMs),
      startCpuMs: m((t) => t.startCpuMs),
      startDbMs: m((t) => t.startDbMs),
      rowsRead: m((t) => t.rowsRead),
      events: m((t) => t.events),
      rowsPerEvent: m((t) => t.rowsRead / t.events),
      seqScans: m((t) => t.startSeqScans.length),
      rowsExamined: m((t) => t.startRowsExamined),
      inProgress: m((t) => t.inProgress),
      dbOnOverOff: m((t) => (t.firstConnectionDbMs + t.startDbMs) / t.firstConnectionDbMs),
      cpuOnOverOff: m((t) => (t.firstConnectionCpuMs + t.startCpuMs) / t.firstConnectionCpuMs),
    },
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
      const db = createPostgresDb({ connectionString: bench.url, max: 1, application_name: 'agentconn-bench-starts-ticks' });
      const modes: ModeResult[] = [];
      try {
        let tick = 1;
        for (const indexes of options.indexes) {
          progress(`${builds}: ${indexes} indexes`);
          if (indexes === 'opt-in') await createWorkspaceStartIndexes(bench.db);
          else await dropOptInIndexes(bench.db);
          await sql`ANALYZE`.execute(bench.db);
          const mode = await runMode(db, bench.meta, options, indexes, tick);
          tick += options.warmup + options.ticks;
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
  const lines = [
    `pnpm bench:starts: ${options.events} new start builds per tick (${options.events * ROWS_PER_TICK_BUILD} rows to return, plus the starts in progress), ` +
      `${options.ticks} measured ticks after ${options.warmup}, interval ${options.intervalMs / 1000} s, overlap ${options.overlapMs / 1000} s; medians. ` +
      `${machine.cpus} × ${machine.cpuModel}, load average ${machine.loadAverage.toFixed(2)} at the end.`,
    '',
    '| builds | indexes | off: first connections, db ms | start family, db ms | on / off, db | off, client CPU ms | start, client CPU ms | on / off, CPU | start wall ms | rows read | events | rows / event | seq scans per tick | rows examined |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const size of results) {
    for (const mode of size.modes) {
      const m = mode.medians;
      const scans = [...new Set(mode.ticks.flatMap((t) => t.startSeqScans))].join(', ') || 'none';
      lines.push(
        `| ${size.builds.toLocaleString('en-US')} | ${mode.indexes} | ${f(m['firstConnectionDbMs'], 2)} | ${f(m['startDbMs'], 2)} | ${f(m['dbOnOverOff'], 2)} | ` +
          `${f(m['firstConnectionCpuMs'], 2)} | ${f(m['startCpuMs'], 2)} | ${f(m['cpuOnOverOff'], 2)} | ${f(m['startWallMs'], 1)} | ${f(m['rowsRead'], 0)} | ${f(m['events'], 0)} | ` +
          `${f(m['rowsPerEvent'], 2)} | ${f(m['seqScans'], 0)} (${scans}) | ${f(m['rowsExamined'], 0)} |`,
      );
    }
  }
  lines.push('', 'Per statement (median server execution ms / rows examined, last measured tick\'s sequential scans):', '');
  lines.push('| builds | indexes | statement | db ms | rows examined | seq scans |', '|---:|---|---|---:|---:|---|');
  for (const size of results) {
    for (const mode of size.modes) {
      const names = mode.ticks[0]?.plans.map((p) => p.statement) ?? [];
      for (const name of names) {
        const of = mode.ticks.map((t) => t.plans.find((p) => p.statement === name)!);
        lines.push(
          `| ${size.builds.toLocaleString('en-US')} | ${mode.indexes} | ${name} | ${f(median(of.map((p) => p.executionMs)), 2)} | ${f(median(of.map((p) => p.rowsExamined)), 0)} | ${of.at(-1)!.seqScans.join(', ') || 'none'} |`,
        );
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
