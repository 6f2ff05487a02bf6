import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { START_METRICS } from '@agentconn/core';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import type { CoderDatabase } from '@agentconn/kysely';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { sql, type Kysely } from 'kysely';
import { chromium } from 'playwright-core';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { parseExposition } from '@agentconn/test-support/exposition-parser';
import { promtoolCheckMetrics } from '@agentconn/test-support/promtool';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSettings } from '../../src/config.js';
import { startExporter } from '../../src/exporter.js';
import type { FamilyReport, GroupReport, HistoryReport } from '../../src/report/model.js';
import { closeTo, runReportCaptured, shape } from './fixture.js';
import { expectedStarts, seedStarts, type ExpectedGroup, type SeededStarts } from './start-fixture.js';

interface Target {
  readonly name: string;
  open(): Promise<{ db: Kysely<CoderDatabase>; argv: string[]; supplied: boolean; close(): Promise<void> }>;
}

const TARGETS: Target[] = [
  {
    name: 'PGlite',
    async open() {
      const db = createPgliteDb();
      return { db, argv: [], supplied: true, close: () => db.destroy() };
    },
  },
  {
    name: 'PostgreSQL server',
    async open() {
      const database: TestDatabase = await createTestDatabase('agentconn_report_starts');
      const db = createPostgresDb(database.url);
      return {
        db,
        argv: ['--database-url', database.url],
        supplied: false,
        async close() {
          await db.destroy();
          await database.drop();
        },
      };
    },
  },
];

function expectGroup(actual: GroupReport | undefined, expected: ExpectedGroup, where: string): void {
  expect(actual, where).toBeDefined();
  expect(actual!.current.count, `${where} count`).toBe(expected.count);
  const quantiles = [actual!.current.p50_seconds, actual!.current.p90_seconds, actual!.current.p95_seconds, actual!.current.p99_seconds];
  for (const [i, q] of quantiles.entries()) expect(closeTo(q, expected.quantiles[i] ?? null), `${where} quantile ${i}: ${q} vs ${expected.quantiles[i]}`).toBe(true);
  expect(closeTo(actual!.current.max_seconds, expected.max), `${where} max`).toBe(true);
}

function counted(family: FamilyReport): GroupReport[] {
  return family.groups.filter((g) => g.current.count > 0);
}

