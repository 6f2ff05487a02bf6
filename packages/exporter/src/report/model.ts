/**
 * The report as data: what `--format json` writes field for field (snake_case, durations in seconds,
 * instants as RFC 3339 UTC with microseconds), and what the table and HTML formats render.
 * A renamed or removed field breaks readers: `REPORT_SCHEMA_VERSION` changes with any such change.
 */

export const REPORT_SCHEMA_VERSION = 1;

export interface HistoryReport {
  readonly schema_version: typeof REPORT_SCHEMA_VERSION;
  /** The database's clock when the report was read. */
  readonly generated_at: string;
  readonly range: ReportRange;
  /** The `--template` filter; empty: every template. */
  readonly templates_filter: readonly string[];
  readonly families: readonly FamilyReport[];
}

export interface ReportRange {
  readonly since: string;
  readonly until: string;
  readonly step_seconds: number;
  /** Start of the period of the same length before `since` that `previous` describes. */
  readonly previous_since: string;
}

export interface FamilyReport {
  /** `first_connection`; further families (the whole start, its phases) add their own. */
  readonly family: string;
  readonly title: string;
  /** The Prometheus histogram the exporter serves for it. */
  readonly metric: string;
  readonly bucket_bounds_seconds: readonly number[];
  /** What `groups[].breakdown` holds (e.g. `outcome`, `phase`); null: groups are templates only. */
  readonly breakdown_label: string | null;
  /** Every template (and breakdown value) with samples in the range or the previous period, by name. */
  readonly groups: readonly GroupReport[];
  /** All groups together (per breakdown value when there is one). */
  readonly totals: readonly GroupReport[];
}

export interface GroupReport {
  /** Null in `totals`. */
  readonly template_name: string | null;
  readonly breakdown: string | null;
  /** The range `[since, until)`. */
  readonly current: Stats;
  /** The period of the same length before it. */
  readonly previous: Stats;
  /** `current` against `previous`; null where either has no value. */
  readonly change: Change;
  /** One entry per `step_seconds` from `since`, every period present (count 0 when empty). */
  readonly trend: readonly TrendPeriod[];
  /** The slowest samples of the range, slowest first (empty in `totals`). */
  readonly slowest: readonly SlowSample[];
}

export interface Stats {
  /** Samples counted (as the histogram counts them). */
  readonly count: number;
  /** Left out as the exporter drops them: negative durations (clock skew) and unreadable timestamps. */
  readonly dropped_negative: number;
  readonly dropped_invalid: number;
  /** Exact (`percentile_cont`), null without samples. */
  readonly p50_seconds: number | null;
  readonly p90_seconds: number | null;
  readonly p95_seconds: number | null;
  readonly p99_seconds: number | null;
  readonly max_seconds: number | null;
  readonly mean_seconds: number | null;
  /** Count per bucket (not cumulative): `le` the bound in seconds, `null` for `+Inf`. */
  readonly buckets: readonly BucketCount[];
}

export interface BucketCount {
  readonly le: number | null;
  readonly count: number;
}

export interface Change {
  /** `current.count / previous.count - 1`. */
  readonly count_ratio: number | null;
  readonly p50_ratio: number | null;
  readonly p95_ratio: number | null;
  readonly p99_ratio: number | null;
}

export interface TrendPeriod {
  readonly start: string;
  readonly end: string;
  readonly count: number;
  readonly p50_seconds: number | null;
  readonly p90_seconds: number | null;
  readonly p95_seconds: number | null;
  readonly p99_seconds: number | null;
  readonly max_seconds: number | null;
  /** P95 against the period before; null for the first period or where either has none. */
  readonly p95_change_ratio: number | null;
}

export interface SlowSample {
  readonly workspace_name: string;
  readonly username: string;
  /** Null when the sample is not one agent's (e.g. a whole start). */
  readonly agent_name: string | null;
  /** When the duration started (the agent's `created_at`). */
  readonly started_at: string;
  /** When it was counted (the first connection). */
  readonly at: string;
  readonly duration_seconds: number;
}

/** Whether a report has any sample in its range, in any family. */
export function reportHasData(report: HistoryReport): boolean {
  return report.families.some((family) => family.totals.some((total) => total.current.count > 0));
}
