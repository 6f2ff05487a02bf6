/**
 * The history queries behind `agentconn-exporter report`: exact percentiles, trend, slowest samples and
 * cumulative histogram series over a time range, computed in the database in one statement each, so a
 * report over a million agents moves kilobytes, not rows.
 *
 * Every family of durations (the first connection here; the whole start and its phases later) is a
 * "samples" query with the columns of {@link HistorySampleColumns}; the statements below aggregate any
 * of them the same way.
 */
import { sql, type Expression, type Kysely, type RawBuilder } from 'kysely';
import { currentAgents } from './current-agents.js';
import { changedStartBuildsQuery } from './workspace-starts.js';
import type { CoderDatabase } from '../schema.js';
import { utcMicrosText } from './utc-micros-text.js';

/**
 * The columns a family's samples query selects, one row per sample.
 * - `template_name`: the template, a name in `templates` (the summary groups by its rank there);
 * - `breakdown`: a second grouping (a start's outcome, a phase) or NULL;
 * - `at`: the instant the sample is counted at (the first connection; a start's end);
 * - `created_at`: the instant its duration starts;
 * - `duration_us`: the duration in whole microseconds, exact (NULL when a timestamp cannot be read:
 *   `infinity` or outside years 1–9999, which the exporter also drops as invalid);
 * - `workspace_name`, `username`, `agent_name`: who it was (`agent_name` NULL when a sample is not one
 *   agent's); `sample_key`: what identifies it in the family's details query (`HistorySampleDetails`);
 * - the series label columns the family's metric carries (for the OpenMetrics history).
 */
export interface HistorySampleColumns {
  readonly template_name: string;
  readonly breakdown: string | null;
  /** Never NULL in the rows read (the range excludes NULL); typed as the column is. */
  readonly at: Date | null;
  readonly created_at: Date | null;
  readonly duration_us: string | number | null;
  readonly workspace_name: string;
  readonly username: string;
  readonly agent_name: string | null;
  readonly sample_key: string;
}

/**
 * Who a sample was, by `sample_key`: read for the slowest only, so that the samples the statement keeps
 * in memory stay narrow.
 */
export interface HistorySampleDetails {
  readonly sample_key: string;
  readonly workspace_name: string;
  readonly username: string;
  readonly agent_name: string | null;
  readonly created_at: Date | null;
}

/** Which samples a history reads: `[from, until)` of `at`, optionally some templates only. */
export interface HistorySampleFilter {
  readonly from: Date;
  readonly until: Date;
  /** Template names to keep; undefined or empty: all. */
  readonly templates?: readonly string[];
}

/** The label columns of `coderd_agents_first_connection_seconds` a first-connection sample carries. */
export const FIRST_CONNECTION_HISTORY_LABEL_COLUMNS = ['template_name', 'agent_name', 'username', 'workspace_name'] as const;

/**
 * Exact whole microseconds from `start` to `end` (`extract(epoch ...)` is numeric, exact, from
 * PostgreSQL 14 on), or NULL when either cannot be read as the exporter reads it.
 */
export function exactDurationMicros(start: Expression<Date | null>, end: Expression<Date | null>): RawBuilder<string | null> {
  return sql<string | null>`(CASE WHEN ${readable(start)} AND ${readable(end)} THEN ((extract(epoch FROM ${end}) - extract(epoch FROM ${start})) * 1000000)::bigint END)`;
}

/** The range `utcMicrosText` renders, which is also the range the exporter accepts. */
function readable(timestamp: Expression<Date | null>): RawBuilder<boolean> {
  return sql<boolean>`(${timestamp} >= '0001-01-01 00:00:00+00'::timestamptz AND ${timestamp} < '10000-01-01 00:00:00+00'::timestamptz)`;
}

/**
 * First connections as history samples: the exporter's population (agents of the latest build of
 * non-deleted workspaces, agents not deleted), connected within `[from, until)`, counted at
 * `first_connected_at`, with the duration `first_connected_at - created_at` the histogram observes.
 */
