import { sql, type Kysely } from 'kysely';
import { currentAgents, currentBuildLookup } from './current-agents.js';
import { timeoutInstant } from './connection-timeout.js';
import { utcMicrosText } from './utc-micros-text.js';
import type { CoderDatabase } from '../schema.js';

export interface AwaitingAgentsQueryOptions {
  /** Only agents created at or after this instant (the incremental read). Undefined: every waiting agent. */
  readonly createdSince?: Date;
  /** Only these agent ids (the timeout candidates). */
  readonly ids?: readonly string[];
  /** For agents with `connection_timeout_seconds = 0`; 0 (the default) means they never time out. */
  readonly fallbackTimeoutSeconds?: number;
}

/**
 * The agents of Coder PR #24179's rule that have not connected yet (`first_connected_at IS NULL`), one row
 * each: id, creation and timeout instants as µs text (the timeout NULL when there is none), whether the
 * timeout has passed on the database's clock (strictly, as Coder's `now - created_at > timeout`), and
 * the four label values.
 *
 * With `createdSince` or `ids` the few waiting agents are selected first and then looked up one by one in
 * their build, workspace, owner and template by key (see `currentBuildLookup`), so the read costs the
 * agents it returns. Without either (a reconciliation: every waiting agent) the planner joins as it
 * likes: at 100k agents and more it hashes each table once, which costs a fraction of looking up tens
 * of thousands of agents one by one (figures in bench/RESULTS.md).
 */
export function awaitingAgentsQuery(db: Kysely<CoderDatabase>, options: AwaitingAgentsQueryOptions = {}) {
  const fallback = options.fallbackTimeoutSeconds ?? 0;
  if (options.createdSince === undefined && options.ids === undefined) {
    return currentAgents(db, 'no-newer-build')
      .where('wa.first_connected_at', 'is', null)
      .select(awaitingColumns(fallback, { username: 'u.username', workspace: 'w.name', template: 't.name' }));
  }
  return db
    .with(
      (wc) => wc('waiting').materialized(),
      (qb) => {
        let waiting = qb
          .selectFrom('workspace_agents')
          .select(['id', 'name', 'created_at', 'resource_id', 'connection_timeout_seconds'])
          .where('first_connected_at', 'is', null)
          .where('deleted', '=', false);
        if (options.createdSince !== undefined) waiting = waiting.where('created_at', '>=', options.createdSince);
        if (options.ids !== undefined) waiting = waiting.where('id', '=', sql<string>`ANY(${[...options.ids]}::uuid[])`);
        return waiting;
      },
    )
    .selectFrom('waiting as wa')
    .innerJoinLateral((eb) => currentBuildLookup(eb).as('cur'), (join) => join.onTrue())
    .select(awaitingColumns(fallback, { username: 'cur.username', workspace: 'cur.workspace_name', template: 'cur.template_name' }));
}

type LabelColumns =
  | { readonly username: 'u.username'; readonly workspace: 'w.name'; readonly template: 't.name' }
  | { readonly username: 'cur.username'; readonly workspace: 'cur.workspace_name'; readonly template: 'cur.template_name' };

function awaitingColumns(fallback: number, labels: LabelColumns) {
  const timeoutAt = timeoutInstant(fallback);
  return [
    sql<string>`wa.id`.as('agent_id'),
    utcMicrosText(sql<Date>`wa.created_at`).as('created_at'),
    sql<string | null>`(CASE WHEN ${timeoutAt} IS NULL THEN NULL ELSE ${utcMicrosText(timeoutAt)} END)`.as('timed_out_at'),
    sql<boolean>`coalesce(${timeoutAt} < now(), false)`.as('due'),
    sql<string>`wa.name`.as('agent_name'),
    sql<string>`${sql.ref(labels.username)}`.as('username'),
    sql<string>`${sql.ref(labels.workspace)}`.as('workspace_name'),
    sql<string>`${sql.ref(labels.template)}`.as('template_name'),
  ] as const;
}

/** One row of `awaitingAgentsQuery`. */
export type AwaitingAgentRow = Awaited<ReturnType<ReturnType<typeof awaitingAgentsQuery>['executeTakeFirstOrThrow']>>;
