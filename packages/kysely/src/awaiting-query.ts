import type { LabelKey } from '@agentconn/core';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { currentAgents, utcMicrosText } from './agents-query.js';
import type { CoderDatabase } from './schema.js';

/** The column each label comes from, in the seed's rule's aliases. */
const LABEL_COLUMNS = {
  template_name: 'cur.template_name',
  agent_name: 'wa.name',
  username: 'cur.username',
  workspace_name: 'cur.workspace_name',
} as const satisfies Record<LabelKey, string>;

/**
 * The agents of the seed's rule that have not connected yet (`first_connected_at IS NULL`), one row per
 * label set of `labels`: how many, and how long the oldest has waited on the database's clock (`now()`,
 * the transaction's start; never negative).
 *
 * The waiting agents are selected first, in a MATERIALIZED CTE, and only then looked up, one by one,
 * in their build, workspace, owner and template by key: left to itself the planner starts from every
 * workspace, or hashes every build and resource, which costs the whole population. With the opt-in index on
 * `first_connected_at` (btree indexes keep NULLs) the CTE reads the waiting agents' index entries only,
 * so the statement costs the waiting agents, not all agents; without it, one sequential scan.
 */
export function awaitingAgentsQuery(db: Kysely<CoderDatabase>, labels: readonly LabelKey[]) {
  const columns = labels.map((key) => sql.ref(LABEL_COLUMNS[key]));
  let query = db
    .with(
      (wc) => wc('waiting').materialized(),
      (qb) =>
        qb
          .selectFrom('workspace_agents')
          .select(['id', 'name', 'created_at', 'resource_id'])
          .where('first_connected_at', 'is', null)
          .where('deleted', '=', false),
    )
    .selectFrom('waiting as wa')
    // Per waiting agent, its build, workspace, owner and template by key. OFFSET 0 keeps the planner from
    // flattening this into hash joins over every build, resource and workspace.
    .innerJoinLateral(
      (eb) =>
        eb
          .selectFrom('workspace_resources as wr')
          .innerJoin('workspace_builds as wb', 'wb.job_id', 'wr.job_id')
          .innerJoin('workspaces as w', 'w.id', 'wb.workspace_id')
          .innerJoin('users as u', 'u.id', 'w.owner_id')
          .innerJoin('templates as t', 't.id', 'w.template_id')
          .whereRef('wr.id', '=', 'wa.resource_id')
          .where('w.deleted', '=', false)
          .where('wb.build_number', '=', (eb2) =>
            eb2
              .selectFrom('workspace_builds as wb2')
              .select((eb3) => eb3.fn.max('wb2.build_number').as('max_build_number'))
              .whereRef('wb2.workspace_id', '=', 'w.id'),
          )
          .select(['t.name as template_name', 'u.username as username', 'w.name as workspace_name'])
          .offset(0)
          .as('cur'),
      (join) => join.onTrue(),
    )
    .select([
      sql<number>`count(*)::int`.as('awaiting'),
      sql<number>`greatest(0, extract(epoch FROM now() - min(wa.created_at)))::float8`.as('oldest_wait_s'),
      ...labels.map((key, i) => sql<string>`${columns[i]}`.as(key)),
    ]);
  if (columns.length > 0) query = query.groupBy(columns);
  return query.having(sql<boolean>`count(*) > 0`);
}

/** One row of `awaitingAgentsQuery`: counts plus the requested label columns. */
export interface AwaitingAgentsRow {
  readonly awaiting: number;
  readonly oldest_wait_s: number;
  readonly [label: string]: string | number;
}

/**
 * The agent's connection timeout in seconds: its own `connection_timeout_seconds` when above 0 (Coder's
 * rule), else `fallbackSeconds` (0: the agent never times out, as in Coder).
 */
function effectiveTimeoutSeconds(fallbackSeconds: number): RawBuilder<number> {
  return sql<number>`(CASE WHEN wa.connection_timeout_seconds > 0 THEN wa.connection_timeout_seconds ELSE ${fallbackSeconds}::int END)`;
}

export interface TimedOutAgentsQueryOptions {
  /** Only timeouts at or after this instant (the incremental window). Undefined: all. */
  readonly timedOutSince?: Date;
  /** For agents with `connection_timeout_seconds = 0`; 0 (the default) means they never time out. */
  readonly fallbackTimeoutSeconds?: number;
}

/**
 * The agents of the seed's rule whose connection timeout has passed on the database's clock: the event
 * instant is `created_at + timeout`, and it happened when the agent had not connected by then (still
 * NULL, or connected after it: Coder showed it as `timeout` in between). Strict comparisons, as Coder's
 * `now - created_at > timeout`. An agent that connects exactly at its timeout never timed out.
 *
 * With `timedOutSince`, the redundant `first_connected_at IS NULL OR first_connected_at >= since` (implied
 * by connecting after a timeout that is at or after `since`) lets the planner use the opt-in index on
 * `first_connected_at` for both branches.
 */
export function timedOutAgentsQuery(db: Kysely<CoderDatabase>, options: TimedOutAgentsQueryOptions = {}) {
  const fallback = options.fallbackTimeoutSeconds ?? 0;
  const timeout = effectiveTimeoutSeconds(fallback);
  const timedOutAt = sql<Date>`(wa.created_at + ${timeout} * interval '1 second')`;
  let query = currentAgents(db)
    .select([
      'wa.id as agent_id',
      utcMicrosText(timedOutAt).as('timed_out_at'),
      'wa.name as agent_name',
      'u.username as username',
      'w.name as workspace_name',
      't.name as template_name',
    ])
    .where(sql<boolean>`${timeout} > 0`)
    .where(sql<boolean>`${timedOutAt} < now()`)
    .where((eb) => eb.or([eb('wa.first_connected_at', 'is', null), eb('wa.first_connected_at', '>', timedOutAt)]));
  const since = options.timedOutSince;
  if (since !== undefined) {
    query = query
      .where(sql<boolean>`${timedOutAt} >= ${since}`)
      .where((eb) => eb.or([eb('wa.first_connected_at', 'is', null), eb('wa.first_connected_at', '>=', since)]));
  }
  return query;
}

/** One row of `timedOutAgentsQuery`. */
export type TimedOutAgentRow = Awaited<ReturnType<ReturnType<typeof timedOutAgentsQuery>['executeTakeFirstOrThrow']>>;
