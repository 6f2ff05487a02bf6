/**
 * `pnpm bench:report`: `agentconn-exporter report` over 30 days of history on the real server, side by
 * side with the single SQL statement that computes the same percentiles (per template, 30 days,
 * `percentile_cont`), in the same run and in rotation, so that load on a shared machine hits both alike.
 *
 * - `statement`: `EXPLAIN (ANALYZE, FORMAT JSON)` of that statement (its execution time on the server)
 *   and its wall time run plainly from this process;
 * - `report`: the built CLI as a user runs it (`node packages/exporter/dist/cli.js report --format json`),
 *   wall time of the whole process (start, connect, query, render, write) and its peak RSS.
 *
 * The report also computes the period before (the same length again), the trend per day and the slowest
 * per template; the statement only the percentiles of the range. Medians over runs; ratios per run.
 *
 * On a shared machine wall times follow the other work; so each run also runs both statements once more
 * on one connection without parallel workers and reads that server process's CPU time (utime + stime from
 * `/proc/<pid>/stat`, when the server is on this machine): the work each statement costs, which load
 * changes far less.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { CoderDatabase } from '@agentconn/kysely';
import { openBenchDatabase, serverFacts } from './database.js';
import { machineFacts } from './machine.js';
import { progress } from './progress.js';
import { median } from './stats.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The bin users run. */
const CLI = join(REPO, 'packages', 'exporter', 'bin', 'agentconn-exporter.js');
/** Prints the process's peak RSS on exit, for a child we only spawn. */
const RSS_HOOK = `data:text/javascript,process.on('exit',()=>process.stderr.write('\\nmaxrss_kib='+process.resourceUsage().maxRSS+'\\n'))`;
const DAY_MS = 86_400_000;

interface Figures {
  readonly statementExecMs: number;
  readonly statementWallMs: number;
  readonly reportWallMs: number;
  readonly reportRssMiB: number;
  readonly reportServerMs: number;
  readonly samples: number;
  /** Server CPU time without parallel workers; undefined when the server's processes cannot be read. */
  readonly statementCpuMs: number | undefined;
  readonly reportCpuMs: number | undefined;
}

/** CPU time (user + system) of a local server process, ms; undefined when it is not readable here. */
function processCpuMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * Runs `statement` on one connection in a transaction with `settings` and no parallel workers; returns the
 * CPU time its server process spent on it.
 */
async function serverCpuMs(db: Kysely<CoderDatabase>, statement: RawBuilder<unknown>, settings: Readonly<Record<string, string>>): Promise<number | undefined> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
    for (const [name, value] of Object.entries({ ...settings, max_parallel_workers_per_gather: '0' })) {
      await sql`SELECT set_config(${name}, ${value}, true)`.execute(trx);
    }
    const pid = rows[0]!.pid;
    const before = processCpuMs(pid);
    await statement.execute(trx);
    const after = processCpuMs(pid);
    return before === undefined || after === undefined ? undefined : after - before;
  });
}

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (match === null) throw new Error(`--agents: "${text}" is not a size (100k, 1M)`);
  const unit = match[2]?.toLowerCase() === 'k' ? 1e3 : match[2]?.toLowerCase() === 'm' ? 1e6 : 1;
  return Math.round(Number(match[1]) * unit);
}

/** The single statement: exact percentiles per template over the range, the exporter's population. */
function percentilesStatement(since: string, until: string) {
  return sql<{ template_name: string; count: string }>`SELECT t.name AS template_name, count(*) AS count,
      percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM wa.first_connected_at - wa.created_at)::float8) AS quantiles
    FROM workspaces w
    JOIN users u ON w.owner_id = u.id
    JOIN templates t ON w.template_id = t.id
    JOIN workspace_builds wb ON w.id = wb.workspace_id
    LEFT JOIN template_versions tv ON wb.template_version_id = tv.id
    JOIN workspace_resources wr ON wb.job_id = wr.job_id
    JOIN workspace_agents wa ON wr.id = wa.resource_id
    WHERE w.deleted = false AND wa.deleted = false
      AND NOT EXISTS (SELECT 1 FROM workspace_builds wb2 WHERE wb2.workspace_id = wb.workspace_id AND wb2.build_number > wb.build_number)
      AND wa.first_connected_at >= ${since}::timestamptz AND wa.first_connected_at < ${until}::timestamptz
      AND wa.first_connected_at >= wa.created_at
    GROUP BY t.name`;
}