export function firstConnectionSamples(db: Kysely<CoderDatabase>, filter: HistorySampleFilter) {
  let query = currentAgents(db, 'no-newer-build')
    .select((eb) => [
      't.name as template_name',
      sql<string | null>`NULL::text`.as('breakdown'),
      'wa.first_connected_at as at',
      'wa.created_at as created_at',
      exactDurationMicros(eb.ref('wa.created_at'), eb.ref('wa.first_connected_at')).as('duration_us'),
      'w.name as workspace_name',
      'u.username as username',
      'wa.name as agent_name',
      'wa.id as sample_key',
    ])
    .where('wa.first_connected_at', '>=', filter.from)
    .where('wa.first_connected_at', '<', filter.until);
  if (filter.templates !== undefined && filter.templates.length > 0) query = query.where('t.name', 'in', [...filter.templates]);
  return query;
}

/** Who a first connection was, by agent id (primary and unique keys all the way: a few index lookups per sample). */
export function firstConnectionDetails(db: Kysely<CoderDatabase>) {
  return db
    .selectFrom('workspace_agents as wa')
    .innerJoin('workspace_resources as wr', 'wr.id', 'wa.resource_id')
    .innerJoin('workspace_builds as wb', 'wb.job_id', 'wr.job_id')
    .innerJoin('workspaces as w', 'w.id', 'wb.workspace_id')
    .innerJoin('users as u', 'u.id', 'w.owner_id')
    .select(['wa.id as sample_key', 'w.name as workspace_name', 'u.username as username', 'wa.name as agent_name', 'wa.created_at as created_at']);
}

/**
 * The whole start's builds for a history from `from` on: every start build with something at or after it
 * (its job started or completed, an agent connected, became ready or passed its timeout), one row per build
 * and agent, ordered by build, as the exporter's start source reads them. Which of their samples fall in the
 * range is for the core's phase model to say (`workspaceStart`): a start counts when it ends.
 */
export function startHistoryRowsQuery(db: Kysely<CoderDatabase>, filter: Pick<HistorySampleFilter, 'from' | 'templates'>) {
  const query = changedStartBuildsQuery(db, filter.from);
  return filter.templates !== undefined && filter.templates.length > 0 ? query.where('t.name', 'in', [...filter.templates]) : query;
}

/**
 * A sample computed outside the database (the whole start's, by the core's phase model), handed to the
 * summary and series statements as rows (`computedHistorySamples`).
 */
export interface HistoryComputedSample {
  readonly templateName: string;
  /** The outcome or phase. */
  readonly breakdown: string | null;
  /** When it counts, epoch µs. */
  readonly atMicros: number;
  /** When its duration starts, epoch µs (the build's creation). */
  readonly createdMicros: number;
  /** Whole µs; negative: dropped as negative (clock skew); null: dropped as invalid. */
  readonly durationMicros: number | null;
  readonly workspaceName: string;
  readonly username: string;
  /** The build id (a uuid): unique within a group, the details' key. */
  readonly sampleKey: string;
  readonly isPrebuild: boolean;
}

/**
 * Computed samples as a samples relation (`HistorySampleColumns`, plus `is_prebuild` and the breakdown
 * under `breakdownColumn`, the metric's label): one array parameter per column, unnested, so the summary
 * and series statements aggregate them exactly as they do samples the database selects. Instants are
 * built from whole µs, exactly.
 */
export function computedHistorySamples(samples: readonly HistoryComputedSample[], breakdownColumn: string): RawBuilder<HistorySampleColumns> {
  const column = <T>(pick: (sample: HistoryComputedSample) => T): T[] => samples.map(pick);
  const micros = (values: readonly (number | null)[]) => values.map((v) => (v === null ? null : String(Math.trunc(v))));
  return sql<HistorySampleColumns>`SELECT v.template_name, v.breakdown,
      'epoch'::timestamptz + v.at_us * interval '1 microsecond' AS at,
      'epoch'::timestamptz + v.created_us * interval '1 microsecond' AS created_at,
      v.duration_us, v.workspace_name, v.username, NULL::text AS agent_name, v.sample_key,
      CASE WHEN v.is_prebuild THEN 'true' ELSE 'false' END AS is_prebuild, v.breakdown AS ${sql.ref(breakdownColumn)}
    FROM unnest(
      ${column((s) => s.templateName)}::text[], ${column((s) => s.breakdown)}::text[],
      ${micros(column((s) => s.atMicros))}::bigint[], ${micros(column((s) => s.createdMicros))}::bigint[],
      ${micros(column((s) => s.durationMicros))}::bigint[], ${column((s) => s.workspaceName)}::text[],
      ${column((s) => s.username)}::text[], ${column((s) => s.sampleKey)}::uuid[], ${column((s) => s.isPrebuild)}::boolean[]
    ) AS v(template_name, breakdown, at_us, created_us, duration_us, workspace_name, username, sample_key, is_prebuild)`;
}

