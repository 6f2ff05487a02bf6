/**
 * `pnpm bench:starts` at a tiny size on the real PostgreSQL server: the compiled CLI seeds a database,
 * runs both index modes, writes its report, and leaves nothing behind. Timings are never asserted
 * (targets live in the benchmark); what is asserted is what the comparison rests on.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const MAIN = join(REPO, 'bench/dist/starts.js');
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const BUILDS = 600;
const EVENTS = 4;
const TICKS = 2;

interface Tick {
  phase: 'reconciling' | 'steady';
  rowsRead: number;
  events: number;
  inProgress: number;
  firstConnectionDbMs: number;
  startDbMs: number;
  startCpuMs: number;
  plans: { statement: string; executionMs: number; seqScans: string[]; rowsExamined: number }[];
}
interface Results {
  results: {
    builds: number;
    database: string;
    seeded: boolean;
    meta: { rows: Record<string, number> };
    modes: { indexes: string; ticks: Tick[]; medians: Record<string, number> }[];
  }[];
}

describe('pnpm bench:starts', () => {
  let out: string;
  let results: Results;
  let stdout: string;

  beforeAll(() => {
    const build = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-b', 'bench'], { cwd: REPO, encoding: 'utf8' });
    expect(build.status, build.stdout + build.stderr).toBe(0);
    out = mkdtempSync(join(tmpdir(), 'agentconn-bench-starts-'));
    const run = spawnSync(
      process.execPath,
      [MAIN, '--builds', String(BUILDS), '--events', String(EVENTS), '--ticks', String(TICKS), '--warmup', '1', '--database-url', DATABASE_URL, '--out', out],
      { cwd: REPO, encoding: 'utf8', timeout: 120_000 },
    );
    expect(run.status, run.stderr).toBe(0);
    stdout = run.stdout;
    results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as Results;
  }, 180_000);

  afterAll(() => {
    if (out !== undefined) rmSync(out, { recursive: true, force: true });
  });

  it('seeds every table the start family reads and prints the report it writes', () => {
    const [size] = results.results;
    expect(size!.builds).toBe(BUILDS);
    expect(size!.seeded).toBe(true);
    // Two builds per workspace, every fifth workspace stopped after its second start.
    expect(size!.meta.rows['workspace_builds']).toBe(BUILDS + BUILDS / 10);
    expect(size!.meta.rows['provisioner_job_timings']).toBe(4 * BUILDS);
    for (const table of ['workspace_agents', 'workspace_agent_scripts', 'workspace_agent_script_timings']) {
      expect(size!.meta.rows[table], table).toBeGreaterThan(BUILDS / 2);
    }
    expect(stdout.trim()).toBe(readFileSync(join(out, 'results.md'), 'utf8').trim());
    expect(stdout).toMatch(/\| 600 \| stock \|/);
    expect(stdout).toMatch(/\| 600 \| opt-in \|/);
  });

  it('reads each tick\'s events and the starts in progress at the exporter\'s overlap, not the overlap again', () => {
    const [size] = results.results;
    expect(size!.modes.map((m) => m.indexes)).toEqual(['stock', 'opt-in']);
    for (const mode of size!.modes) {
      for (const tick of mode.ticks) {
        // Each read reaches 5 minutes back, and the stream leaves out what it handled there: rows read are
        // the tick's builds, stages and script runs and the starts in progress, nothing of the overlap again.
        // The builds in progress looked up by key include this tick's own builds, ended by now: at most one
        // row more per new build, never the overlap's rows again.
        expect(tick.rowsRead, `${mode.indexes} ${tick.phase}`).toBeGreaterThanOrEqual(tick.events);
        expect(tick.rowsRead - tick.events, `${mode.indexes} ${tick.phase}`).toBeLessThanOrEqual(EVENTS);
        expect(tick.inProgress, mode.indexes).toBeGreaterThan(0);
        expect(tick.events).toBe(EVENTS * 7 + tick.inProgress);
        expect(tick.plans.map((p) => p.statement)).toEqual(['changed builds', 'job stages', 'script runs', 'in progress']);
        for (const plan of tick.plans) expect(plan.rowsExamined).toBeGreaterThan(0);
        expect(tick.startDbMs).toBeGreaterThan(0);
        expect(tick.firstConnectionDbMs).toBeGreaterThan(0);
      }
      expect(mode.ticks.length, mode.indexes).toBeGreaterThan(TICKS);
      // The default overlap (5 minutes) over 1-minute ticks: the first reads after the start reconcile, then
      // the stream looks the builds in progress up by key.
      expect(mode.ticks.filter((t) => t.phase === 'steady'), mode.indexes).toHaveLength(TICKS);
      expect(mode.ticks.filter((t) => t.phase === 'reconciling').length, mode.indexes).toBeGreaterThanOrEqual(3);
      expect(mode.ticks.findIndex((t) => t.phase === 'steady')).toBe(mode.ticks.length - TICKS);
      expect(Number.isFinite(mode.medians['dbOnOverOff'])).toBe(true);
    }
  });

  it('drops the database it made (no --keep)', async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [results.results[0]!.database]);
      expect(rowCount).toBe(0);
    } finally {
      await client.end();
    }
  });
});
