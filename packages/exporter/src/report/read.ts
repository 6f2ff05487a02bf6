/**
 * Reads one family's history (one statement, see `historySummaryQuery`) and shapes it into the report.
 */
import { toEpochMicros } from '@agentconn/core';
import { historySummaryQuery, HISTORY_QUANTILES, type CoderDatabase, type HistorySummaryRow } from '@agentconn/kysely';
import type { Kysely } from 'kysely';
import type { ReportFamily } from './families.js';
import type { BucketCount, Change, FamilyReport, GroupReport, SlowSample, Stats, TrendPeriod } from './model.js';

/** The range a report covers, resolved to instants (epoch ms). */
export interface ResolvedRange {
  readonly sinceMs: number;
  readonly untilMs: number;
  readonly stepMs: number;
  /** `sinceMs - (untilMs - sinceMs)`: the period compared with. */
  readonly previousSinceMs: number;
}

export interface ReadFamilyOptions {
  readonly range: ResolvedRange;
  readonly templates: readonly string[];
  readonly slowest: number;
}

export async function readFamily(db: Kysely<CoderDatabase>, family: ReportFamily, options: ReadFamilyOptions): Promise<FamilyReport> {
  const { range } = options;
  const samples = await family.samples(db, {
    from: new Date(range.previousSinceMs),
    until: new Date(range.untilMs),
    templates: options.templates,
  });
  const query = historySummaryQuery(samples, {
    since: new Date(range.sinceMs),
    until: new Date(range.untilMs),
    previousSince: new Date(range.previousSinceMs),
    stepSeconds: range.stepMs / 1000,
    bucketBoundsMicros: family.metric.bucketBounds.map((bound) => Math.round(bound * 1_000_000)),
    slowest: options.slowest,
    details: family.details(db),
  });
  const { rows } = await query.execute(db);
  return shapeFamily(family, rows, range);
}

interface GroupRows {
  readonly template: string | null;
  readonly breakdown: string | null;
  current?: HistorySummaryRow;
  previous?: HistorySummaryRow;
  /** Bucket number (-1 negative, -2 unreadable) → count, in the range and in the period before. */
  readonly currentBuckets: Map<number, number>;
  readonly previousBuckets: Map<number, number>;
  readonly periods: Map<number, HistorySummaryRow>;
  readonly slowest: HistorySummaryRow[];
}

/** The rows of one summary statement as a family report (exported for tests of the shaping alone). */
export function shapeFamily(family: ReportFamily, rows: readonly HistorySummaryRow[], range: ResolvedRange): FamilyReport {
  const groups = new Map<string, GroupRows>();
  const totals = new Map<string, GroupRows>();
  const groupOf = (map: Map<string, GroupRows>, template: string | null, breakdown: string | null): GroupRows => {
    const key = JSON.stringify([template, breakdown]);
    let group = map.get(key);
    if (group === undefined) {
      group = { template, breakdown, periods: new Map(), slowest: [], currentBuckets: new Map(), previousBuckets: new Map() };
      map.set(key, group);
    }
    return group;
  };
  for (const row of rows) {
    if (row.kind === 'range') {
      const group = groupOf(row.template_name === null ? totals : groups, row.template_name, row.breakdown);
      if (row.current === true) group.current = row;
      else group.previous = row;
    } else if (row.kind === 'bucket' && row.bucket !== null) {
      const group = groupOf(row.template_name === null ? totals : groups, row.template_name, row.breakdown);
      (row.current === true ? group.currentBuckets : group.previousBuckets).set(row.bucket, row.count ?? 0);
    } else if (row.kind === 'period' && row.period_start !== null) {
      const startMs = Math.floor((toEpochMicros(row.period_start) ?? Number.NaN) / 1000);
      groupOf(groups, row.template_name, row.breakdown).periods.set(Math.round((startMs - range.sinceMs) / range.stepMs), row);
    } else if (row.kind === 'slowest') {
      groupOf(groups, row.template_name, row.breakdown).slowest.push(row);
    }
  }
  const bounds = family.metric.bucketBounds;
  const byName = (a: GroupRows, b: GroupRows) => compareText(a.template ?? '', b.template ?? '') || compareText(a.breakdown ?? '', b.breakdown ?? '');
  const shape = (group: GroupRows): GroupReport => {
    const current = stats(group.current, group.currentBuckets, bounds);
    const previous = stats(group.previous, group.previousBuckets, bounds);
    return {
      template_name: group.template,
      breakdown: group.breakdown,
      current,
      previous,
      change: change(current, previous),
      trend: trend(group.periods, range, bounds),
      slowest: group.slowest.sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0)).map(slowSample),
    };
  };
  // With no sample at all there is no total row either; the report still has one, at count 0.
  if (totals.size === 0) groupOf(totals, null, null);
  return {
    family: family.id,
    title: family.title,
    metric: family.metric.name,
    bucket_bounds_seconds: [...bounds],
    breakdown_label: family.breakdownLabel,
    groups: [...groups.values()].filter((g) => g.currentBuckets.size > 0 || g.previousBuckets.size > 0).sort(byName).map(shape),
    totals: [...totals.values()].sort(byName).map(shape),
  };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const seconds = (micros: number | null | undefined): number | null =>
  micros === null || micros === undefined || !Number.isFinite(micros) ? null : micros / 1_000_000;

