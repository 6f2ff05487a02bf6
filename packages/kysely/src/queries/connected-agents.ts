import { sql, type Kysely } from 'kysely';
import type { CoderDatabase } from '../schema.js';
import { passedTimeoutText } from './connection-timeout.js';
import { currentAgents, type LatestBuildForm } from './current-agents.js';
import { uuidArrayLiteral } from './uuid-array-literal.js';
import { utcMicrosText } from './utc-micros-text.js';

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

/** One row of `connectedAgentsQuery`. */
export type ConnectedAgentRow = Awaited<ReturnType<ReturnType<typeof connectedAgentsQuery>['executeTakeFirstOrThrow']>>;
