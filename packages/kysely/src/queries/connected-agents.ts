import { sql, type Kysely, type RawBuilder } from 'kysely';
import { passedTimeoutText } from './connection-timeout.js';
import { utcMicrosText } from './utc-micros-text.js';

export { utcMicrosText } from './utc-micros-text.js';
import type { CoderDatabase } from '../schema.js';

export interface ConnectedAgentsQueryOptions {
  /** Agents already handled in the overlap window, left out of an incremental query. */
  readonly excludeAgentIds?: readonly string[];
  /** How the latest build is written. Default `no-newer-build`. */
  readonly latestBuild?: LatestBuildForm;
  /** Also select `timed_out_at` (the awaiting metrics), with this fallback for a timeout of 0. */
  readonly timeouts?: { readonly fallbackTimeoutSeconds: number };
}

/**
 * The connected agents, with their two timestamps as µs UTC text (see `utcMicrosText`) and the label
 * values. Coder PR #24179's rule (Coder `GetWorkspaceAgentsForMetrics`): agents of the latest build
 * (`build_number` = the workspace's maximum; by default written as "no newer build", see
 * `LatestBuildForm`) of non-deleted workspaces, agents not deleted; joined to the owner's username, the
 * template's name and (LEFT JOIN, as Coder PR #24179) the template version's name.
 * Added: only agents that have connected, and with `connectedSince` only those that first connected
 * at or after it (the incremental query), leaving out `excludeAgentIds` (agents already handled in
 * the overlap; ids that are not UUIDs cannot be in the table and are not sent). With `timeouts`, also
 * `timed_out_at`: the timeout the agent passed before it connected, or NULL.
 */
