/**
 * Orchestrates `pnpm bench`: per population size, one database; per run, each mode in its own process
 * on the same data and the same trickle; EXPLAIN of each mode's query; medians, ratios and checks.
 */
import { fork } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createAwaitingCreatedAtIndex,
  createFirstConnectedAtIndex,
  dropAwaitingCreatedAtIndex,
  dropFirstConnectedAtIndex,
  openBenchDatabase,
  resetTrickle,
  serverFacts,
  type Population,
} from './database.js';
import { explainMode, type ExplainSummary } from './explain.js';
import { BASELINE_MODE, tricklePerTick, type BenchMode, type BenchOptions } from './options.js';
import { progress } from './progress.js';
import { runScrapeBenchmark, type ScrapeResult } from './scrape.js';
import { median, spread, type Spread } from './stats.js';
import type { HistogramTotals, TickRunConfig, TickRunResult, TickSample } from './ticks.js';
import { machineFacts, type MachineFacts } from './machine.js';
import { summariseProfile, writeProfileSummary, type ProfileSummary } from './profile.js';

/** Per-tick figures summarised over the measured ticks. */
export const TICK_METRICS = [
  'wallMs',
  'cpuMs',
  'queryMs',
  'rows',
  'bytesReceived',
  'observed',
  'trackedAgents',
  'series',
] as const satisfies readonly (keyof TickSample)[];
export type TickMetric = (typeof TICK_METRICS)[number];
export type RatioMetric = TickMetric | 'observeOnceBytes' | 'retainedBytes';

/** One mode in one run: its ticks' spreads. */
export interface RunSummary {
  readonly run: number;
  readonly measuredTicks: number;
  readonly ticks: Readonly<Record<TickMetric, Spread>>;
  /** The start tick (Coder PR #24179's restart burst in full-scan and seed modes). */
  readonly startTick: Pick<TickSample, 'wallMs' | 'cpuMs' | 'queryMs' | 'rows' | 'observed'>;
  readonly observeOnceBytes: number;
  readonly metricsBytes: number;
  readonly heapBaselineBytes: number;
  /** Heap after GC after the last tick, minus before the first. */
  readonly retainedBytes: number;
  /** (retained after the last tick − retained at the end of the warm-up) / measured ticks. */
  readonly retainedGrowthPerTickBytes: number;
  readonly observedAfterStart: HistogramTotals;
  /** RSS after the first and the last measured tick (no forced GC in between those). */
  readonly rss: { readonly firstMeasuredBytes: number; readonly lastMeasuredBytes: number; readonly maxBytes: number };
  readonly warnings: number;
  readonly elapsedMs: number;
}

/** One mode over all runs: medians over runs of each run's median and p95. */
export interface ModeSummary {
  readonly mode: BenchMode;
  readonly runs: number;
  readonly ticks: Readonly<Record<TickMetric, { readonly median: number; readonly p95: number; readonly max: number }>>;
  readonly startTick: { readonly wallMs: number; readonly cpuMs: number; readonly rows: number };
  readonly observeOnceBytes: number;
  readonly metricsBytes: number;
  readonly retainedBytes: number;
  readonly retainedGrowthPerTickBytes: number;
  readonly cpuPerRowUs: number;
}

export interface SizeResult {
  readonly agents: number;
  readonly database: { readonly name: string; readonly generated: boolean; readonly kept: boolean };
  readonly population: Population;
  readonly tricklePerTick: number;
  /** Tracked agents an incremental poller may hold in steady state: the overlap window's connections. */
  readonly windowBound: number;
  readonly modes: Partial<Record<BenchMode, { readonly summary: ModeSummary; readonly runs: readonly RunSummary[]; readonly samples: readonly (readonly TickSample[])[] }>>;
  /** ours / baseline, per run then the median over runs, for each mode other than the baseline. */
  readonly ratios: Partial<Record<BenchMode, Readonly<Record<RatioMetric, number>>>>;
  readonly explain: readonly ExplainSummary[];
  readonly checks: readonly Check[];
}

export interface Check {
  readonly name: string;
  readonly pass: boolean;
  readonly detail: string;
}

export interface BenchReport {
  readonly schema: 'agentconn-bench/1';
  readonly runId: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly command: string;
  readonly options: BenchOptions;
  readonly machine: MachineFacts;
  readonly server: Record<string, string>;
  readonly outDir: string;
  readonly sizes: readonly SizeResult[];
  /** With --cpu-prof: where the measured ticks spent their CPU. */
  readonly profiles: readonly (ProfileSummary & { readonly agents: number; readonly mode: BenchMode; readonly run: number })[];
  readonly scrape: ScrapeResult | undefined;
}

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
const TICK_PROCESS = fileURLToPath(new URL('../dist/tick-process.js', import.meta.url));
/** The repository root (bench/..). */
export const REPO_ROOT = resolve(BENCH_DIR, '..');

