import { sql, type Expression, type Kysely, type RawBuilder, type SelectQueryBuilder } from 'kysely';
import { PREBUILDS_SYSTEM_USER_ID, type CoderDatabase } from '../schema.js';
import { uuidArrayLiteral } from './uuid-array-literal.js';
import { utcMicrosText } from './utc-micros-text.js';

/**
 * The whole start's reads. Each returns start builds (`transition = 'start'`) as rows of one build and one of
 * its agents (LEFT JOIN: a build without agents is one row with the agent columns NULL), timestamps as µs
 * text, so the core's phase model sees exactly what Coder wrote. Sub-agents are returned (with their
 * `parent_id`); the model leaves them out, as Coder's `GetWorkspaceBuildMetricsByResourceID` does.
 */

const UUID_TEXT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** µs text of a nullable timestamp; NULL stays NULL. */
function microsText(timestamp: Expression<Date | null>): RawBuilder<string | null> {
  return utcMicrosText(timestamp) as RawBuilder<string | null>;
}

/** The instant an agent passes its connection timeout, or NULL for 0 (never, as in Coder). `wa` is the agent. */
const TIMEOUT_AT = sql<Date | null>`(CASE WHEN wa.connection_timeout_seconds > 0 AND wa.created_at < '10000-01-01 00:00:00+00'::timestamptz
  THEN wa.created_at + wa.connection_timeout_seconds * interval '1 second' END)`;

type BuildsFrom = SelectQueryBuilder<CoderDatabase & { c: { id: string } }, 'c', object>;

/**
 * From a relation `c(id)` of job ids: the start builds of those jobs with their job, labels, the instant a
 * newer build superseded them, and each agent of the build's resources.
 */
function startBuildRows(from: BuildsFrom) {
  return from
    .innerJoin('workspace_builds as wb', 'wb.job_id', 'c.id')
    .innerJoin('provisioner_jobs as pj', 'pj.id', 'wb.job_id')
    .innerJoin('workspaces as w', 'w.id', 'wb.workspace_id')
    .innerJoin('users as u', 'u.id', 'w.owner_id')
    .innerJoin('templates as t', 't.id', 'w.template_id')
    // `created_at` of the workspace's next build, on the unique (workspace_id, build_number) index, once per
    // build (a subquery in the select list would run once per use in the µs text's CASE).
    .leftJoinLateral(
      (eb) =>
        eb
          .selectFrom('workspace_builds as nb')
          .whereRef('nb.workspace_id', '=', 'wb.workspace_id')
          .whereRef('nb.build_number', '>', 'wb.build_number')
          .select((nb) => nb.fn.min('nb.created_at').as('at'))
          .as('sup'),
      (join) => join.onTrue(),
    )
    .leftJoin(
      (eb) =>
        eb
          .selectFrom('workspace_resources as wr')
          .innerJoin('workspace_agents as wa', 'wa.resource_id', 'wr.id')
          .select([
            'wr.job_id',
            'wa.id',
            'wa.parent_id',
            'wa.created_at',
            'wa.first_connected_at',
            'wa.ready_at',
            'wa.lifecycle_state',
            'wa.connection_timeout_seconds',
          ])
          .as('wa'),
      (join) => join.onRef('wa.job_id', '=', 'wb.job_id'),
    )
    .where('wb.transition', '=', 'start')
    .select((eb) => [
      'wb.id as build_id',
      microsText(eb.ref('wb.created_at')).as('build_created_at'),
      'pj.id as job_id',
      sql<string>`pj.type::text`.as('job_type'),
      microsText(eb.ref('pj.started_at')).as('job_started_at'),
      microsText(eb.ref('pj.completed_at')).as('job_completed_at'),
      microsText(eb.ref('pj.canceled_at')).as('job_canceled_at'),
      'pj.error as job_error',
      't.name as template_name',
      'u.username as username',
      'w.name as workspace_name',
      sql<boolean>`(w.owner_id = ${PREBUILDS_SYSTEM_USER_ID}::uuid)`.as('is_prebuild'),
      microsText(eb.ref('sup.at')).as('superseded_at'),
      'wa.id as agent_id',
      'wa.parent_id as agent_parent_id',
      microsText(eb.ref('wa.created_at')).as('agent_created_at'),
      microsText(eb.ref('wa.first_connected_at')).as('agent_first_connected_at'),
      microsText(eb.ref('wa.ready_at')).as('agent_ready_at'),
      sql<string | null>`wa.lifecycle_state::text`.as('agent_lifecycle_state'),
      'wa.connection_timeout_seconds as agent_connection_timeout_seconds',
    ])
    .orderBy('wb.id')
    .orderBy('wa.id');
}