/** Who a start was, by build id (primary and unique keys: a few index lookups per sample). */
export function startHistoryDetails(db: Kysely<CoderDatabase>) {
  return db
    .selectFrom('workspace_builds as wb')
    .innerJoin('workspaces as w', 'w.id', 'wb.workspace_id')
    .innerJoin('users as u', 'u.id', 'w.owner_id')
    .select(['wb.id as sample_key', 'w.name as workspace_name', 'u.username as username', sql<string | null>`NULL::text`.as('agent_name'), 'wb.created_at as created_at']);
}

/**
 * The names of all templates, deleted ones too (Coder's rule does not look at `templates.deleted`, so
 * their workspaces' samples count), sorted: to tell an unknown `--template` apart.
 */
export function templateNamesQuery(db: Kysely<CoderDatabase>) {
  return db.selectFrom('templates').select('name').distinct().orderBy('name');
}

/** What a summary statement computes: the range, its trend step, the previous period and the buckets. */
export interface HistorySummaryOptions {
  /** Start of the reported range; samples from `previousSince` on are read. */
  readonly since: Date;
  readonly until: Date;
  /** Start of the period before `since` that the range is compared with. */
  readonly previousSince: Date;
  /** Length of one trend period, whole seconds. */
  readonly stepSeconds: number;
  /** Bucket upper bounds in whole microseconds, ascending (`+Inf` is implied). */
  readonly bucketBoundsMicros: readonly number[];
  /** Slowest samples kept per group. */
  readonly slowest: number;
  /** The family's details query, joined to the slowest only. */
  readonly details: Expression<HistorySampleDetails>;
}

/** Percentile fractions every summary computes, in this order. */
export const HISTORY_QUANTILES = [0.5, 0.9, 0.95, 0.99] as const;

/**
 * One row of the summary statement. `kind` tells which:
 * - `range`: one group (`template_name`, `breakdown`; `template_name` NULL: all templates) over the
 *   current range (`current` true) or the period before (false): count, percentiles, max, sum;
 * - `period`: one group over the trend period starting at `period_start`: the same figures;
 * - `bucket`: how many samples of one group and range are in bucket `bucket` (0 for the first bound,
 *   the number of bounds for `+Inf`), or dropped: `-1` negative durations (clock skew), `-2` unreadable;
 * - `slowest`: one sample among the `slowest` of its group in the current range, `rank` 1 the slowest.
 * Counts and durations are float8, so both drivers hand back numbers; durations are µs. Negative and
 * unreadable durations are left out of every figure but their `bucket` counts, as the exporter drops them.
 */
export interface HistorySummaryRow {
  readonly kind: 'range' | 'period' | 'bucket' | 'slowest';
  readonly template_name: string | null;
  readonly breakdown: string | null;
  readonly current: boolean | null;
  /** µs text (`utcMicrosText`) of the trend period's start. */
  readonly period_start: string | null;
  readonly count: number | null;
  /** At the fractions of `HISTORY_QUANTILES`; NULL when there is no sample. */
  readonly quantiles_us: number[] | null;
  readonly max_us: number | null;
  readonly sum_us: number | null;
  readonly bucket: number | null;
  readonly rank: number | null;
  readonly workspace_name: string | null;
  readonly username: string | null;
  readonly agent_name: string | null;
  readonly created_at: string | null;
  readonly at: string | null;
  readonly duration_us: number | null;
}

/**
 * Everything a report says about one family, in one statement. The samples are read once (a
 * materialized CTE); then the percentiles per group and range, per group and trend period, and over all
 * groups (one sorted aggregation with grouping sets, `percentile_cont`: exact); the bucket counts (a
 * hashed aggregation on each sample's bucket number); and the slowest, ranked among the samples at or
 * above their group's P99 only, so the ranking sorts a hundredth of the rows (a group of fewer than 100
 * samples per slowest one asked for is ranked whole).
 *
 * The groupings sort the samples by template: by the template's rank among the names of `templates`
 * (an integer, which sorts 3–4x faster than text compared under the database's collation), not by its
 * name, which is looked up again for the few result rows. The slowest are first cut by the lowest P99 of
 * all groups, a plain comparison, so only about a hundredth of the samples reach the join with their
 * group's figures.
 */