export async function runBench(options: BenchOptions, command: string): Promise<BenchReport> {
  const startedAt = new Date();
  const runId = startedAt.toISOString().replace(/[:.]/g, '-').replace('Z', '');
  const outDir = resolve(options.out, runId);
  const explainDir = join(outDir, 'explain');
  const profileDir = join(outDir, 'profiles');
  await mkdir(explainDir, { recursive: true });
  if (options.cpuProf) await mkdir(profileDir, { recursive: true });
  progress(`results in ${outDir}`);

  const sizes: SizeResult[] = [];
  const profiles: (ProfileSummary & { agents: number; mode: BenchMode; run: number })[] = [];
  let server: Record<string, string> = {};
  for (const agents of options.agents) {
    const label = `[${formatCount(agents)}]`;
    const c = tricklePerTick(options.trickle, agents);
    const bench = await openBenchDatabase({
      baseUrl: options.databaseUrl,
      agents,
      seed: options.seed,
      keep: options.keep,
      reuse: options.reuse,
      label,
    });
    try {
      server = await serverFacts(bench.db);
      const population = bench.population;
      const needed = c * (options.warmup + options.ticks);
      if (needed > population.pendingAgents) {
        throw new Error(
          `${label} the trickle needs ${needed} never-connected agents (${c} per tick × ${options.warmup + options.ticks} ticks) ` +
            `but the population has ${population.pendingAgents}: lower --ticks, --warmup or --trickle`,
        );
      }
      progress(
        `${label} ${population.currentAgents} current agents (${population.connectedAgents} connected, ${population.pendingAgents} pending), ` +
          `${population.counts.workspaceAgents} agent rows, trickle ${c}/tick`,
      );
      const records = new Map<BenchMode, { runs: RunSummary[]; samples: TickSample[][] }>();
      const explain: ExplainSummary[] = [];
      for (let run = 1; run <= options.runs; run++) {
        for (const mode of options.modes) {
          const modeLabel = `${label} ${mode} run ${run}/${options.runs}`;
          if (mode === 'incremental-index' || mode === 'incremental-index-awaiting') {
            progress(`${label} creating the opt-in index on workspace_agents(first_connected_at)`);
            await createFirstConnectedAtIndex(bench.db);
          }
          if (mode === 'incremental-index-awaiting') await createAwaitingCreatedAtIndex(bench.db);
          try {
            const started = performance.now();
            const result = await runTickProcess(
              {
                label: modeLabel,
                url: bench.url,
                mode,
                t0: population.t0,
                intervalMs: options.intervalMs,
                overlapMs: options.overlapMs,
                tricklePerTick: c,
                warmup: options.warmup,
                ticks: options.ticks,
              },
              options.cpuProf ? { dir: profileDir, name: `${agents}-${mode}-run${run}.cpuprofile` } : undefined,
            );
            const elapsedMs = performance.now() - started;
            const summary = summariseRun(run, result, elapsedMs);
            if (options.cpuProf) {
              const file = join(profileDir, `${agents}-${mode}-run${run}.cpuprofile`);
              const measured = result.samples.filter((s) => s.phase === 'measured').map((s) => s.windowUs);
              const profile = await summariseProfile(file, measured);
              await writeProfileSummary(profile, `${file}.md`);
              profiles.push({ agents, mode, run, ...profile });
              progress(
                `${modeLabel} profile (${(profile.sampledMs / Math.max(1, profile.ticks)).toFixed(2)} ms sampled per tick): ` +
                  profile.byPackage.slice(0, 6).map((e) => `${e.name} ${(e.share * 100).toFixed(0)}%`).join(', '),
              );
            }
            progress(
              `${modeLabel}: cpu ${summary.ticks.cpuMs.median.toFixed(2)} ms, wall ${summary.ticks.wallMs.median.toFixed(2)} ms, ` +
                `rows ${summary.ticks.rows.median}, tracked ${summary.ticks.trackedAgents.max}, ${(elapsedMs / 1000).toFixed(1)} s`,
            );
            const record = records.get(mode) ?? { runs: [], samples: [] };
            record.runs.push(summary);
            record.samples.push([...result.samples]);
            records.set(mode, record);
            if (run === 1 && !options.noExplain) {
              progress(`${label} EXPLAIN (ANALYZE, BUFFERS) ${mode}`);
              explain.push(...(await explainMode(bench.db, mode, result.lastSince, explainDir, `${agents}-${mode}`, result.lastExcludedAgentIds)));
            }
          } finally {
            await resetTrickle(bench.db);
            if (mode === 'incremental-index' || mode === 'incremental-index-awaiting') await dropFirstConnectedAtIndex(bench.db);
            if (mode === 'incremental-index-awaiting') await dropAwaitingCreatedAtIndex(bench.db);
          }
        }
      }
      sizes.push(summariseSize(agents, bench, c, options, records, explain));
    } finally {
      if (options.keep) await bench.close();
      else await bench.drop();
    }
  }

  const scrape = await runScrapeBenchmark(options, REPO_ROOT, outDir);
  return {
    schema: 'agentconn-bench/1',
    runId,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command,
    options,
    machine: machineFacts(),
    server,
    outDir,
    sizes,
    profiles,
    scrape,
  };
}