/**
 * The start builds with something new at or after `since`: their job started or completed, or one of their
 * agents first connected, became ready, or passed its connection timeout (before the transaction's `now()`).
 * Coder has no index on any of these columns: without the opt-in indexes, one sequential scan of
 * `provisioner_jobs` and one of `workspace_agents`; the few builds found are then joined by key.
 */
export function changedStartBuildsQuery(db: Kysely<CoderDatabase>, since: Date, excludeBuildIds: readonly string[] = []) {
  const excluded = uuidArrayLiteral(excludeBuildIds);
  const query = db
    .with(
      (wc) => wc('c').materialized(),
      (qb) =>
        qb
          .selectFrom('provisioner_jobs as pj')
          .select('pj.id')
          .where((eb) => eb.or([eb('pj.started_at', '>=', since), eb('pj.completed_at', '>=', since)]))
          .union(
            qb
              .selectFrom('workspace_agents as wa')
              .innerJoin('workspace_resources as wr', 'wr.id', 'wa.resource_id')
              .select('wr.job_id as id')
              .where((eb) =>
                eb.or([
                  eb('wa.first_connected_at', '>=', since),
                  eb('wa.ready_at', '>=', since),
                  sql<boolean>`(wa.first_connected_at IS NULL AND ${TIMEOUT_AT} >= ${since} AND ${TIMEOUT_AT} < now())`,
                ]),
              ),
          ),
    )
    .selectFrom('c')
    .$call(startBuildRows);
  // Builds whose start the poller already observed (the overlap): one constant array, hashed by PostgreSQL.
  return excluded === undefined ? query : query.where(sql<boolean>`wb.id <> ALL(${excluded}::uuid[])`);
}

/**
 * Every start build (for a first read without a bound): the same rows as `changedStartBuildsQuery` for all
 * of them. Used by `backfill: 'all'`.
 */
export function allStartBuildsQuery(db: Kysely<CoderDatabase>) {
  return db
    .with(
      (wc) => wc('c'),
      (qb) => qb.selectFrom('provisioner_jobs as pj').select('pj.id'),
    )
    .selectFrom('c')
    .$call(startBuildRows);
}

/**
 * The latest start build of every non-deleted workspace that may have no outcome yet: its job has not
 * completed (Coder's `idx_provisioner_jobs_status` finds them), or one of its agents has no `ready_at`.
 * The phase model decides which really are in progress (a timed-out one is not).
 *
 * `knownBuildIds` (the builds in progress at the last read, and those that changed since) are looked up by
 * key, and returned even when they ended. Without `reconcile` the agents are not scanned: a build whose job
 * completed was either in progress then or changed since. With it (a first read, a new leader), every agent
 * without `ready_at` is read too.
 */
export function startsInProgressQuery(db: Kysely<CoderDatabase>, knownBuildIds: readonly string[] = [], reconcile = true) {
  const known = uuidArrayLiteral(knownBuildIds) ?? '{}';
  return db
    .with(
      (wc) => wc('c').materialized(),
      (qb) => {
        const openJobs = qb
          .selectFrom('provisioner_jobs as pj')
          .select('pj.id')
          .where(sql<boolean>`pj.job_status IN ('pending', 'running', 'canceling')`);
        const knownJobs = openJobs.union(qb.selectFrom('workspace_builds as kb').select('kb.job_id as id').where(sql<boolean>`kb.id = ANY(${known}::uuid[])`));
        return reconcile
          ? knownJobs.union(
              qb
                .selectFrom('workspace_agents as wa')
                .innerJoin('workspace_resources as wr', 'wr.id', 'wa.resource_id')
                .select('wr.job_id as id')
                .where('wa.ready_at', 'is', null)
                .where('wa.parent_id', 'is', null),
            )
          : knownJobs;
      },
    )
    .selectFrom('c')
    .$call(startBuildRows)
    .where('w.deleted', '=', false)
    .where(
      sql<boolean>`NOT EXISTS (SELECT 1 FROM workspace_builds AS nb2 WHERE nb2.workspace_id = wb.workspace_id AND nb2.build_number > wb.build_number)`,
    );
}

