import { sql, type ExpressionBuilder, type Kysely } from 'kysely';
import { currentAgents, noNewerBuild } from './connected-agents.js';
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

/**
 * For one agent row `wa` (LATERAL): its build, if that is the latest of a non-deleted workspace, with
 * the owner's username, the workspace's and the template's names and the template version's name
 * (LEFT JOIN, as Coder PR #24179). `OFFSET 0` keeps it a per-row lookup by key: left to itself the
 * planner starts from every workspace, or hashes every build and resource, which costs the whole
 * population for a handful of agents.
 */
export function currentBuildLookup(eb: ExpressionBuilder<CoderDatabase & { wa: { resource_id: string } }, 'wa'>) {
  return eb
    .selectFrom('workspace_resources as wr')
    .innerJoin('workspace_builds as wb', 'wb.job_id', 'wr.job_id')
    .innerJoin('workspaces as w', 'w.id', 'wb.workspace_id')
    .innerJoin('users as u', 'u.id', 'w.owner_id')
    .innerJoin('templates as t', 't.id', 'w.template_id')
    .leftJoin('template_versions as tv', 'tv.id', 'wb.template_version_id')
    .whereRef('wr.id', '=', 'wa.resource_id')
    .where('w.deleted', '=', false)
    .where(noNewerBuild())
    .select(['t.name as template_name', 'u.username as username', 'w.name as workspace_name', 'tv.name as template_version_name'])
    .offset(0);
}

/** One row of `awaitingAgentsQuery`. */
export type AwaitingAgentRow = Awaited<ReturnType<ReturnType<typeof awaitingAgentsQuery>['executeTakeFirstOrThrow']>>;