const NEGATIVE_BUCKET = -1;
const INVALID_BUCKET = -2;

function stats(row: HistorySummaryRow | undefined, bucketCounts: ReadonlyMap<number, number>, bounds: readonly number[]): Stats {
  const count = row?.count ?? 0;
  const quantile = (fraction: (typeof HISTORY_QUANTILES)[number]) => seconds(row?.quantiles_us?.[HISTORY_QUANTILES.indexOf(fraction)]);
  const buckets: BucketCount[] = [...bounds, null].map((le, i) => ({ le, count: bucketCounts.get(i) ?? 0 }));
  return {
    count,
    dropped_negative: bucketCounts.get(NEGATIVE_BUCKET) ?? 0,
    dropped_invalid: bucketCounts.get(INVALID_BUCKET) ?? 0,
    p50_seconds: quantile(0.5),
    p90_seconds: quantile(0.9),
    p95_seconds: quantile(0.95),
    p99_seconds: quantile(0.99),
    max_seconds: seconds(row?.max_us),
    mean_seconds: count > 0 && row?.sum_us !== null && row?.sum_us !== undefined ? row.sum_us / count / 1_000_000 : null,
    buckets,
  };
}

/** `current / previous - 1`, or null when either is missing or the previous is 0. */
export function ratio(current: number | null, previous: number | null): number | null {
  if (current === null || previous === null || previous === 0) return null;
  return current / previous - 1;
}

function change(current: Stats, previous: Stats): Change {
  return {
    count_ratio: previous.count === 0 ? null : ratio(current.count, previous.count),
    p50_ratio: ratio(current.p50_seconds, previous.p50_seconds),
    p95_ratio: ratio(current.p95_seconds, previous.p95_seconds),
    p99_ratio: ratio(current.p99_seconds, previous.p99_seconds),
  };
}

const NO_BUCKETS: ReadonlyMap<number, number> = new Map();

/** Number of trend periods in a range: the last one may be shorter. */
export function periodCount(range: ResolvedRange): number {
  return Math.ceil((range.untilMs - range.sinceMs) / range.stepMs);
}

function trend(periods: ReadonlyMap<number, HistorySummaryRow>, range: ResolvedRange, bounds: readonly number[]): TrendPeriod[] {
  const out: TrendPeriod[] = [];
  let before: Stats | undefined;
  for (let i = 0; i < periodCount(range); i++) {
    const startMs = range.sinceMs + i * range.stepMs;
    const s = stats(periods.get(i), NO_BUCKETS, bounds);
    out.push({
      start: new Date(startMs).toISOString(),
      end: new Date(Math.min(startMs + range.stepMs, range.untilMs)).toISOString(),
      count: s.count,
      p50_seconds: s.p50_seconds,
      p90_seconds: s.p90_seconds,
      p95_seconds: s.p95_seconds,
      p99_seconds: s.p99_seconds,
      max_seconds: s.max_seconds,
      p95_change_ratio: before === undefined ? null : ratio(s.p95_seconds, before.p95_seconds),
    });
    before = s;
  }
  return out;
}

function slowSample(row: HistorySummaryRow): SlowSample {
  return {
    workspace_name: row.workspace_name ?? '',
    username: row.username ?? '',
    agent_name: row.agent_name,
    started_at: row.created_at ?? '',
    at: row.at ?? '',
    duration_seconds: (row.duration_us ?? 0) / 1_000_000,
  };
}
