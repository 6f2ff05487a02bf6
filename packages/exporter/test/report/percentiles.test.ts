import { toEpochMicros } from '@agentconn/core';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import type { CoderDatabase } from '@agentconn/kysely';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HistoryReport } from '../../src/report/model.js';
import { BASE_MS, closeTo, DAY_MS, expectedByTemplate, runReportCaptured, seedHistory, type ExpectedStats } from './fixture.js';

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
      const database: TestDatabase = await createTestDatabase('agentconn_report');
      const db = createPostgresDb(database.url);
      return {
        db,
        // The command connects by URL itself, as a user runs it.
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

const SINCE = new Date(BASE_MS - 8 * DAY_MS);
const UNTIL = new Date(BASE_MS + DAY_MS);
const PREVIOUS = new Date(SINCE.getTime() - (UNTIL.getTime() - SINCE.getTime()));

function expectStats(
  actual: { count: number; dropped_negative: number; p50_seconds: number | null; p90_seconds: number | null; p95_seconds: number | null; p99_seconds: number | null; max_seconds: number | null; buckets: readonly { count: number }[] },
  expected: ExpectedStats | undefined,
  where: string,
): void {
  expect(actual.count, `${where} count`).toBe(expected?.count ?? 0);
  expect(actual.dropped_negative, `${where} negative`).toBe(expected?.negative ?? 0);
  const quantiles = [actual.p50_seconds, actual.p90_seconds, actual.p95_seconds, actual.p99_seconds];
  for (const [i, q] of quantiles.entries()) {
    expect(closeTo(q, expected?.quantiles[i] ?? null), `${where} quantile ${i}: ${q} vs ${expected?.quantiles[i]}`).toBe(true);
  }
  expect(closeTo(actual.max_seconds, expected?.max ?? null), `${where} max`).toBe(true);
  expect(actual.buckets.map((b) => b.count), `${where} buckets`).toEqual(expected?.buckets ?? actual.buckets.map(() => 0));
}

describe.each(TARGETS)('report percentiles on $name', (target) => {
  let opened: Awaited<ReturnType<Target['open']>>;
  let report: HistoryReport;

  beforeAll(async () => {
    opened = await target.open();
    await seedHistory(opened.db);
    const run = await runReportCaptured(
      [...opened.argv, '--format', 'json', '--since', SINCE.toISOString(), '--until', UNTIL.toISOString(), '--step', '1d', '--slowest', '3'],
      opened.supplied ? opened.db : undefined,
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    report = JSON.parse(run.stdout) as HistoryReport;
  }, 120_000);
  afterAll(async () => {
    await opened?.close();
  });

  it('per template: count, exact P50/P90/P95/P99, max and buckets equal an independent SQL computation, in the range and the period before', async () => {
    const family = report.families.find((f) => f.family === 'first_connection')!;
    const current = await expectedByTemplate(opened.db, SINCE, UNTIL);
    const previous = await expectedByTemplate(opened.db, PREVIOUS, SINCE);
    expect(family.groups.map((g) => g.template_name).sort()).toEqual([...new Set([...current.keys(), ...previous.keys()])].sort());
    for (const group of family.groups) {
      expectStats(group.current, current.get(group.template_name!), `${group.template_name} current`);
      expectStats(group.previous, previous.get(group.template_name!), `${group.template_name} previous`);
    }
    // All templates together, sorted as one: not a merge of the templates' figures.
    const allCurrent = await expectedByTemplate(opened.db, SINCE, UNTIL, { allTemplates: true });
    const allPrevious = await expectedByTemplate(opened.db, PREVIOUS, SINCE, { allTemplates: true });
    expect(family.totals).toHaveLength(1);
    expectStats(family.totals[0]!.current, allCurrent.get(null), 'all templates current');
    expectStats(family.totals[0]!.previous, allPrevious.get(null), 'all templates previous');
    // Every bucket holds samples, and the traps are where they belong.
    const all = family.totals[0]!.current;
    expect(all.buckets.every((b) => b.count > 0)).toBe(true);
    expect(all.dropped_invalid).toBe(1);
    expect(all.dropped_negative).toBeGreaterThan(0);
  });

  it('each trend period equals the independent computation over that day', async () => {
    const family = report.families[0]!;
    expect(family.groups[0]!.trend).toHaveLength(9);
    for (let day = 0; day < 9; day++) {
      const from = new Date(SINCE.getTime() + day * DAY_MS);
      const expected = await expectedByTemplate(opened.db, from, new Date(from.getTime() + DAY_MS));
      for (const group of family.groups) {
        const period = group.trend[day]!;
        expect(period.start).toBe(from.toISOString());
        const want = expected.get(group.template_name!);
        expect(period.count, `${group.template_name} day ${day}`).toBe(want?.count ?? 0);
        expect(closeTo(period.p95_seconds, want?.quantiles[2] ?? null), `${group.template_name} day ${day} p95`).toBe(true);
        expect(closeTo(period.max_seconds, want?.max ?? null)).toBe(true);
      }
    }
  });

  it('the slowest equal the longest durations an independent query finds, also when ranked among those above P99 only', async () => {
    const { rows } = await sql<{ template: string; d: number }>`
      SELECT template, d FROM (
        SELECT t.name AS template, (extract(epoch FROM wa.first_connected_at - wa.created_at))::float8 AS d,
          row_number() OVER (PARTITION BY t.name ORDER BY wa.first_connected_at - wa.created_at DESC) AS n
        FROM workspaces w JOIN templates t ON w.template_id = t.id JOIN workspace_builds wb ON w.id = wb.workspace_id
        JOIN workspace_resources wr ON wb.job_id = wr.job_id JOIN workspace_agents wa ON wr.id = wa.resource_id
        WHERE w.deleted = false AND wa.deleted = false AND isfinite(wa.created_at)
          AND wb.build_number = (SELECT max(build_number) FROM workspace_builds wb2 WHERE wb2.workspace_id = w.id)
          AND wa.first_connected_at >= ${SINCE} AND wa.first_connected_at < ${UNTIL}) x
      WHERE n <= 3 ORDER BY template, d DESC`.execute(opened.db);
    const expected = (template: string, n: number) => rows.filter((r) => r.template === template).slice(0, n).map((r) => r.d);
    // 1 slowest of ~200 samples a template: ranked among the samples at or above P99 (fewer than 100 per one asked for: all).
    const one = await runReportCaptured(
      [...opened.argv, '--format', 'json', '--since', SINCE.toISOString(), '--until', UNTIL.toISOString(), '--slowest', '1'],
      opened.supplied ? opened.db : undefined,
    );
    for (const [n, result] of [[3, report], [1, JSON.parse(one.stdout) as HistoryReport]] as const) {
      for (const group of result.families[0]!.groups) {
        if (n === 1) expect(group.current.count).toBeGreaterThan(100);
        expect(group.slowest.map((s) => s.duration_seconds), `${group.template_name} top ${n}`).toEqual(expected(group.template_name!, n));
      }
    }
  });

  it('the slowest are the longest durations of the range with their workspace, user and date', async () => {
    const family = report.families[0]!;
    for (const group of family.groups) {
      const slowest = group.slowest;
      expect(slowest).toHaveLength(Math.min(3, group.current.count));
      expect(slowest[0]!.duration_seconds).toBe(group.current.max_seconds);
      for (let i = 1; i < slowest.length; i++) expect(slowest[i]!.duration_seconds).toBeLessThanOrEqual(slowest[i - 1]!.duration_seconds);
      for (const s of slowest) {
        expect(s.workspace_name).toMatch(/^ws-/);
        expect(s.username).toMatch(/^user-/);
        // µs exact: the duration is the two instants' difference to the microsecond.
        expect((toEpochMicros(s.at)! - toEpochMicros(s.started_at)!) / 1_000_000).toBe(s.duration_seconds);
        expect(Date.parse(s.at)).toBeGreaterThanOrEqual(SINCE.getTime());
      }
    }
  });
});
