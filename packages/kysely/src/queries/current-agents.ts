import { sql, type ExpressionBuilder, type Kysely, type RawBuilder } from 'kysely';
import type { CoderDatabase } from '../schema.js';

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