describe.each(TARGETS)('report --phases on $name', (target) => {
  let opened: Awaited<ReturnType<Target['open']>>;
  let seeded: SeededStarts;
  let report: HistoryReport;

  beforeAll(async () => {
    opened = await target.open();
    seeded = await seedStarts(opened.db);
    const run = await runReportCaptured(
      [...opened.argv, '--phases', 'true', '--format', 'json', '--since', seeded.since, '--until', seeded.until, '--step', '10m', '--slowest', '2'],
      opened.supplied ? opened.db : undefined,
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    report = JSON.parse(run.stdout) as HistoryReport;
  }, 120_000);
  afterAll(async () => {
    await opened?.close();
  });

  it('per template and outcome: count, exact P50/P90/P95/P99 and max equal an independent SQL computation', async () => {
    expect(report.families.map((f) => f.family)).toEqual(['first_connection', 'start', 'start_phase']);
    const start = report.families[1]!;
    expect(start.breakdown_label).toBe('outcome');
    const { starts } = await expectedStarts(opened.db, seeded.since, seeded.until);
    // Every outcome is there: the failure counts are the outcomes' counts.
    expect(new Set(starts.map((s) => s.value))).toEqual(new Set(['ready', 'build_failed', 'canceled', 'connect_timeout', 'start_error']));
    expect(counted(start).map((g) => `${g.template_name}/${g.breakdown}`).sort()).toEqual(starts.map((s) => `${s.template}/${s.value}`).sort());
    for (const want of starts) {
      expectGroup(start.groups.find((g) => g.template_name === want.template && g.breakdown === want.value), want, `${want.template} ${want.value}`);
    }
    const all = await expectedStarts(opened.db, seeded.since, seeded.until, { allTemplates: true });
    for (const want of all.starts) expectGroup(start.totals.find((g) => g.breakdown === want.value), want, `all ${want.value}`);
  });

  it('per template and phase: the same figures equal the independent computation, the superseded build cut off', async () => {
    const phase = report.families[2]!;
    expect(phase.breakdown_label).toBe('phase');
    const { phases } = await expectedStarts(opened.db, seeded.since, seeded.until);
    expect(counted(phase).map((g) => `${g.template_name}/${g.breakdown}`).sort()).toEqual(phases.map((s) => `${s.template}/${s.value}`).sort());
    for (const want of phases) {
      expectGroup(phase.groups.find((g) => g.template_name === want.template && g.breakdown === want.value), want, `${want.template} ${want.value}`);
    }
    // The superseded build still counts its queued and provisioning phases, not its last two nor its start.
    const queued = phases.filter((p) => p.value === 'queued').reduce((n, p) => n + p.count, 0);
    const starting = phases.filter((p) => p.value === 'starting').reduce((n, p) => n + p.count, 0);
    const ready = report.families[1]!.groups.filter((g) => g.breakdown === 'ready' || g.breakdown === 'start_error').reduce((n, g) => n + g.current.count, 0);
    // The skewed build of each template has no agents: it is ready when its job completes, without `starting`.
    expect(starting).toBe(ready - seeded.templates.length);
    expect(queued).toBe(2 * 40);
  });

  it('clock skew drops only the negative phase, counted, as the exporter does; an invalid build drops its start', () => {
    const [, start, phase] = report.families;
    for (const template of seeded.templates) {
      const dropped = (family: FamilyReport | undefined) =>
        (family?.groups ?? []).filter((g) => g.template_name === template).reduce((n, g) => n + g.current.dropped_negative, 0);
      expect(dropped(phase), template).toBe(1);
      expect(phase!.groups.find((g) => g.template_name === template && g.breakdown === 'queued')?.current.dropped_negative, template).toBe(1);
      expect(dropped(start), template).toBe(0);
      const invalid = start!.groups.filter((g) => g.template_name === template).reduce((n, g) => n + g.current.dropped_invalid, 0);
      expect(invalid, template).toBe(1);
    }
  });

  it('the slowest starts are the longest, with their workspace, user and build date', () => {
    for (const family of report.families.slice(1)) {
      for (const group of counted(family)) {
        expect(group.slowest.length).toBe(Math.min(2, group.current.count));
        expect(group.slowest[0]!.duration_seconds).toBe(group.current.max_seconds);
        for (const s of group.slowest) {
          expect(s.workspace_name).toMatch(/^ws-/);
          expect(s.username.length).toBeGreaterThan(0);
          expect(s.agent_name).toBeNull();
          expect(Date.parse(s.started_at)).toBeLessThanOrEqual(Date.parse(s.at));
        }
        if (family.family === 'start') {
          // For a start, the duration is from the build's creation to its end, to the µs.
          for (const s of group.slowest) expect(Math.round((Date.parse(s.at) - Date.parse(s.started_at)) / 1000)).toBe(Math.round(s.duration_seconds));
        }
      }
    }
  });

  it('without --phases the report has the first connection only', async () => {
    const run = await runReportCaptured(
      [...opened.argv, '--format', 'json', '--since', seeded.since, '--until', seeded.until, '--step', '10m'],
      opened.supplied ? opened.db : undefined,
    );
    expect((JSON.parse(run.stdout) as HistoryReport).families.map((f) => f.family)).toEqual(['first_connection']);
  });
});

/** `name{sorted labels}` → value of the last sample of each series of the start histograms. */
function lastStartValues(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const sample of parseExposition(text).samples) {
    const histogram = sample.name.replace(/_(bucket|count|sum)$/, '');
    if (histogram !== START_METRICS.start.name && histogram !== START_METRICS.phase.name) continue;
    const labels = [...sample.labels].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    values.set(`${sample.name}{${labels.join(',')}}`, Number(sample.value));
  }
  return values;
}

