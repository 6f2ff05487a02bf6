import { sql, type Kysely } from 'kysely';
import { currentBuildLookup } from './current-agents.js';
import { uuidArrayLiteral } from './uuid-array-literal.js';
import { passedTimeoutText, timeoutInstant } from './connection-timeout.js';
import type { CoderDatabase } from '../schema.js';
import { utcMicrosText } from './utc-micros-text.js';

export interface ChangedAgentsQueryOptions {
  /** Connected agents already handled in the overlap window, left out. */
  readonly excludeAgentIds?: readonly string[];
  /** For agents with `connection_timeout_seconds = 0`; 0 (the default) means they never time out. */
  readonly fallbackTimeoutSeconds?: number;
}

/**
 * One tick's read with the awaiting metrics on, in one pass over `workspace_agents`: the agents that
 * first connected at or after `since` (less `excludeAgentIds`) and the agents created at or after `since`
 * that still wait, of Coder PR #24179's rule. A row with `first_connected_at` NULL is a waiting agent (its
 * `timed_out_at` is its timeout instant, `due` whether that passed); otherwise a connected one (its
 * `timed_out_at` the timeout it passed before connecting, if any).
 *
 * Coder has no index on `first_connected_at` or `created_at`, so each of the two reads on its own is a
 * sequential scan of `workspace_agents`; asked together they share one, and the awaiting metrics add
 * no scan to the tick. The few agents found are then looked up by key (`currentBuildLookup`). With the
 * opt-in partial indexes the two conditions become one BitmapOr of two index scans.
 */
export function changedAgentsQuery(db: Kysely<CoderDatabase>, since: Date, options: ChangedAgentsQueryOptions = {}) {
  const fallback = options.fallbackTimeoutSeconds ?? 0;
  const excluded = uuidArrayLiteral(options.excludeAgentIds ?? []);
  // One array parameter, typed by the cast, so it is planned as a constant: PostgreSQL 15+ hashes `<> ALL`.
  const connectedNew =
    excluded === undefined
      ? sql<boolean>`first_connected_at >= ${since}`
      : sql<boolean>`(first_connected_at >= ${since} AND id <> ALL(${excluded}::uuid[]))`;
  const timeoutAt = timeoutInstant(fallback);
  return db
    .with(
      (wc) => wc('changed').materialized(),
      (qb) =>
        qb
          .selectFrom('workspace_agents')
          .select(['id', 'name', 'created_at', 'first_connected_at', 'resource_id', 'connection_timeout_seconds'])
          .where('deleted', '=', false)
          .where(sql<boolean>`(${connectedNew} OR (first_connected_at IS NULL AND created_at >= ${since}))`),
    )
    .selectFrom('changed as wa')
    .innerJoinLateral((eb) => currentBuildLookup(eb).as('cur'), (join) => join.onTrue())
    .select([
      'wa.id as agent_id',
      utcMicrosText(sql<Date>`wa.created_at`).as('created_at'),
      sql<string | null>`(CASE WHEN wa.first_connected_at IS NULL THEN NULL ELSE ${utcMicrosText(sql<Date>`wa.first_connected_at`)} END)`.as(
        'first_connected_at',
      ),
      sql<string | null>`(CASE WHEN wa.first_connected_at IS NOT NULL THEN ${passedTimeoutText(fallback)}
        WHEN ${timeoutAt} IS NOT NULL THEN ${utcMicrosText(timeoutAt)} END)`.as('timed_out_at'),
      sql<boolean>`(wa.first_connected_at IS NULL AND coalesce(${timeoutAt} < now(), false))`.as('due'),
      'wa.name as agent_name',
      'cur.username as username',
      'cur.workspace_name as workspace_name',
      'cur.template_name as template_name',
      'cur.template_version_name as template_version_name',
    ]);
}

/** One row of `changedAgentsQuery`. */
export type ChangedAgentRow = Awaited<ReturnType<ReturnType<typeof changedAgentsQuery>['executeTakeFirstOrThrow']>>;