export function connectedAgentsQuery(db: Kysely<CoderDatabase>, connectedSince?: Date, options: ConnectedAgentsQueryOptions = {}) {
  const { excludeAgentIds = [], latestBuild = 'no-newer-build', timeouts } = options;
  let query = currentAgents(db, latestBuild)
    .select((eb) => [
      'wa.id as agent_id',
      utcMicrosText(eb.ref('wa.created_at')).as('created_at'),
      utcMicrosText(eb.ref('wa.first_connected_at')).as('first_connected_at'),
      'wa.name as agent_name',
      'u.username as username',
      'w.name as workspace_name',
      't.name as template_name',
      'tv.name as template_version_name',
      (timeouts === undefined ? sql<string | null>`NULL::text` : passedTimeoutText(timeouts.fallbackTimeoutSeconds)).as('timed_out_at'),
    ])
    .where('wa.first_connected_at', 'is not', null);
  if (connectedSince === undefined) return query;
  query = query.where('wa.first_connected_at', '>=', connectedSince);
  const excluded = uuidArrayLiteral(excludeAgentIds);
  // One array parameter, typed by the cast, so it is planned as a constant: PostgreSQL 15+ hashes `<> ALL`.
  if (excluded !== undefined) query = query.where(sql<boolean>`wa.id <> ALL(${excluded}::uuid[])`);
  return query;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** `{id,id,...}` of the ids that are UUIDs (a cast error would fail the whole query), or undefined if none. */
export function uuidArrayLiteral(ids: readonly string[]): string | undefined {
  const kept = ids.filter((id) => UUID.test(id));
  return kept.length === 0 ? undefined : `{${kept.join(',')}}`;
}

/**
 * How "the latest build" is written; both select the same rows. `max-subquery` (Coder PR #24179's form):
 * `build_number = (SELECT max(build_number) ... WHERE workspace_id = w.id)`. PostgreSQL estimates that
 * equality at 0.5 % of the rows, so past a few hundred agents the plan turns into a hash of every
 * workspace with the subquery run once per row. `no-newer-build`: `NOT EXISTS (a build of the same
 * workspace with a larger build_number)`, an anti-join that PostgreSQL estimates right and runs on the
 * unique (workspace_id, build_number) index: 4x faster on 6 000 agents and 5x on a full scan of 100k
 * (figures in bench/RESULTS.md).
 */
export type LatestBuildForm = 'max-subquery' | 'no-newer-build';

/**
 * Coder PR #24179's rule, shared by both queries: agents (`wa`) of the latest build (`wb`) of non-deleted
 * workspaces (`w`), agents not deleted, joined to the owner (`u`), the template (`t`) and, LEFT JOIN,
 * the template version (`tv`).
 */
export function currentAgents(db: Kysely<CoderDatabase>, latestBuild: LatestBuildForm = 'max-subquery') {
  const query = db
    .selectFrom('workspaces as w')
    .innerJoin('users as u', 'w.owner_id', 'u.id')
    .innerJoin('templates as t', 'w.template_id', 't.id')
    .innerJoin('workspace_builds as wb', 'w.id', 'wb.workspace_id')
    .leftJoin('template_versions as tv', 'wb.template_version_id', 'tv.id')
    .innerJoin('workspace_resources as wr', 'wb.job_id', 'wr.job_id')
    .innerJoin('workspace_agents as wa', 'wr.id', 'wa.resource_id')
    .where('w.deleted', '=', false);
  const latest =
    latestBuild === 'no-newer-build'
      ? query.where(noNewerBuild())
      : query.where('wb.build_number', '=', (eb) =>
          eb
            .selectFrom('workspace_builds as wb2')
            .select((eb2) => eb2.fn.max('wb2.build_number').as('max_build_number'))
            .whereRef('wb2.workspace_id', '=', 'w.id'),
        );
  return latest.where('wa.deleted', '=', false);
}

/**
 * "`wb` is the latest build of its workspace", written as no build of the same workspace with a larger
 * `build_number`: an anti-join on the unique `(workspace_id, build_number)` index (see `LatestBuildForm`).
 */
export function noNewerBuild(): RawBuilder<boolean> {
  return sql<boolean>`NOT EXISTS (SELECT 1 FROM workspace_builds AS wb2 WHERE wb2.workspace_id = wb.workspace_id AND wb2.build_number > wb.build_number)`;
}

/** One row of `connectedAgentsQuery`. */
export type ConnectedAgentRow = Awaited<ReturnType<ReturnType<typeof connectedAgentsQuery>['executeTakeFirstOrThrow']>>;

/**
 * Coder PR #24179's query as Coder runs it every minute (`GetWorkspaceAgentsForMetrics`): every current agent
 * with all its columns, connected or not. For the benchmark's baseline; the source never runs it.
 */
export function workspaceAgentsForMetricsQuery(db: Kysely<CoderDatabase>) {
  return currentAgents(db)
    .select([
      'w.id as workspace_id',
      'w.name as workspace_name',
      'u.username as owner_username',
      't.name as template_name',
      'tv.name as template_version_name',
    ])
    .selectAll('wa');
}

/**
 * The database clock as µs text and this session's backend pid (to cancel the agents query on abort),
 * and optionally a statement timeout for the rest of the transaction (`set_config(..., true)` is
 * `SET LOCAL`), in one round trip. `now()` is the transaction's start, earlier than the snapshot of the
 * agents query that follows, so a watermark taken from it never skips a row that query could not see.
 *
 * On a hot standby also what it has replayed: the commit time of the last replayed transaction (rows
 * committed later on the primary are not visible yet), and the replay lag: `now()` minus that time
 * while received WAL waits to be replayed, 0 once all received WAL is replayed (an idle primary stops
 * the replay time but is no lag). Without a WAL receiver (archive recovery) it cannot tell idle from
 * behind and reports the age of the replay time. Every function used is executable by any role.
 */
export function transactionClockQuery(db: Kysely<CoderDatabase>, statementTimeoutMs?: number) {
  const columns = [
    utcMicrosText(sql<Date>`now()`).as('source_time'),
    sql<number>`pg_backend_pid()`.as('backend_pid'),
    sql<boolean>`pg_is_in_recovery()`.as('in_recovery'),
    utcMicrosText(sql<Date | null>`pg_last_xact_replay_timestamp()`).as('replayed_until'),
    sql<number | null>`(CASE WHEN pg_is_in_recovery() THEN
      CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0
      ELSE greatest(0, extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time())))
      END END)::float8`.as('replay_lag_s'),
  ];
  if (statementTimeoutMs === undefined) return db.selectNoFrom(columns);
  return db.selectNoFrom([
    ...columns,
    sql<string>`set_config('statement_timeout', ${String(statementTimeoutMs)}, true)`.as('statement_timeout'),
  ]);
}