export function historySummaryQuery(samples: Expression<HistorySampleColumns>, options: HistorySummaryOptions): RawBuilder<HistorySummaryRow> {
  const { since, stepSeconds } = options;
  const slowest = Math.trunc(options.slowest);
  const step = `${stepSeconds} seconds`;
  const bounds = sql.raw(`ARRAY[${options.bucketBoundsMicros.map((b) => String(Math.trunc(b))).join(',')}]::bigint[]`);
  const quantiles = sql.raw(`ARRAY[${HISTORY_QUANTILES.join(',')}]::float8[]`);
  const p99 = HISTORY_QUANTILES.indexOf(0.99) + 1;
  /** A group with no more samples than this is ranked whole for its slowest. */
  const selectAll = sql.lit(100 * Math.max(1, slowest));
  /** `NULL::type AS name, ...` for the columns a branch of the union does not have. */
  const none = (columns: string) =>
    sql.raw(
      columns
        .split(',')
        .map((c) => c.trim().split(' '))
        .map(([name, type]) => `NULL::${type} AS ${name}`)
        .join(', '),
    );
  return sql<HistorySummaryRow>`WITH template_ranks AS MATERIALIZED (
    -- Coder's templates are few; every family's template_name is one of these names.
    SELECT n.name, row_number() OVER (ORDER BY n.name)::int AS rank FROM (SELECT DISTINCT name FROM templates) n
  ),
  samples AS MATERIALIZED (
    SELECT tr.rank AS template, x.breakdown, x.at, x.duration_us, x.sample_key,
      x.at >= ${since} AS current,
      CASE WHEN x.at >= ${since} THEN date_bin(${step}::interval, x.at, ${since}) END AS period_start
    FROM (${samples}) x
    JOIN template_ranks tr ON tr.name = x.template_name
  ),
  figures AS MATERIALIZED (
    SELECT CASE WHEN GROUPING(s.period_start) = 0 THEN 'period' ELSE 'range' END AS kind,
      s.template, s.breakdown,
      CASE WHEN GROUPING(s.current) = 0 THEN s.current END AS current,
      s.period_start,
      count(*)::float8 AS count,
      percentile_cont(${quantiles}) WITHIN GROUP (ORDER BY s.duration_us::float8) AS quantiles_us,
      max(s.duration_us)::float8 AS max_us,
      sum(s.duration_us)::float8 AS sum_us
    -- Only the columns the aggregation reads (OFFSET 0 keeps the projection): its sorts hold narrow rows.
    FROM (SELECT template, breakdown, current, period_start, duration_us FROM samples WHERE duration_us >= 0 OFFSET 0) s
    GROUP BY GROUPING SETS ((s.current, s.breakdown, s.template), (s.current, s.breakdown), (s.template, s.breakdown, s.period_start))
    HAVING GROUPING(s.period_start) = 1 OR s.period_start IS NOT NULL
  )
  SELECT f.kind, tr.name AS template_name, f.breakdown, f.current, ${utcMicrosText(sql`f.period_start`)} AS period_start,
    f.count, f.quantiles_us, f.max_us, f.sum_us, ${none('bucket int, rank float8, workspace_name text, username text, agent_name text, created_at text, at text, duration_us float8')}
  FROM figures f
  LEFT JOIN template_ranks tr ON tr.rank = f.template
  UNION ALL
  SELECT 'bucket', tr.name, b.breakdown, b.current, NULL, b.count, NULL, NULL, NULL, b.bucket,
    ${none('rank float8, workspace_name text, username text, agent_name text, created_at text, at text, duration_us float8')}
  FROM (
    SELECT s.template, s.breakdown, s.current, s.bucket, count(*)::float8 AS count
    FROM (
      SELECT template, breakdown, current,
        -- Bucket i holds bounds[i-1] < d <= bounds[i]; in whole µs d <= b is d - 1 < b, which width_bucket counts.
        CASE WHEN duration_us IS NULL THEN -2 WHEN duration_us < 0 THEN -1 ELSE width_bucket(duration_us - 1, ${bounds}) END AS bucket
      FROM samples
    ) s
    GROUP BY GROUPING SETS ((s.template, s.breakdown, s.current, s.bucket), (s.breakdown, s.current, s.bucket))
  ) b
  LEFT JOIN template_ranks tr ON tr.rank = b.template
  UNION ALL
  SELECT 'slowest', tr.name, r.breakdown, true, NULL, NULL, NULL, NULL, NULL, NULL,
    r.rank::float8, d.workspace_name, d.username, d.agent_name,
    ${utcMicrosText(sql`d.created_at`)}, ${utcMicrosText(sql`r.at`)}, r.duration_us::float8
  FROM (
    SELECT s.template, s.breakdown, s.at, s.duration_us, s.sample_key,
      row_number() OVER (PARTITION BY s.template, s.breakdown ORDER BY s.duration_us DESC, s.at, s.sample_key) AS rank
    FROM samples s
    JOIN figures f ON f.kind = 'range' AND f.current AND f.template = s.template AND coalesce(f.breakdown, '') = coalesce(s.breakdown, '')
    WHERE s.current AND s.duration_us >= 0 AND (s.duration_us >= f.quantiles_us[${sql.lit(p99)}] OR f.count <= ${selectAll})
      -- The lowest bar of all groups first: one comparison per sample, before the join's hashing.
      AND s.duration_us >= (SELECT coalesce(min(CASE WHEN f2.count <= ${selectAll} THEN 0 ELSE f2.quantiles_us[${sql.lit(p99)}] END), 0)
        FROM figures f2 WHERE f2.kind = 'range' AND f2.current)
  ) r
  JOIN template_ranks tr ON tr.rank = r.template
  JOIN (${options.details}) d ON d.sample_key = r.sample_key
  WHERE r.rank <= ${sql.lit(slowest)}`;
}