/**
 * The stage timings of the given jobs, per job and stage as Coder's `provisioner_job_stats` computes them
 * (`MIN(started_at)`, `MAX(ended_at)`), with the count of rows that end before they start.
 */
export function jobStagesQuery(db: Kysely<CoderDatabase>, jobIds: readonly string[]) {
  const ids = uuidArrayLiteral(jobIds) ?? '{}';
  return db
    .selectFrom('provisioner_job_timings as pjt')
    .where(sql<boolean>`pjt.job_id = ANY(${ids}::uuid[])`)
    .groupBy(['pjt.job_id', 'pjt.stage'])
    .select((eb) => [
      'pjt.job_id',
      sql<string>`pjt.stage::text`.as('stage'),
      microsText(eb.fn.min('pjt.started_at')).as('started_at'),
      microsText(eb.fn.max('pjt.ended_at')).as('ended_at'),
      sql<number>`(count(*) FILTER (WHERE pjt.ended_at < pjt.started_at))::int`.as('negative_rows'),
    ])
    .orderBy('pjt.job_id')
    .orderBy('pjt.stage');
}

/**
 * Runs of agent scripts at start (`stage = 'start'`) that ended at or after `since` (all without it), on
 * agents of start builds, with the script's display name and the build's labels.
 */
export function startScriptRunsQuery(
  db: Kysely<CoderDatabase>,
  since: Date | undefined,
  excludeRuns: readonly { readonly scriptId: string; readonly startedAt: string }[] = [],
  agentIds?: readonly string[],
) {
  const base = db
    .selectFrom('workspace_agent_script_timings as st')
    .innerJoin('workspace_agent_scripts as s', 's.id', 'st.script_id')
    .innerJoin('workspace_agents as wa', 'wa.id', 's.workspace_agent_id')
    .innerJoin('workspace_resources as wr', 'wr.id', 'wa.resource_id')
    .innerJoin('workspace_builds as wb', 'wb.job_id', 'wr.job_id')
    .innerJoin('workspaces as w', 'w.id', 'wb.workspace_id')
    .innerJoin('users as u', 'u.id', 'w.owner_id')
    .innerJoin('templates as t', 't.id', 'w.template_id')
    .where(sql<boolean>`st.stage = 'start'`)
    .where('wb.transition', '=', 'start')
    .select((eb) => [
      'st.script_id',
      'wb.id as build_id',
      's.display_name as script',
      sql<string>`st.status::text`.as('status'),
      microsText(eb.ref('st.started_at')).as('started_at'),
      microsText(eb.ref('st.ended_at')).as('ended_at'),
      't.name as template_name',
      'u.username as username',
      'w.name as workspace_name',
      sql<boolean>`(w.owner_id = ${PREBUILDS_SYSTEM_USER_ID}::uuid)`.as('is_prebuild'),
    ]);
  // Through the agents that became ready (start scripts end before ready_at): Coder's index on
  // workspace_agent_scripts(workspace_agent_id), then its key (script_id, started_at), instead of a scan.
  const query = agentIds === undefined ? base : base.where(sql<boolean>`s.workspace_agent_id = ANY(${uuidArrayLiteral(agentIds) ?? '{}'}::uuid[])`);
  const ordered = query.orderBy('st.ended_at').orderBy('st.script_id');
  if (since === undefined) return ordered;
  const runs = excludeRuns.filter((run) => UUID_TEXT.test(run.scriptId));
  const recent = ordered.where('st.ended_at', '>=', since);
  if (runs.length === 0) return recent;
  // Runs already observed in the overlap, by Coder's key (script_id, started_at).
  return recent.where(
    sql<boolean>`NOT EXISTS (SELECT 1 FROM unnest(${`{${runs.map((r) => r.scriptId).join(',')}}`}::uuid[], ${runs.map((r) => r.startedAt)}::timestamptz[]) AS done(script_id, started_at)
      WHERE done.script_id = st.script_id AND done.started_at = st.started_at)`,
  );
}

export type StartBuildRow = Awaited<ReturnType<ReturnType<typeof changedStartBuildsQuery>['executeTakeFirstOrThrow']>>;
export type JobStageRow = Awaited<ReturnType<ReturnType<typeof jobStagesQuery>['executeTakeFirstOrThrow']>>;
export type StartScriptRunRow = Awaited<ReturnType<ReturnType<typeof startScriptRunsQuery>['executeTakeFirstOrThrow']>>;
