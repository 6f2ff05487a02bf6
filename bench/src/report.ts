/** The bench's Markdown report and its verdicts on the project's performance targets. */
import { BASELINE_MODE, MODE_DESCRIPTIONS, MODES, type BenchMode } from './options.js';
import { formatCount, type BenchReport } from './runner.js';
import { median } from './stats.js';

/** Target: a steady-state tick at 100k agents under this much CPU in our process. */
export const TARGET_CPU_MS_AT_100K = 5;
/** "Flat": the largest population's CPU per tick within this factor of the smallest's, at a fixed trickle. */
export const FLAT_FACTOR = 2;
const OURS: readonly BenchMode[] = ['incremental', 'incremental-index'];

export interface TargetVerdict {
  readonly target: string;
  /** A bench mode, or the scrape benchmark's variant. */
  readonly mode: BenchMode | `scrape: ${string}`;
  /** undefined: not measurable from this run (e.g. 100k not among the sizes). */
  readonly pass: boolean | undefined;
  readonly value: string;
}

export function targetVerdicts(report: BenchReport): TargetVerdict[] {
  const verdicts: TargetVerdict[] = [];
  const at100k = report.sizes.find((s) => s.agents === 100_000);
  const sorted = [...report.sizes].sort((a, b) => a.agents - b.agents);
  const smallest = sorted[0];
  const largest = sorted.at(-1);
  const fixedTrickle = report.options.trickle >= 1;
  for (const mode of OURS) {
    if (!report.options.modes.includes(mode)) continue;
    const cpu = at100k?.modes[mode]?.summary.ticks.cpuMs;
    verdicts.push({
      target: `steady-state tick CPU at 100k agents < ${TARGET_CPU_MS_AT_100K} ms`,
      mode,
      pass: cpu === undefined ? undefined : cpu.median < TARGET_CPU_MS_AT_100K,
      value: cpu === undefined ? 'not measured (100k not among --agents)' : `median ${fmtMs(cpu.median)} ms, p95 ${fmtMs(cpu.p95)} ms (trickle ${at100k!.tricklePerTick}/min)`,
    });
    if (smallest !== undefined && largest !== undefined && largest.agents > smallest.agents) {
      const a = smallest.modes[mode]?.summary;
      const b = largest.modes[mode]?.summary;
      if (a !== undefined && b !== undefined) {
        const cpuRatio = b.ticks.cpuMs.median / a.ticks.cpuMs.median;
        const rowsRatio = b.ticks.rows.median / a.ticks.rows.median;
        const population = `${formatCount(smallest.agents)} → ${formatCount(largest.agents)}`;
        verdicts.push({
          target: `CPU per tick flat in the population (${population})`,
          mode,
          pass: fixedTrickle ? cpuRatio < FLAT_FACTOR : undefined,
          value: fixedTrickle
            ? `CPU ×${cpuRatio.toFixed(2)} for population ×${(largest.agents / smallest.agents).toFixed(0)} at ${report.options.trickle} connections/min`
            : `CPU ×${cpuRatio.toFixed(2)}, rows ×${rowsRatio.toFixed(1)}: the trickle is ${report.options.trickle * 100}% of the population, ` +
              `so rows grow with it; CPU per row ${fmtMs(a.cpuPerRowUs)} → ${fmtMs(b.cpuPerRowUs)} µs (run with a fixed --trickle count to test flatness)`,
        });
      }
    }
    const bounded = report.sizes.map((s) => {
      const m = s.modes[mode];
      return m === undefined ? undefined : { s, tracked: Math.max(...m.runs.map((r) => r.ticks.trackedAgents.max)), bytes: m.summary.observeOnceBytes };
    });
    const known = bounded.filter((b) => b !== undefined);
    if (known.length > 0) {
      verdicts.push({
        target: 'retained observe-once state bounded by the overlap window, independent of the population',
        mode,
        pass: known.every((b) => b.tracked <= b.s.windowBound),
        value: known
          .map((b) => `${formatCount(b.s.agents)}: ${b.tracked} ids (bound ${b.s.windowBound}), ${fmtMb(b.bytes)} MB`)
          .join('; '),
      });
    }
  }
  verdicts.push(...scrapeVerdicts(report));
  return verdicts;
}