async function measureStatement(db: Kysely<CoderDatabase>, since: string, until: string): Promise<{ execMs: number; wallMs: number; samples: number }> {
  const statement = percentilesStatement(since, until);
  const { rows } = await sql<{ 'QUERY PLAN': [{ 'Execution Time': number }] }>`EXPLAIN (ANALYZE, FORMAT JSON) ${statement}`.execute(db);
  const execMs = rows[0]!['QUERY PLAN'][0]['Execution Time'];
  const started = performance.now();
  const result = await statement.execute(db);
  const wallMs = performance.now() - started;
  return { execMs, wallMs, samples: result.rows.reduce((n, r) => n + Number(r.count), 0) };
}

function runReport(url: string, since: string, until: string): Promise<{ wallMs: number; rssMiB: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(
      process.execPath,
      ['--import', RSS_HOOK, CLI, 'report', '--database-url', url, '--format', 'json', '--since', since, '--until', until, '--step', '1d', '--statement-timeout', '10m'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const wallMs = performance.now() - started;
      const rss = /maxrss_kib=(\d+)/.exec(stderr);
      if (code !== 0 || rss === null) reject(new Error(`report exited ${code}: ${stderr.trim()}`));
      else resolve({ wallMs, rssMiB: Number(rss[1]) / 1024 });
    });
  });
}

/** The settings the report's transaction sets (see the report's command). */
const REPORT_SETTINGS = { jit_inline_above_cost: '-1', jit_optimize_above_cost: '-1' } as const;

/** The report's own statement, as the report builds it for the first connection over the range. */
async function reportStatement(db: Kysely<CoderDatabase>, since: string, until: string): Promise<RawBuilder<unknown>> {
  const { historySummaryQuery, firstConnectionSamples, firstConnectionDetails } = await import('@agentconn/kysely');
  const sinceDate = new Date(since);
  const untilDate = new Date(until);
  const previous = new Date(sinceDate.getTime() - (untilDate.getTime() - sinceDate.getTime()));
  return historySummaryQuery(firstConnectionSamples(db, { from: previous, until: untilDate }), {
    since: sinceDate,
    until: untilDate,
    previousSince: previous,
    stepSeconds: 86_400,
    bucketBoundsMicros: [1, 10, 30, 60, 120, 300, 600, 1800, 3600].map((s) => s * 1_000_000),
    slowest: 5,
    details: firstConnectionDetails(db),
  });
}