function runTickProcess(config: TickRunConfig, profile: { dir: string; name: string } | undefined): Promise<TickRunResult> {
  const execArgv = ['--expose-gc', '--max-old-space-size=8192'];
  if (profile !== undefined) execArgv.push('--cpu-prof', '--cpu-prof-interval=50', `--cpu-prof-dir=${profile.dir}`, `--cpu-prof-name=${profile.name}`);
  const child = fork(TICK_PROCESS, [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // Settles when the process has exited, so a --cpu-prof profile is on disk by then.
  return new Promise((resolvePromise, reject) => {
    let message: { ok: true; result: TickRunResult } | { ok: false; error: string } | undefined;
    child.once('message', (m: typeof message) => {
      message = m;
    });
    child.once('exit', (code, signal) => {
      if (message === undefined) reject(new Error(`${config.label}: tick process exited with ${signal ?? code} before reporting`));
      else if (message.ok) resolvePromise(message.result);
      else reject(new Error(`${config.label}: ${message.error}`));
    });
    child.once('error', reject);
    child.send(config);
  });
}

function summariseRun(run: number, result: TickRunResult, elapsedMs: number): RunSummary {
  const measured = result.samples.filter((s) => s.phase === 'measured');
  const start = result.samples[0]!;
  const ticks = Object.fromEntries(TICK_METRICS.map((m) => [m, spread(measured.map((s) => s[m]))])) as Record<TickMetric, Spread>;
  return {
    run,
    measuredTicks: measured.length,
    ticks,
    startTick: { wallMs: start.wallMs, cpuMs: start.cpuMs, queryMs: start.queryMs, rows: start.rows, observed: start.observed },
    observeOnceBytes: result.observeOnceBytes,
    metricsBytes: result.metricsBytes,
    heapBaselineBytes: result.heapBaselineBytes,
    retainedBytes: result.retainedAtEndBytes,
    retainedGrowthPerTickBytes: measured.length === 0 ? 0 : (result.retainedAtEndBytes - result.retainedAtWarmupBytes) / measured.length,
    observedAfterStart: result.observedAfterStart,
    rss: {
      firstMeasuredBytes: measured[0]?.rssBytes ?? 0,
      lastMeasuredBytes: measured.at(-1)?.rssBytes ?? 0,
      maxBytes: Math.max(0, ...result.samples.map((s) => s.rssBytes)),
    },
    warnings: result.warnings,
    elapsedMs,
  };
}

function summariseMode(mode: BenchMode, runs: readonly RunSummary[]): ModeSummary {
  const ticks = Object.fromEntries(
    TICK_METRICS.map((m) => [
      m,
      {
        median: median(runs.map((r) => r.ticks[m].median)),
        p95: median(runs.map((r) => r.ticks[m].p95)),
        max: Math.max(...runs.map((r) => r.ticks[m].max)),
      },
    ]),
  ) as ModeSummary['ticks'];
  return {
    mode,
    runs: runs.length,
    ticks,
    startTick: {
      wallMs: median(runs.map((r) => r.startTick.wallMs)),
      cpuMs: median(runs.map((r) => r.startTick.cpuMs)),
      rows: median(runs.map((r) => r.startTick.rows)),
    },
    observeOnceBytes: median(runs.map((r) => r.observeOnceBytes)),
    metricsBytes: median(runs.map((r) => r.metricsBytes)),
    retainedBytes: median(runs.map((r) => r.retainedBytes)),
    retainedGrowthPerTickBytes: median(runs.map((r) => r.retainedGrowthPerTickBytes)),
    cpuPerRowUs: median(runs.map((r) => (r.ticks.rows.median > 0 ? (r.ticks.cpuMs.median * 1000) / r.ticks.rows.median : Number.NaN))),
  };
}

function summariseSize(
  agents: number,
  bench: { name: string; generated: boolean; population: Population },
  c: number,
  options: BenchOptions,
  records: Map<BenchMode, { runs: RunSummary[]; samples: TickSample[][] }>,
  explain: ExplainSummary[],
): SizeResult {
  const modes: SizeResult['modes'] = {};
  for (const [mode, record] of records) modes[mode] = { summary: summariseMode(mode, record.runs), runs: record.runs, samples: record.samples };

  const ratios: SizeResult['ratios'] = {};
  const baseline = records.get(BASELINE_MODE);
  if (baseline !== undefined) {
    for (const [mode, record] of records) {
      if (mode === BASELINE_MODE) continue;
      const perRun = record.runs.map((r, i) => {
        const b = baseline.runs[i]!;
        const entries = TICK_METRICS.map((m) => [m, r.ticks[m].median / b.ticks[m].median] as const);
        return Object.fromEntries([
          ...entries,
          ['observeOnceBytes', r.observeOnceBytes / b.observeOnceBytes],
          ['retainedBytes', r.retainedBytes / b.retainedBytes],
        ]) as Record<RatioMetric, number>;
      });
      const keys = [...TICK_METRICS, 'observeOnceBytes', 'retainedBytes'] as const;
      ratios[mode] = Object.fromEntries(keys.map((k) => [k, median(perRun.map((r) => r[k]))])) as Record<RatioMetric, number>;
    }
  }

  const windowTicks = Math.ceil(options.overlapMs / options.intervalMs);
  const windowBound = c * (windowTicks + 1) + 1;
  const checks: Check[] = [];
  const expected = c * (options.warmup + options.ticks);
  for (const [mode, record] of records) {
    const counts = record.runs.map((r) => r.observedAfterStart.count);
    checks.push({
      name: `${mode}: observes exactly the trickle after the start tick`,
      pass: counts.every((n) => n === expected),
      detail: `expected ${expected}, observed ${counts.join(', ')}`,
    });
  }
  const referenceMode = records.has(BASELINE_MODE) ? BASELINE_MODE : records.keys().next().value;
  const reference = referenceMode === undefined ? undefined : records.get(referenceMode);
  if (reference !== undefined) {
    const refTotals = reference.runs[0]!.observedAfterStart;
    for (const [mode, record] of records) {
      if (mode === referenceMode && record.runs.length === 1) continue;
      const same = record.runs.every(
        (r) =>
          r.observedAfterStart.buckets.join() === refTotals.buckets.join() &&
          Math.abs(r.observedAfterStart.sum - refTotals.sum) <= 1e-3 * Math.max(1, r.observedAfterStart.count),
      );
      checks.push({
        name: `${mode}: same samples (bucket counts and sum) as ${String(referenceMode)}`,
        pass: same,
        detail: record.runs.map((r) => `count ${r.observedAfterStart.count}, sum ${r.observedAfterStart.sum.toFixed(3)}`).join('; '),
      });
    }
  }
  const full = records.get('full-scan');
  for (const mode of ['incremental-reread', 'incremental', 'incremental-index'] as const) {
    const record = records.get(mode);
    if (record === undefined) continue;
    if (mode !== 'incremental-reread') {
      const rows = median(record.runs.map((r) => r.ticks.rows.median));
      checks.push({
        name: `${mode}: steady rows read per tick <= 1.2x the new first connections`,
        pass: rows <= 1.2 * c,
        detail: `median ${rows} rows for ${c} new per tick (${(rows / c).toFixed(2)}x)`,
      });
    }
    const maxTracked = Math.max(...record.runs.map((r) => r.ticks.trackedAgents.max));
    checks.push({
      name: `${mode}: tracked agents bounded by the overlap window, not the population`,
      pass: maxTracked <= windowBound,
      detail: `max ${maxTracked} <= ${windowBound} (${c}/tick × ${windowTicks + 1} ticks + 1); population ${bench.population.currentAgents}`,
    });
    if (full !== undefined) {
      const ours = Math.max(...record.runs.map((r) => r.ticks.rows.max));
      const theirs = Math.min(...full.runs.map((r) => r.ticks.rows.min));
      checks.push({ name: `${mode}: fewer rows per tick than full-scan`, pass: ours < theirs, detail: `max ${ours} < min ${theirs}` });
    }
  }
  return {
    agents,
    database: { name: bench.name, generated: bench.generated, kept: options.keep },
    population: bench.population,
    tricklePerTick: c,
    windowBound,
    modes,
    ratios,
    explain,
    checks,
  };
}

export function formatCount(n: number): string {
  if (n >= 1_000_000 && n % 1_000_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1000 && n % 1000 === 0) return `${n / 1000}k`;
  return String(n);
}