/** The /metrics targets, from the scrape benchmark's figures for our serializer. */
export const SCRAPE_TARGETS_MS: Readonly<Record<number, number>> = { 10_000: 100, 100_000: 1000 };
export const SCRAPE_TARGET_PEAK_RSS_BYTES = 1e9;

function scrapeVerdicts(report: BenchReport): TargetVerdict[] {
  const rows = scrapeRows(report);
  const verdicts: TargetVerdict[] = [];
  for (const row of rows.filter((r) => r.variant === 'ours')) {
    const limit = SCRAPE_TARGETS_MS[row.series];
    if (limit === undefined) continue;
    verdicts.push({
      target: `/metrics at ${formatCount(row.series)} series < ${limit} ms, peak RSS < 1 GB`,
      mode: 'scrape: ours',
      pass: row.medianMs < limit && row.peakRssBytes < SCRAPE_TARGET_PEAK_RSS_BYTES,
      value: `median ${fmtMs(row.medianMs)} ms, peak RSS ${fmtMb(row.peakRssBytes)} MB`,
    });
  }
  // Exemplars on: OpenMetrics with exemplars beside the text format, one process scraped in rotation.
  for (const om of rows.filter((r) => r.variant === 'exemplars:openmetrics')) {
    const text = rows.find((r) => r.variant === 'exemplars:text' && r.series === om.series);
    if (text === undefined) continue;
    const ratio = om.medianMs / text.medianMs;
    verdicts.push({
      target: `/metrics at ${formatCount(om.series)} series: OpenMetrics with exemplars < 2× the text format`,
      mode: 'scrape: exemplars',
      pass: ratio < EXEMPLAR_SCRAPE_RATIO_LIMIT,
      value: `${fmtMs(om.medianMs)} ms vs ${fmtMs(text.medianMs)} ms (×${ratio.toFixed(2)})`,
    });
  }
  return verdicts;
}

/** Exemplars must not double the scrape time. */
export const EXEMPLAR_SCRAPE_RATIO_LIMIT = 2;

interface ScrapeRow {
  readonly series: number;
  readonly variant: string;
  readonly medianMs: number;
  readonly bodyBytes: number;
  readonly peakRssBytes: number;
  readonly runs: number | undefined;
}

/** The scrape benchmark's entries, when they have the shape of exposition.bench.mjs's JSON. */
function scrapeRows(report: BenchReport): ScrapeRow[] {
  const results = report.scrape?.results;
  if (!Array.isArray(results)) return [];
  const rows = results as Record<string, unknown>[];
  const known = rows.every((r) => typeof r['series'] === 'number' && typeof r['variant'] === 'string' && typeof r['medianMs'] === 'number');
  if (!known) return [];
  return rows.map((r) => ({
    series: r['series'] as number,
    variant: r['variant'] as string,
    medianMs: r['medianMs'] as number,
    bodyBytes: Number(r['bodyBytes']),
    peakRssBytes: Number(r['peakRssBytes']),
    runs: typeof r['runs'] === 'number' ? r['runs'] : undefined,
  }));
}