/** What a series statement computes: cumulative histograms per label set, in steps from `since`. */
export interface HistorySeriesOptions {
  readonly since: Date;
  readonly stepSeconds: number;
  /** The sample columns that label a series, in the metric's label order. */
  readonly labelColumns: readonly string[];
  readonly bucketBoundsMicros: readonly number[];
}

/**
 * One row per label set, step and bucket that has samples, ordered by label set, step, bucket: how many
 * samples of that step fall in that bucket (0 for the first bound, the number of bounds for `+Inf`; not
 * cumulative) and their sum in µs. Read it in order with a cursor and add up; negative and unreadable
 * durations are left out, as the exporter drops them.
 */
export interface HistorySeriesRow {
  readonly labels: string[];
  /** Index of the step from `since`: the samples in `[since + i·step, since + (i+1)·step)`. */
  readonly step_index: number;
  readonly bucket: number;
  readonly count: number;
  readonly sum_us: number;
}

export function historySeriesQuery(samples: Expression<HistorySampleColumns>, options: HistorySeriesOptions): RawBuilder<HistorySeriesRow> {
  const columns = options.labelColumns.map((name) => sql`coalesce(${sql.ref(`s.${name}`)}::text, '')`);
  const bounds = sql.raw(`ARRAY[${options.bucketBoundsMicros.map((b) => String(Math.trunc(b))).join(',')}]::bigint[]`);
  const labels = columns.length === 0 ? sql`ARRAY[]::text[]` : sql`ARRAY[${sql.join(columns)}]`;
  const since = sql`${options.since}::timestamptz`;
  const stepIndex = sql`((extract(epoch FROM date_bin(${`${options.stepSeconds} seconds`}::interval, s.at, ${since})) - extract(epoch FROM ${since})) / ${sql.lit(options.stepSeconds)})::int`;
  return sql<HistorySeriesRow>`SELECT ${labels} AS labels, ${stepIndex} AS step_index,
    width_bucket(s.duration_us - 1, ${bounds}) AS bucket, count(*)::float8 AS count, (sum(s.duration_us))::float8 AS sum_us
  FROM (${samples}) s
  WHERE s.duration_us >= 0
  GROUP BY 1, 2, 3
  ORDER BY 1, 2, 3`;
}
