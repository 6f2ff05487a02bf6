/**
 * `pnpm bench` end to end at a tiny size on the real PostgreSQL server: the compiled CLI generates a
 * database, runs every mode, writes its report, and the report holds the invariants the comparison
 * rests on. Timings are never asserted: performance targets live in `pnpm bench`, not in tests.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const MAIN = join(REPO, 'bench/dist/main.js');
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const INDEX_NAME = 'agentconn_workspace_agents_first_connected_at_idx';

const AGENTS = 2000;
const WARMUP = 2;
const TICKS = 3;
/**
 * Three runs, so that each mode's figures are medians, as in `pnpm bench`: the observe-once bytes are a heap
 * difference around a forced GC, which a single run on a loaded machine can turn negative.
 */
const RUNS = 3;
const MODES = ['seed', 'full-scan', 'incremental-reread', 'incremental', 'incremental-index'] as const;

interface Summary {
  ticks: Record<'wallMs' | 'cpuMs' | 'queryMs' | 'rows' | 'bytesReceived' | 'observed' | 'trackedAgents' | 'series', { median: number; p95: number; max: number }>;
  retainedBytes: number;
  observeOnceBytes: number;
}
interface Run {
  observedAfterStart: { count: number; sum: number; buckets: number[] };
  ticks: Summary['ticks'];
}
interface Report {
  schema: string;
  sizes: {
    agents: number;
    database: { name: string; kept: boolean };
    population: { currentAgents: number; connectedAgents: number; pendingAgents: number };
    tricklePerTick: number;
    windowBound: number;
    modes: Record<string, { summary: Summary; runs: Run[]; samples: { phase: string; rows: number; trickled: number }[][] }>;
    ratios: Record<string, Record<string, number>>;
    explain: { mode: string; agentsAccess: string; executionMs: number; sharedHit: number; textFile: string }[];
    checks: { name: string; pass: boolean; detail: string }[];
  }[];
  targets: { target: string; mode: string }[];
}

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--expose-gc', MAIN, ...args], { cwd: REPO, encoding: 'utf8', timeout: 240_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('pnpm bench', () => {
  let out: string;
  let report: Report;
  let markdown: string;
  let stdout: string;

  beforeAll(() => {
    // `pnpm test` builds first; build here too so a direct `vitest run` never runs a stale bench.
    const build = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-b', 'bench'], { cwd: REPO, encoding: 'utf8' });
    expect(build.status, build.stdout + build.stderr).toBe(0);
    out = mkdtempSync(join(tmpdir(), 'agentconn-bench-test-'));
    const run = runCli([
      '--agents', String(AGENTS),
      '--ticks', String(TICKS),
      '--warmup', String(WARMUP),
      '--runs', String(RUNS),
      '--modes', MODES.join(','),
      '--database-url', DATABASE_URL,
      '--scrape', 'off',
      '--out', out,
    ]);
    expect(run.status, run.stderr).toBe(0);
    stdout = run.stdout;
    const [runDir] = readdirSync(out);
    report = JSON.parse(readFileSync(join(out, runDir!, 'results.json'), 'utf8')) as Report;
    markdown = readFileSync(join(out, runDir!, 'results.md'), 'utf8');
  }, 240_000);

  afterAll(() => {
    if (out !== undefined) rmSync(out, { recursive: true, force: true });
  });

  it('writes the JSON and Markdown report, and prints the Markdown', () => {
    expect(report.schema).toBe('agentconn-bench/1');
    expect(report.sizes).toHaveLength(1);
    expect(report.sizes[0]!.agents).toBe(AGENTS);
    expect(stdout.trim()).toBe(markdown.trim());
    for (const heading of ['## Population', '## Steady-state tick', '## Ours / baseline (`full-scan`), same run', '## EXPLAIN (ANALYZE, BUFFERS)', '## Targets', '## Checks']) {
      expect(markdown).toContain(heading);
    }
    for (const mode of MODES) expect(markdown).toMatch(new RegExp(`\\| 2k \\| ${mode} \\|`));
  });

  it('measures every mode on every measured tick', () => {
    const size = report.sizes[0]!;
    for (const mode of MODES) {
      const entry = size.modes[mode]!;
      expect(entry, mode).toBeDefined();
      const samples = entry.samples[0]!;
      expect(samples.map((s) => s.phase)).toEqual(['start', ...Array(WARMUP).fill('warmup'), ...Array(TICKS).fill('measured')]);
      expect(samples.slice(1).every((s) => s.trickled === size.tricklePerTick)).toBe(true);
      for (const [metric, value] of Object.entries(entry.summary.ticks)) {
        expect(Number.isFinite(value.median), `${mode} ${metric}`).toBe(true);
      }
      expect(entry.summary.ticks.wallMs.median).toBeGreaterThan(0);
      expect(entry.summary.ticks.cpuMs.median).toBeGreaterThan(0);
      expect(entry.summary.ticks.queryMs.median).toBeLessThanOrEqual(entry.summary.ticks.wallMs.median);
      expect(entry.summary.ticks.bytesReceived.median).toBeGreaterThan(0);
      expect(Number.isFinite(entry.summary.retainedBytes)).toBe(true);
    }
    for (const mode of ['seed', 'incremental', 'incremental-index']) {
      expect(Number.isFinite(size.ratios[mode]!['cpuMs']), mode).toBe(true);
    }
  });

  it('every mode observes exactly the trickle after the start tick, the same samples', () => {
    const size = report.sizes[0]!;
    const expected = size.tricklePerTick * (WARMUP + TICKS);
    const reference = size.modes['full-scan']!.runs[0]!.observedAfterStart;
    expect(reference.count).toBe(expected);
    for (const mode of MODES) {
      const observed = size.modes[mode]!.runs[0]!.observedAfterStart;
      expect(observed.count, mode).toBe(expected);
      expect(observed.buckets, mode).toEqual(reference.buckets);
      // The loop equivalent to Coder PR #24179 parses timestamps to Dates (ms): its sum may differ by < 1 ms per sample.
      expect(Math.abs(observed.sum - reference.sum), mode).toBeLessThan(1e-3 * expected);
    }
    expect(size.checks.filter((c) => !c.pass)).toEqual([]);
  });

  it('incremental reads a few rows per tick and remembers the overlap window, not the population', () => {
    const size = report.sizes[0]!;
    const full = size.modes['full-scan']!.summary.ticks;
    // Full scan: every connected current agent, every tick, all remembered.
    expect(full.rows.median).toBeGreaterThanOrEqual(size.population.connectedAgents);
    expect(full.trackedAgents.median).toBeGreaterThanOrEqual(size.population.connectedAgents);
    for (const mode of ['incremental', 'incremental-index']) {
      const ticks = size.modes[mode]!.summary.ticks;
      expect(ticks.rows.max, mode).toBeLessThan(full.rows.median);
      expect(ticks.rows.max, mode).toBeLessThanOrEqual(size.windowBound);
      expect(ticks.trackedAgents.max, mode).toBeLessThanOrEqual(size.windowBound);
      expect(ticks.trackedAgents.max, mode).toBeLessThan(size.population.connectedAgents / 10);
      expect(size.modes[mode]!.summary.observeOnceBytes, mode).toBeLessThan(size.modes['full-scan']!.summary.observeOnceBytes);
    }
  });

  it('incremental reads only the new connections per steady tick, the re-read mode the whole window (before: 6x at 60 s)', () => {
    const size = report.sizes[0]!;
    const reread = size.modes['incremental-reread']!.summary.ticks.rows.median;
    expect(reread).toBeGreaterThan(2 * size.tricklePerTick);
    for (const mode of ['incremental', 'incremental-index']) {
      expect(size.modes[mode]!.summary.ticks.rows.median, mode).toBeLessThanOrEqual(1.2 * size.tricklePerTick);
    }
  });

  it('explains each mode: only the index mode reads workspace_agents through the opt-in index', () => {
    const size = report.sizes[0]!;
    expect(size.explain.map((e) => e.mode)).toEqual([...MODES]);
    for (const e of size.explain) {
      expect(e.executionMs, e.mode).toBeGreaterThan(0);
      expect(e.sharedHit, e.mode).toBeGreaterThan(0);
      expect(existsSync(e.textFile), e.textFile).toBe(true);
      if (e.mode === 'incremental-index') expect(e.agentsAccess).toContain(INDEX_NAME);
      else expect(e.agentsAccess, e.mode).not.toContain(INDEX_NAME);
    }
  });

  it('drops its database unless asked to keep it', async () => {
    const size = report.sizes[0]!;
    expect(size.database.kept).toBe(false);
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [size.database.name]);
      expect(rowCount).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('rejects bad flags with exit code 2 and the usage', () => {
    const run = runCli(['--agents', 'ten']);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('--agents must be a number');
    expect(run.stderr).toContain('pnpm bench [options]');
  });
});