describe('report --phases on PGlite: JSON fields, HTML and OpenMetrics', () => {
  let db: Kysely<CoderDatabase>;
  let seeded: SeededStarts;
  let dir: string;

  beforeAll(async () => {
    db = createPgliteDb();
    seeded = await seedStarts(db);
    dir = mkdtempSync(join(tmpdir(), 'agentconn-report-starts-'));
  }, 120_000);
  afterAll(async () => {
    await db?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('the JSON fields of the start families are stable (a renamed or removed field fails this snapshot)', async () => {
    const run = await runReportCaptured(['--phases', 'true', '--format', 'json', '--since', seeded.since, '--until', seeded.until, '--step', '10m'], db);
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as HistoryReport;
    const byFamily = Object.fromEntries(report.families.slice(1).map((family) => [family.family, [...shape(family)].sort()]));
    expect(Object.keys(byFamily)).toEqual(['start', 'start_phase']);
    expect(byFamily).toMatchSnapshot();
  });

  it('the HTML has the phase breakdown charts, drawn in headless Chromium without a failed request or console error', async () => {
    const file = join(dir, 'report.html');
    const run = await runReportCaptured(['--phases', 'true', '--format', 'html', '--since', seeded.since, '--until', seeded.until, '--step', '10m', '-o', file], db);
    expect(run.code).toBe(0);
    const browser = await chromium.launch({
      executablePath: process.env['CHROMIUM'] ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
      headless: true,
    });
    try {
      const page = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
      const problems: string[] = [];
      page.on('requestfailed', (request) => problems.push(`${request.url()}: ${request.failure()?.errorText}`));
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(message.text());
      });
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      // One stacked bar chart for the outcomes, one for the phases: a bar per template and value.
      const charts = page.locator('figure.chart.breakdown svg');
      expect(await charts.count()).toBe(2);
      expect(await charts.nth(1).locator('.mark-rect path').count()).toBe(seeded.templates.length * 4);
      expect(await page.textContent('body')).toContain('queued');
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it('passes promtool check metrics, and at its end holds the same start and phase samples as a live exporter with --phases counting all', async () => {
    const file = join(dir, 'history.om');
    const run = await runReportCaptured(['--phases', 'true', '--format', 'openmetrics', '--since', seeded.since, '--step', '10m', '-o', file], db);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const text = readFileSync(file, 'utf8');
    const check = promtoolCheckMetrics(text);
    expect(check.output).toBe('');
    expect(check.status).toBe(0);
    expect(text).toContain(`# TYPE ${START_METRICS.phase.name} histogram`);

    const exporter = await startExporter({
      config: { ...defaultSettings(), database: { db }, leaderElection: false, listen: { host: '127.0.0.1', port: 0 }, backfill: 'all', phases: true },
      logger: createMemoryLogger(),
    });
    try {
      await exporter.poller.tick();
      const live = await (await fetch(exporter.metricsUrl)).text();
      const ours = lastStartValues(text);
      const theirs = lastStartValues(live);
      // Two templates; outcomes and phases by prebuild or not.
      expect(ours.size).toBeGreaterThan(2 * 5 * 15);
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      for (const [key, value] of ours) {
        if (key.includes('_sum{')) expect(closeTo(value, theirs.get(key)), key).toBe(true);
        else expect(value, key).toBe(theirs.get(key));
      }
    } finally {
      await exporter.stop();
    }
  });
});

describe('report --phases on a database without the whole start\'s tables', () => {
  it('fails with one line that names --phases and the missing table, exit 1', async () => {
    const db = createPgliteDb();
    try {
      await migrateToLatest(db);
      await sql`DROP TABLE provisioner_jobs CASCADE`.execute(db);
      const run = await runReportCaptured(['--phases', 'true', '--format', 'json', '--since', '30d'], db);
      expect(run.code).toBe(1);
      const lines = run.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/--phases/);
      expect(lines[0]).toMatch(/provisioner_jobs/);
      expect(run.stdout).toBe('');
    } finally {
      await db.destroy();
    }
  }, 120_000);
});
