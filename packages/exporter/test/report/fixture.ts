/**
 * Seeded history for the report's tests: log-normal delays over every bucket, then µs traps at every
 * bound (1 µs below, on, 1 µs above), zero durations, negative durations (clock skew), an unreadable
 * `created_at`, deleted workspaces and agents, old builds. Plus what the tests need to run the report
 * and an independent SQL computation of what it should say.
 */
import { PassThrough } from 'node:stream';
import { FIRST_CONNECTION_BUCKET_BOUNDARIES } from '@agentconn/core';
import type { CoderDatabase } from '@agentconn/kysely';
import { connectDelays, generateCoderData, migrateToLatest, type GeneratedCoderData } from '@agentconn/kysely/testing';
import { sql, type Kysely } from 'kysely';
import { runReport } from '../../src/report/command.js';

/** The generated builds' latest creation; the history spreads over the 12 days before it. */
export const BASE_TIME = '2026-11-20T12:00:00.000000Z';
export const BASE_MS = Date.parse(BASE_TIME);
export const DAY_MS = 86_400_000;

export async function seedHistory(db: Kysely<CoderDatabase>, options: { workspaces?: number; spanDays?: number } = {}): Promise<GeneratedCoderData> {
  const { workspaces = 1200, spanDays = 12 } = options;
  await migrateToLatest(db);
  const data = await generateCoderData(db, {
    seed: 27,
    workspaces,
    users: 40,
    templates: 4,
    baseTime: BASE_TIME,
    spanSeconds: spanDays * 86_400,
    deletedWorkspaceRatio: 0.05,
    deletedAgentRatio: 0.03,
    negativeRatio: 0.02,
    neverConnectedRatio: 0.05,
    // Median 40 s, wide: samples in every bucket, a few past an hour.
    connectDelay: connectDelays.logNormal(40, 1.9),
  });
  // µs traps: agents that count get durations on a bound, 1 µs below and 1 µs above it, and 0.
  const counted = data.agents.filter((a) => a.latestBuild && !a.workspaceDeleted && !a.deleted && a.firstConnectedAtMicros !== null);
  const traps: { id: string; micros: number }[] = [];
  let next = 0;
  for (const bound of FIRST_CONNECTION_BUCKET_BOUNDARIES) {
    for (const delta of [-1, 0, 1]) traps.push({ id: counted[next++ * 7]!.id, micros: bound * 1_000_000 + delta });
  }
  traps.push({ id: counted[next++ * 7]!.id, micros: 0 }, { id: counted[next++ * 7]!.id, micros: 1 });
  for (const trap of traps) {
    await sql`UPDATE workspace_agents SET first_connected_at = created_at + ${trap.micros} * interval '1 microsecond' WHERE id = ${trap.id}`.execute(db);
  }
  // One agent whose created_at cannot be read: dropped as invalid, by the exporter and the report.
  await sql`UPDATE workspace_agents SET created_at = '-infinity' WHERE id = ${counted[next * 7]!.id}`.execute(db);
  return data;
}

export interface ReportRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `report` in this process, on a supplied database or with the flags' URL. */
export async function runReportCaptured(argv: readonly string[], db?: Kysely<CoderDatabase>, env: NodeJS.ProcessEnv = {}): Promise<ReportRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  const code = await runReport(argv, { env, stdout, stderr, ...(db !== undefined && { db }) });
  return { code, stdout: out, stderr: err };
}

export interface ExpectedStats {
  readonly count: number;
  readonly negative: number;
  readonly quantiles: readonly number[];
  readonly max: number | null;
  /** Count per bucket, not cumulative, `+Inf` last. */
  readonly buckets: readonly number[];
}

/**
 * What the report should say for `[from, until)`, per template, written independently: Coder PR
 * #24179's query as it is (latest build by the max subquery), durations as numeric seconds. With
 * `allTemplates`, one entry (key null) for all templates together.
 */
export async function expectedByTemplate(
  db: Kysely<CoderDatabase>,
  from: Date,
  until: Date,
  options: { readonly allTemplates?: boolean } = {},
): Promise<Map<string | null, ExpectedStats>> {
  const bounds = FIRST_CONNECTION_BUCKET_BOUNDARIES;
  const bucketColumns = sql.join(
    [...bounds, null].map((bound, i) => {
      const lower = i === 0 ? sql`TRUE` : sql`d > ${sql.lit(bounds[i - 1]!)}::numeric`;
      const upper = bound === null ? sql`TRUE` : sql`d <= ${sql.lit(bound)}::numeric`;
      return sql`count(*) FILTER (WHERE d >= 0 AND ${lower} AND ${upper})::int`;
    }),
  );
  const { rows } = await sql<{ template: string | null; count: number; negative: number; q: number[] | null; max: number | null; buckets: number[] }>`
    WITH d AS (
      SELECT ${options.allTemplates === true ? sql`NULL::text` : sql`t.name`} AS template, extract(epoch FROM wa.first_connected_at - wa.created_at) AS d
      FROM workspaces w
      JOIN users u ON w.owner_id = u.id
      JOIN templates t ON w.template_id = t.id
      JOIN workspace_builds wb ON w.id = wb.workspace_id
      LEFT JOIN template_versions tv ON wb.template_version_id = tv.id
      JOIN workspace_resources wr ON wb.job_id = wr.job_id
      JOIN workspace_agents wa ON wr.id = wa.resource_id
      WHERE w.deleted = false
        AND wb.build_number = (SELECT MAX(build_number) FROM workspace_builds wb2 WHERE wb2.workspace_id = w.id)
        AND wa.deleted = false
        AND wa.first_connected_at >= ${from} AND wa.first_connected_at < ${until}
        AND isfinite(wa.created_at)
    )
    SELECT template, count(*) FILTER (WHERE d >= 0)::int AS count, count(*) FILTER (WHERE d < 0)::int AS negative,
      percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY d::float8) FILTER (WHERE d >= 0) AS q,
      (max(d) FILTER (WHERE d >= 0))::float8 AS max,
      ARRAY[${bucketColumns}] AS buckets
    FROM d GROUP BY template`.execute(db);
  return new Map(rows.map((r) => [r.template, { count: r.count, negative: r.negative, quantiles: r.q ?? [], max: r.max, buckets: r.buckets }]));
}

/** Equal to the microsecond's rounding noise: float8 seconds against float8 microseconds. */
export function closeTo(actual: number | null, expected: number | null | undefined): boolean {
  if (actual === null || expected === null || expected === undefined) return actual === (expected ?? null);
  return Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));
}

/** The key paths of a JSON value, arrays as `[]`, with the type of each leaf: what a JSON snapshot holds. */
export function shape(value: unknown, path = '$', out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) shape(item, `${path}[]`, out);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) shape(inner, `${path}.${key}`, out);
  } else {
    out.add(`${path}: ${value === null ? 'null' : typeof value}`);
  }
  return out;
}
