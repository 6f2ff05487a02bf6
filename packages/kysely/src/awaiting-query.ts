import { sql, type Kysely, type RawBuilder } from 'kysely';
import { utcMicrosText } from './utc-micros-text.js';
import type { CoderDatabase } from './schema.js';

/**
 * The agent's connection timeout in seconds: its own `connection_timeout_seconds` when above 0 (Coder's
 * rule), else `fallbackSeconds` (0: the agent never times out, as in Coder). `alias` is the agents' alias.
 */
export function effectiveTimeoutSeconds(fallbackSeconds: number, alias = 'wa'): RawBuilder<number> {
  const column = sql.ref(`${alias}.connection_timeout_seconds`);
  return sql<number>`(CASE WHEN ${column} > 0 THEN ${column} ELSE ${fallbackSeconds}::int END)`;
}

/** `created_at` + the effective timeout, or NULL when the agent never times out. */
function timeoutInstant(fallbackSeconds: number, alias = 'wa'): RawBuilder<Date | null> {
  const timeout = effectiveTimeoutSeconds(fallbackSeconds, alias);
  return sql<Date | null>`(CASE WHEN ${timeout} > 0 THEN ${sql.ref(`${alias}.created_at`)} + ${timeout} * interval '1 second' END)`;
}

/**
 * For a connected agent (`wa`): the instant of the timeout it passed before connecting, as µs text, or
 * NULL. Coder's rule, strictly: connecting exactly at `created_at + timeout` is in time.
 */
export function passedTimeoutText(fallbackSeconds: number): RawBuilder<string | null> {
  const at = timeoutInstant(fallbackSeconds);
  return sql<string | null>`(CASE WHEN wa.first_connected_at > ${at} THEN ${utcMicrosText(at)} END)`;
}

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
 * The waiting agents are selected first, in a MATERIALIZED CTE, and then looked up one by one in their
 * build, workspace, owner and template by key (LATERAL with OFFSET 0): left to itself the planner starts
 * from every workspace, or hashes every build and resource, which costs the whole population. The
 * incremental read (`createdSince`) and the candidates (`ids`) then cost the agents they return; the
 * full read (a reconciliation) costs the waiting agents, once per reconciliation interval.
 */
export function awaitingAgentsQuery(db: Kysely<CoderDatabase>, options: AwaitingAgentsQueryOptions = {}) {
  const fallback = options.fallbackTimeoutSeconds ?? 0;
  const timeoutAt = timeoutInstant(fallback);
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
      'wa.id as agent_id',
      utcMicrosText(sql<Date>`wa.created_at`).as('created_at'),
      sql<string | null>`(CASE WHEN ${timeoutAt} IS NULL THEN NULL ELSE ${utcMicrosText(timeoutAt)} END)`.as('timed_out_at'),
      sql<boolean>`coalesce(${timeoutAt} < now(), false)`.as('due'),
      'wa.name as agent_name',
      'cur.username as username',
      'cur.workspace_name as workspace_name',
      'cur.template_name as template_name',
    ]);
}

/** One row of `awaitingAgentsQuery`. */
export type AwaitingAgentRow = Awaited<ReturnType<ReturnType<typeof awaitingAgentsQuery>['executeTakeFirstOrThrow']>>;