export function renderMarkdown(report: BenchReport): string {
  const o = report.options;
  const m = report.machine;
  const lines: string[] = [];
  lines.push('# agentconn tick benchmark');
  lines.push('');
  lines.push(`- date: ${report.startedAt} (run id ${report.runId}), ${((Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 60_000).toFixed(1)} min`);
  lines.push(`- machine: ${m.cpus} × ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, ${m.os}, Node ${m.node}, load average at the end ${m.loadAverage.toFixed(2)}`);
  lines.push(
    `- PostgreSQL ${report.server['server_version'] ?? '?'} on the same machine: shared_buffers ${report.server['shared_buffers'] ?? '?'}, ` +
      `work_mem ${report.server['work_mem'] ?? '?'}, max_parallel_workers_per_gather ${report.server['max_parallel_workers_per_gather'] ?? '?'}, jit ${report.server['jit'] ?? '?'}`,
  );
  lines.push(`- command: \`${report.command}\``);
  lines.push(
    `- ${o.ticks} measured ticks per mode and run after the start tick and ${o.warmup} warm-up ticks; ${o.runs} run(s); ` +
      `simulated ${o.intervalMs / 1000} s between ticks; overlap ${o.overlapMs / 1000} s; trickle ${o.trickle >= 1 ? `${o.trickle}` : `${o.trickle * 100}% of the agents`} per simulated minute`,
  );
  lines.push('');
  lines.push('Modes:');
  for (const mode of MODES) if (o.modes.includes(mode)) lines.push(`- \`${mode}\`${mode === BASELINE_MODE ? ' (baseline)' : ''}: ${MODE_DESCRIPTIONS[mode]}`);
  lines.push('');

  lines.push('## Population');
  lines.push('');
  lines.push('| agents | agent rows | current agents | connected (history) | pending pool | trickle / tick | workspace_agents size | generated in |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of report.sizes) {
    const p = s.population;
    lines.push(
      `| ${formatCount(s.agents)} | ${p.counts.workspaceAgents} | ${p.currentAgents} | ${p.connectedAgents} | ${p.pendingAgents} | ${s.tricklePerTick} | ` +
        `${fmtMb(p.agentsTableBytes)} MB | ${s.database.generated ? `${(p.generationMs / 1000).toFixed(0)} s` : 'reused'} |`,
    );
  }
  lines.push('');

  lines.push('## Steady-state tick');
  lines.push('');
  lines.push(
    [
      'Median over the measured ticks, then the median over runs; p95 in parentheses.',
      'CPU is `process.cpuUsage()` of the process running the poller (user + system, all its threads);',
      'query is the time inside `source.listAgents` (round trips and row parsing);',
      'heap retained is the heap after a forced GC after the last tick minus the same before the first (growth: its change per measured tick);',
      'observe-once state is the heap freed by emptying it at the end,',
      'metrics SDK the heap freed by then dropping the MeterProvider (its series) and the poller;',
      'series are the histogram\'s at each collection.',
    ].join(' '),
  );
  lines.push('');
  lines.push('| agents | mode | rows / tick | received KB | query ms | wall ms | CPU ms | CPU µs / row | heap retained MB | growth KB / tick | observe-once state MB | metrics SDK MB | tracked ids (max) | series | start tick wall / CPU ms |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of report.sizes) {
    for (const mode of MODES) {
      const entry = s.modes[mode];
      if (entry === undefined) continue;
      const t = entry.summary.ticks;
      lines.push(
        `| ${formatCount(s.agents)} | ${mode} | ${fmtInt(t.rows.median)} | ${fmtKb(t.bytesReceived.median)} | ${fmtMs(t.queryMs.median)} (${fmtMs(t.queryMs.p95)}) | ` +
          `${fmtMs(t.wallMs.median)} (${fmtMs(t.wallMs.p95)}) | **${fmtMs(t.cpuMs.median)}** (${fmtMs(t.cpuMs.p95)}) | ${fmtMs(entry.summary.cpuPerRowUs)} | ` +
          `${fmtMb(entry.summary.retainedBytes)} | ${fmtKb(entry.summary.retainedGrowthPerTickBytes)} | ${fmtMb(entry.summary.observeOnceBytes)} | ${fmtMb(entry.summary.metricsBytes)} | ${fmtInt(t.trackedAgents.median)} (${fmtInt(t.trackedAgents.max)}) | ${fmtInt(t.series.median)} | ` +
          `${fmtMs(entry.summary.startTick.wallMs)} / ${fmtMs(entry.summary.startTick.cpuMs)} |`,
      );
    }
  }
  lines.push('');

  lines.push('## Rows read per tick against the new connections, RSS and the first poll');
  lines.push('');
  lines.push(`Rows: median over the measured ticks, then over runs, divided by the ${'`'}trickle${'`'} of new first connections per tick. RSS (\`process.memoryUsage.rss()\`, no forced GC) after the first and the last measured tick, medians over runs; the ticks run back to back on the simulated clock, ${o.ticks} measured ticks after ${o.warmup} warm-up ticks. First poll: the start tick (for \`full-scan\` the whole history: a \`--backfill all\` poll), median over runs.`);
  lines.push('');
  lines.push('| agents | interval | mode | new / tick | rows / tick | rows / new | RSS first → last measured MB | RSS max MB | first poll wall / CPU ms | first poll rows |');
  lines.push('|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of report.sizes) {
    for (const mode of MODES) {
      const entry = s.modes[mode];
      if (entry === undefined) continue;
      const rows = entry.summary.ticks.rows.median;
      const runs = entry.runs;
      const rssFirst = median(runs.map((r) => r.rss.firstMeasuredBytes));
      const rssLast = median(runs.map((r) => r.rss.lastMeasuredBytes));
      const rssMax = median(runs.map((r) => r.rss.maxBytes));
      lines.push(
        `| ${formatCount(s.agents)} | ${o.intervalMs / 1000} s | ${mode} | ${fmtInt(s.tricklePerTick)} | ${fmtInt(rows)} | ${(rows / s.tricklePerTick).toFixed(2)} | ` +
          `${fmtMb(rssFirst)} → ${fmtMb(rssLast)} | ${fmtMb(rssMax)} | ${fmtMs(median(runs.map((r) => r.startTick.wallMs)))} / ${fmtMs(median(runs.map((r) => r.startTick.cpuMs)))} | ${fmtInt(median(runs.map((r) => r.startTick.rows)))} |`,
      );
    }
  }
  lines.push('');

  if (report.sizes.some((s) => Object.keys(s.ratios).length > 0)) {
    lines.push(`## Ours / baseline (\`${BASELINE_MODE}\`), same run`);
    lines.push('');
    lines.push('Each run\'s median divided by the baseline\'s median in the same run, then the median over runs.');
    lines.push('');
    lines.push('| agents | mode | CPU | wall | query | rows | received bytes | heap retained | observe-once state | tracked ids |');
    lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of report.sizes) {
      for (const mode of MODES) {
        const r = s.ratios[mode];
        if (r === undefined) continue;
        lines.push(
          `| ${formatCount(s.agents)} | ${mode} | ${fmtRatio(r.cpuMs)} | ${fmtRatio(r.wallMs)} | ${fmtRatio(r.queryMs)} | ${fmtRatio(r.rows)} | ${fmtRatio(r.bytesReceived)} | ` +
            `${fmtRatio(r.retainedBytes)} | ${fmtRatio(r.observeOnceBytes)} | ${fmtRatio(r.trackedAgents)} |`,
        );
      }
    }
    lines.push('');
  }

  if (report.sizes.some((s) => s.explain.length > 0)) {
    lines.push('## EXPLAIN (ANALYZE, BUFFERS) of each mode\'s query');
    lines.push('');
    lines.push(
      [
        'Run once per mode after its first run\'s last tick (the incremental query with its last lower bound); full plans in `explain/`.',
        'Buffers are 8 KiB pages over the whole plan: hit = in shared_buffers, read = from the OS (page cache or disk).',
      ].join(' '),
    );
    lines.push('');
    lines.push('| agents | mode | workspace_agents read by | rows removed by filter | plan nodes | workers | JIT | execution ms | planning ms | shared hit | shared read | rows |');
    lines.push('|---:|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|');
    for (const s of report.sizes) {
      for (const e of s.explain) {
        lines.push(
          `| ${formatCount(s.agents)} | ${e.mode}${e.query === 'agents' ? '' : ` (${e.query})`} | ${e.agentsAccess} | ${fmtInt(e.agentsRowsRemoved)} | ${e.nodes} | ${e.workersLaunched} | ${e.jit ? 'yes' : 'no'} | ` +
            `${fmtMs(e.executionMs)} | ${fmtMs(e.planningMs)} | ${fmtInt(e.sharedHit)} | ${fmtInt(e.sharedRead)} | ${fmtInt(e.rows)} |`,
        );
      }
    }
    lines.push('');
  }

  const verdicts = targetVerdicts(report);
  if (verdicts.length > 0) {
    lines.push('## Targets');
    lines.push('');
    lines.push("Coder PR #24179's own map work (Go) for reference: 100k agents 24–44 ms/tick and 2.8 MB retained; 1M agents 460–800 ms/tick and 40 MB.");
    lines.push('');
    lines.push('| target | mode | verdict | measured |');
    lines.push('|---|---|---|---|');
    for (const v of verdicts) lines.push(`| ${v.target} | ${v.mode} | ${v.pass === undefined ? 'n/a' : v.pass ? 'met' : '**missed**'} | ${v.value} |`);
    lines.push('');
  }

  lines.push('## Checks');
  lines.push('');
  for (const s of report.sizes) {
    for (const c of s.checks) lines.push(`- ${c.pass ? 'ok' : '**FAILED**'} [${formatCount(s.agents)}] ${c.name}: ${c.detail}`);
  }
  lines.push('');

  lines.push(...renderScrape(report));
  return lines.join('\n');
}