/** The report's own statement on the server, `EXPLAIN ANALYZE` with the settings the report's transaction sets. */
async function reportServerMs(db: Kysely<CoderDatabase>, since: string, until: string): Promise<number> {
  const query = await reportStatement(db, since, until);
  return db.transaction().execute(async (trx) => {
    for (const [name, value] of Object.entries(REPORT_SETTINGS)) await sql`SELECT set_config(${name}, ${value}, true)`.execute(trx);
    const { rows } = await sql<{ 'QUERY PLAN': [{ 'Execution Time': number }] }>`EXPLAIN (ANALYZE, FORMAT JSON) ${query}`.execute(trx);
    return rows[0]!['QUERY PLAN'][0]['Execution Time'];
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string', default: '100k,1M' },
      runs: { type: 'string', default: '3' },
      seed: { type: 'string', default: '27' },
      'database-url': { type: 'string' },
      drop: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'Usage: pnpm bench:report [--agents 100k,1M] [--runs 3] [--seed 27] [--database-url URL] [--drop]\n' +
        'The databases are kept (agentconn_bench_<agents>_s<seed>) and reused; --drop removes them at the end.\n',
    );
    return;
  }
  const baseUrl = values['database-url'] ?? process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const sizes = values.agents.split(',').map(parseSize);
  const runs = Number(values.runs);
  const seed = Number(values.seed);
  const machine = machineFacts();
  const lines: string[] = [];
  for (const agents of sizes) {
    const bench = await openBenchDatabase({ baseUrl, agents, seed, keep: true, reuse: true, label: `${agents}` });
    try {
      const facts = await serverFacts(bench.db);
      // The generated history ends before t0; 30 days back from there.
      const until = bench.population.t0;
      const since = new Date(Date.parse(until) - 30 * DAY_MS).toISOString();
      const figures: Figures[] = [];
      for (let run = 0; run < runs; run++) {
        const order = run % 2 === 0 ? ['statement', 'report'] : ['report', 'statement'];
        let statement: { execMs: number; wallMs: number; samples: number } | undefined;
        let report: { wallMs: number; rssMiB: number } | undefined;
        for (const what of order) {
          progress(`${agents} run ${run + 1}/${runs}: ${what}`);
          if (what === 'statement') statement = await measureStatement(bench.db, since, until);
          else report = await runReport(bench.url, since, until);
        }
        const serverMs = await reportServerMs(bench.db, since, until);
        // The statement as a user runs it (the server's settings), the report's with its own.
        const statementCpuMs = await serverCpuMs(bench.db, percentilesStatement(since, until), {});
        const reportCpuMs = await serverCpuMs(bench.db, await reportStatement(bench.db, since, until), REPORT_SETTINGS);
        figures.push({
          statementExecMs: statement!.execMs,
          statementWallMs: statement!.wallMs,
          reportWallMs: report!.wallMs,
          reportRssMiB: report!.rssMiB,
          reportServerMs: serverMs,
          samples: statement!.samples,
          statementCpuMs,
          reportCpuMs,
        });
        progress(`${agents} run ${run + 1}: statement ${statement!.execMs.toFixed(0)} ms (EXPLAIN ANALYZE), report ${report!.wallMs.toFixed(0)} ms, ${report!.rssMiB.toFixed(0)} MiB`);
      }
      const m = (pick: (f: Figures) => number) => median(figures.map(pick));
      const cpu = figures.every((f) => f.statementCpuMs !== undefined && f.reportCpuMs !== undefined);
      const cpuCells = cpu
        ? `${m((f) => f.statementCpuMs!).toFixed(0)} | ${m((f) => f.reportCpuMs!).toFixed(0)} | ${m((f) => f.reportCpuMs! / f.statementCpuMs!).toFixed(2)}×`
        : '– | – | –';
      lines.push(
        `| ${agents.toLocaleString('en-US')} | ${figures[0]!.samples.toLocaleString('en-US')} | ${m((f) => f.statementExecMs).toFixed(0)} | ${m((f) => f.statementWallMs).toFixed(0)} | ${m((f) => f.reportServerMs).toFixed(0)} | ${m((f) => f.reportWallMs).toFixed(0)} | ${m((f) => f.reportWallMs / f.statementExecMs).toFixed(2)}× (runs: ${figures.map((f) => (f.reportWallMs / f.statementExecMs).toFixed(2)).join(', ')}) | ${cpuCells} | ${m((f) => f.reportRssMiB).toFixed(0)} |`,
      );
      progress(`server ${JSON.stringify(facts)}`);
    } finally {
      if (values.drop) await bench.drop();
      else await bench.close();
    }
  }
  process.stdout.write(
    [
      `report over 30 days, ${runs} runs, medians; ${machine.cpus} × ${machine.cpuModel}, load average ${machine.loadAverage.toFixed(2)} at the end`,
      '',
      '| agents | samples | statement, EXPLAIN ANALYZE (ms) | statement, wall (ms) | report statement, EXPLAIN ANALYZE (ms) | report process, wall (ms) | report / statement | statement, server CPU (ms) | report statement, server CPU (ms) | CPU ratio | report peak RSS (MiB) |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...lines,
      '',
    ].join('\n'),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:report: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
