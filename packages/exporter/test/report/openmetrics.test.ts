import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIRST_CONNECTION_BUCKET_BOUNDARIES } from '@agentconn/core';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import type { CoderDatabase } from '@agentconn/kysely';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { parseExposition } from '@agentconn/test-support/exposition-parser';
import { startPrometheus } from '@agentconn/test-support/prometheus-server';
import { describeRun, promtoolCheckMetrics, runPromtool } from '@agentconn/test-support/promtool';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSettings } from '../../src/config.js';
import { startExporter } from '../../src/exporter.js';
import type { HistoryReport } from '../../src/report/model.js';
import { BASE_MS, closeTo, DAY_MS, expectedByTemplate, runReportCaptured, seedHistory } from './fixture.js';

const HOUR_MS = 3_600_000;
/** The README's query, unchanged. */
const P95_QUERY = 'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))';

/** Prometheus' histogram_quantile on cumulative bucket counts, computed here from non-cumulative ones. */
function bucketQuantile(q: number, perBucket: readonly number[]): number {
  const total = perBucket.reduce((a, b) => a + b, 0);
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < perBucket.length; i++) {
    const before = cumulative;
    cumulative += perBucket[i]!;
    if (cumulative >= rank) {
      const upper = FIRST_CONNECTION_BUCKET_BOUNDARIES[i];
      // In +Inf: the highest finite bound, as Prometheus answers.
      if (upper === undefined) return FIRST_CONNECTION_BUCKET_BOUNDARIES.at(-1)!;
      const lower = i === 0 ? 0 : FIRST_CONNECTION_BUCKET_BOUNDARIES[i - 1]!;
      return lower + (upper - lower) * ((rank - before) / perBucket[i]!);
    }
  }
  return Number.NaN;
}

/** `name{sorted labels}` → value of the samples of the last instant of each series (or all, untimed). */
function lastValues(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const sample of parseExposition(text).samples) {
    if (!sample.name.startsWith('coderd_agents_first_connection_seconds')) continue;
    const labels = [...sample.labels].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    values.set(`${sample.name}{${labels.join(',')}}`, Number(sample.value));
  }
  return values;
}

describe('report --format openmetrics', () => {
  let db: Kysely<CoderDatabase>;
  let dir: string;
  // Two days of dense history ending at BASE; hour steps so the [1h] windows end on samples.
  const since = new Date(BASE_MS - 2 * DAY_MS - HOUR_MS);
  const until = new Date(BASE_MS + HOUR_MS);
  let text: string;

  beforeAll(async () => {
    db = createPgliteDb();
    await seedHistory(db, { workspaces: 2500, spanDays: 2 });
    dir = mkdtempSync(join(tmpdir(), 'agentconn-report-om-'));
    const file = join(dir, 'history.om');
    const run = await runReportCaptured(
      ['--format', 'openmetrics', '--since', since.toISOString(), '--until', until.toISOString(), '--step', '1h', '-o', file],
      db,
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    text = readFileSync(file, 'utf8');
  }, 120_000);
  afterAll(async () => {
    await db?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('passes promtool check metrics and ends in # EOF', () => {
    expect(text.endsWith('\n# EOF\n')).toBe(true);
    const check = promtoolCheckMetrics(text);
    expect(check.output).toBe('');
    expect(check.status).toBe(0);
  });

  it('holds the very series the exporter serves: at the end of a range covering everything, the same samples as a live exporter counting all', async () => {
    const all = await runReportCaptured(['--format', 'openmetrics', '--since', new Date(BASE_MS - 30 * DAY_MS).toISOString(), '--step', '1d'], db);
    expect(all.code).toBe(0);
    const exporter = await startExporter({
      config: { ...defaultSettings(), database: { db }, leaderElection: false, listen: { host: '127.0.0.1', port: 0 }, backfill: 'all' },
      logger: createMemoryLogger(),
    });
    try {
      await exporter.poller.tick();
      const live = await (await fetch(exporter.metricsUrl)).text();
      const ours = lastValues(all.stdout);
      const theirs = lastValues(live);
      // Four templates, one agent name: ten bucket lines, _count and _sum each.
      expect(ours.size).toBe(4 * 12);
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      for (const [key, value] of ours) {
        if (key.includes('_sum{')) expect(closeTo(value, theirs.get(key)), key).toBe(true);
        else expect(value, key).toBe(theirs.get(key));
      }
    } finally {
      await exporter.stop();
    }
  });

  it('backfilled with promtool into a real Prometheus, the README P95 query at three past instants equals the buckets of the hour before each, the report says the same buckets and its exact P95 the independent one', async () => {
    const data = join(dir, 'data');
    const created = await runPromtool(['tsdb', 'create-blocks-from', 'openmetrics', join(dir, 'history.om'), data]);
    expect(created.code, describeRun(['tsdb', 'create-blocks-from'], created)).toBe(0);
    const prometheus = await startPrometheus([], { storagePath: data });
    try {
      for (const hoursBefore of [30, 17, 5]) {
        const end = new Date(BASE_MS - hoursBefore * HOUR_MS);
        const start = new Date(end.getTime() - HOUR_MS);
        const response = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(P95_QUERY)}&time=${end.getTime() / 1000}`);
        const body = (await response.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
        const answered = new Map(body.data.result.map((r) => [r.metric['template_name']!, Number(r.value[1])]));
        const expected = await expectedByTemplate(db, start, end);
        const window = await runReportCaptured(['--format', 'json', '--since', start.toISOString(), '--until', end.toISOString(), '--step', '1h'], db);
        const reported = new Map((JSON.parse(window.stdout) as HistoryReport).families[0]!.groups.map((g) => [g.template_name!, g.current]));
        let compared = 0;
        for (const [template, stats] of expected) {
          if (stats.count === 0 || template === null) continue;
          const promValue = answered.get(template);
          const mine = reported.get(template)!;
          expect(promValue, `${template} at ${end.toISOString()}`).toBeDefined();
          // Prometheus' estimate is the bucket interpolation of the report's histogram of that hour, and
          // of the one computed independently here; the report's exact P95 is the independent one.
          const fromReport = bucketQuantile(0.95, mine.buckets.map((b) => b.count));
          expect(closeTo(promValue!, fromReport), `${template}: Prometheus ${promValue}, report's buckets ${fromReport}`).toBe(true);
          expect(closeTo(promValue!, bucketQuantile(0.95, stats.buckets))).toBe(true);
          expect(closeTo(mine.p95_seconds, stats.quantiles[2]), `${template}: exact ${mine.p95_seconds}`).toBe(true);
          compared++;
        }
        expect(compared).toBeGreaterThanOrEqual(3);
      }
    } finally {
      await prometheus.stop();
    }
  }, 120_000);
});