function renderScrape(report: BenchReport): string[] {
  const scrape = report.scrape;
  const lines: string[] = ['## /metrics scrape'];
  lines.push('');
  if (scrape === undefined) {
    lines.push(report.options.scrape === 'off' ? 'Not run (`--scrape off`).' : 'Not run: no scrape benchmark script in this checkout (`packages/exposition/bench/exposition.bench.mjs`).');
    lines.push('');
    return lines;
  }
  lines.push(`\`node ${scrape.script} ${scrape.args.join(' ')}\` (${(scrape.elapsedMs / 1000).toFixed(0)} s)${scrape.error === undefined ? '' : `: **${scrape.error}**`}`);
  lines.push('');
  const rows = scrapeRows(report);
  if (rows.length > 0) {
    lines.push('| series | variant | scrape median ms | body MB | peak RSS MB | runs |');
    lines.push('|---:|---|---:|---:|---:|---:|');
    for (const r of rows) {
      lines.push(`| ${formatCount(r.series)} | ${r.variant} | ${fmtMs(r.medianMs)} | ${fmtMb(r.bodyBytes)} | ${fmtMb(r.peakRssBytes)} | ${r.runs ?? ''} |`);
    }
  } else if (scrape.results !== undefined) {
    lines.push('```json');
    lines.push(JSON.stringify(scrape.results, null, 2));
    lines.push('```');
  }
  lines.push('');
  return lines;
}

export function fmtMs(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (Math.abs(value) < 10) return value.toFixed(2);
  if (Math.abs(value) < 100) return value.toFixed(1);
  return value.toFixed(0);
}

function fmtInt(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value)) : '–';
}

function fmtKb(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / 1024).toFixed(bytes < 10_240 ? 1 : 0) : '–';
}

function fmtMb(bytes: number): string {
  if (!Number.isFinite(bytes)) return '–';
  const mb = bytes / 1e6;
  return Math.abs(mb) < 10 ? mb.toFixed(2) : mb.toFixed(1);
}

function fmtRatio(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (value === 0) return '0';
  return value < 0.01 ? value.toPrecision(2) : value.toFixed(value < 1 ? 3 : 2);
}
