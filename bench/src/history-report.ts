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
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql, type Kysely } from 'kysely';
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

/** The report's own statement on the server, `EXPLAIN ANALYZE` with the settings the report's transaction sets. */
async function reportServerMs(db: Kysely<CoderDatabase>, since: string, until: string): Promise<number> {
  const { historySummaryQuery, firstConnectionSamples, firstConnectionDetails } = await import('@agentconn/kysely');
  const sinceDate = new Date(since);
  const untilDate = new Date(until);
  const previous = new Date(sinceDate.getTime() - (untilDate.getTime() - sinceDate.getTime()));
  const query = historySummaryQuery(firstConnectionSamples(db, { from: previous, until: untilDate }), {
    since: sinceDate,
    until: untilDate,
    previousSince: previous,
    stepSeconds: 86_400,
    bucketBoundsMicros: [1, 10, 30, 60, 120, 300, 600, 1800, 3600].map((s) => s * 1_000_000),
    slowest: 5,
    details: firstConnectionDetails(db),
  });
  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)`.execute(trx);
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
        figures.push({
          statementExecMs: statement!.execMs,
          statementWallMs: statement!.wallMs,
          reportWallMs: report!.wallMs,
          reportRssMiB: report!.rssMiB,
          reportServerMs: serverMs,
          samples: statement!.samples,
        });
        progress(`${agents} run ${run + 1}: statement ${statement!.execMs.toFixed(0)} ms (EXPLAIN ANALYZE), report ${report!.wallMs.toFixed(0)} ms, ${report!.rssMiB.toFixed(0)} MiB`);
      }
      const m = (pick: (f: Figures) => number) => median(figures.map(pick));
      lines.push(
        `| ${agents.toLocaleString('en-US')} | ${figures[0]!.samples.toLocaleString('en-US')} | ${m((f) => f.statementExecMs).toFixed(0)} | ${m((f) => f.statementWallMs).toFixed(0)} | ${m((f) => f.reportServerMs).toFixed(0)} | ${m((f) => f.reportWallMs).toFixed(0)} | ${m((f) => f.reportWallMs / f.statementExecMs).toFixed(2)}× | ${m((f) => f.reportRssMiB).toFixed(0)} |`,
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
      '| agents | samples | statement, EXPLAIN ANALYZE (ms) | statement, wall (ms) | report statement, EXPLAIN ANALYZE (ms) | report process, wall (ms) | report / statement | report peak RSS (MiB) |',
      '|---|---|---|---|---|---|---|---|',
      ...lines,
      '',
    ].join('\n'),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:report: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
