/**
 * Seeded whole-start history for the report's tests: start builds of two templates over the hour before the
 * database's clock, with every outcome (ready with one and two agents, build_failed, canceled,
 * connect_timeout, start_error), a prebuild, a build superseded before it ended, one whose job started
 * before its build was created (its negative queued phase dropped, its start counted), one with a ready_at
 * without a first connection (dropped as invalid) and stop builds (not starts). Plus an independent SQL
 * computation, from Coder's definitions, of what the report should say.
 */
import type { CoderDatabase } from '@agentconn/kysely';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { sql, type Kysely } from 'kysely';
import { StartFixture } from '../../../kysely/test/helpers/start-fixtures.js';

export interface SeededStarts {
  readonly fixture: StartFixture;
  /** Whole seconds: the range covering every build. */
  readonly since: string;
  readonly until: string;
  readonly templates: readonly string[];
}

/** A small deterministic generator: the same history on every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

export async function seedStarts(db: Kysely<CoderDatabase>): Promise<SeededStarts> {
  await migrateToLatest(db);
  const f = await StartFixture.create(db);
  const next = random(27);
  // Log-uniform durations from `low` to `high` seconds, to the µs.
  const seconds = (low: number, high: number) => Math.round(Math.exp(Math.log(low) + next() * (Math.log(high) - Math.log(low))) * 1e6) / 1e6;
  const templates = ['tpl-alpha', 'tpl-beta'];
  for (const name of templates) {
    const template = await f.template(name);
    for (let i = 0; i < 40; i++) {
      const kind = i % 10;
      const ws = await f.workspace(template, { prebuild: i === 3 });
      const created = Math.round(next() * 2800 * 1e6) / 1e6;
      const started = created + seconds(0.05, 20);
      const completed = started + seconds(1, 120);
      const job =
        kind === 6
          ? { startedAt: f.at(started), completedAt: f.at(completed), error: 'terraform apply failed' }
          : kind === 7
            ? { startedAt: f.at(started), completedAt: f.at(completed), canceledAt: f.at(completed - 0.5) }
            : { startedAt: f.at(started), completedAt: f.at(completed) };
      const build = await f.build({ workspaceId: ws.workspaceId, versionId: ws.versionId, createdAt: f.at(created), job });
      if (kind === 6 || kind === 7) continue;
      if (kind === 8) {
        // Never connected; its 30 s timeout passed long before the clock.
        await f.agent({ resourceId: build.resourceId, createdAt: f.at(completed), connectionTimeoutSeconds: 30 });
        continue;
      }
      const agents = i % 3 === 0 ? 2 : 1;
      let lastReady = completed;
      for (let a = 0; a < agents; a++) {
        const connected = completed + seconds(0.5, 60);
        const ready = connected + seconds(0.1, 300);
        lastReady = Math.max(lastReady, ready);
        await f.agent({
          resourceId: build.resourceId,
          createdAt: f.at(completed),
          firstConnectedAt: f.at(connected),
          readyAt: f.at(ready),
          lifecycleState: kind === 9 ? 'start_error' : 'ready',
          connectionTimeoutSeconds: 600,
        });
      }
      if (i === 11) {
        // Superseded between its connection and its readiness: its start and last phases are not counted.
        await f.build({ workspaceId: ws.workspaceId, versionId: ws.versionId, buildNumber: 2, createdAt: f.at(lastReady - 0.05), job: {} });
      }
      if (i === 12) {
        await f.build({ workspaceId: ws.workspaceId, versionId: ws.versionId, buildNumber: 2, createdAt: f.at(lastReady + 1), transition: 'stop', job: { startedAt: f.at(lastReady + 2), completedAt: f.at(lastReady + 3) } });
      }
    }
    // Clock skew: the job started before its build was created.
    const ws = await f.workspace(template);
    await f.build({ workspaceId: ws.workspaceId, versionId: ws.versionId, createdAt: f.at(100), job: { startedAt: f.at(99), completedAt: f.at(130) } });
    // A row Coder would not write: ready_at without a first connection (the whole start dropped as invalid).
    const odd = await f.workspace(template);
    const oddBuild = await f.build({ workspaceId: odd.workspaceId, versionId: odd.versionId, createdAt: f.at(200), job: { startedAt: f.at(201), completedAt: f.at(220) } });
    await f.agent({ resourceId: oddBuild.resourceId, createdAt: f.at(219), readyAt: f.at(240) });
  }
  return { fixture: f, since: f.at(-60), until: f.at(3540), templates };
}

export interface ExpectedGroup {
  readonly template: string | null;
  readonly value: string;
  readonly count: number;
  readonly quantiles: readonly number[];
  readonly max: number;
}

/**
 * Per (template, outcome) and per (template, phase) — and with `allTemplates` per outcome and phase alone —
 * count, exact quantiles and max from Coder's definitions, written directly: the outcome from the job's
 * error and cancel, a connection timeout, the agents' lifecycle; phases between the build's creation, the
 * job's start and end, the last first connection and the last readiness; nothing at or after the creation of
 * a newer build.
 */
export async function expectedStarts(
  db: Kysely<CoderDatabase>,
  since: string,
  until: string,
  options: { readonly allTemplates?: boolean } = {},
): Promise<{ starts: ExpectedGroup[]; phases: ExpectedGroup[] }> {
  const group = options.allTemplates === true ? sql`NULL::text` : sql`template`;
  const { rows: starts } = await sql<ExpectedGroup>`
    WITH b AS (
      SELECT t.name AS template, wb.created_at, pj.started_at, pj.completed_at, pj.canceled_at, pj.error,
        (SELECT min(nb.created_at) FROM workspace_builds nb WHERE nb.workspace_id = wb.workspace_id AND nb.build_number > wb.build_number) AS superseded_at,
        (SELECT max(wa.ready_at) FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id WHERE wr.job_id = wb.job_id) AS ready,
        (SELECT bool_or(wa.lifecycle_state = 'start_error') FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id WHERE wr.job_id = wb.job_id) AS start_error,
        (SELECT count(*) FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id WHERE wr.job_id = wb.job_id) AS agents,
        (SELECT min(wa.created_at + wa.connection_timeout_seconds * interval '1 second') FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id
          WHERE wr.job_id = wb.job_id AND wa.connection_timeout_seconds > 0
            AND coalesce(wa.first_connected_at, now()) > wa.created_at + wa.connection_timeout_seconds * interval '1 second') AS timed_out_at
      FROM workspace_builds wb JOIN provisioner_jobs pj ON pj.id = wb.job_id JOIN workspaces w ON w.id = wb.workspace_id JOIN templates t ON t.id = w.template_id
      WHERE wb.transition = 'start' AND NOT EXISTS (SELECT 1 FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id
        WHERE wr.job_id = wb.job_id AND wa.ready_at IS NOT NULL AND wa.first_connected_at IS NULL)
    ), o AS (
      SELECT template, created_at, superseded_at,
        CASE WHEN error <> '' THEN 'build_failed' WHEN canceled_at IS NOT NULL THEN 'canceled' WHEN timed_out_at IS NOT NULL THEN 'connect_timeout'
          WHEN start_error THEN 'start_error' ELSE 'ready' END AS outcome,
        CASE WHEN error <> '' OR canceled_at IS NOT NULL THEN completed_at WHEN timed_out_at IS NOT NULL THEN greatest(timed_out_at, completed_at)
          WHEN agents = 0 THEN completed_at ELSE ready END AS end_at
      FROM b
    )
    SELECT ${group} AS template, outcome AS value, count(*)::int AS count,
      percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM end_at - created_at)::float8) AS quantiles,
      max(extract(epoch FROM end_at - created_at))::float8 AS max
    FROM o WHERE end_at >= ${since}::timestamptz AND end_at < ${until}::timestamptz AND (superseded_at IS NULL OR end_at < superseded_at)
    GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  const { rows: phases } = await sql<ExpectedGroup>`
    WITH b AS (
      SELECT t.name AS template, wb.created_at, pj.started_at, pj.completed_at, (coalesce(pj.error, '') <> '' OR pj.canceled_at IS NOT NULL) AS failed,
        (SELECT min(nb.created_at) FROM workspace_builds nb WHERE nb.workspace_id = wb.workspace_id AND nb.build_number > wb.build_number) AS superseded_at,
        (SELECT max(wa.first_connected_at) FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id WHERE wr.job_id = wb.job_id) AS connected,
        (SELECT max(wa.ready_at) FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id WHERE wr.job_id = wb.job_id) AS ready,
        (SELECT bool_or(wa.first_connected_at IS NULL) FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id WHERE wr.job_id = wb.job_id) AS unconnected
      FROM workspace_builds wb JOIN provisioner_jobs pj ON pj.id = wb.job_id JOIN workspaces w ON w.id = wb.workspace_id JOIN templates t ON t.id = w.template_id
      WHERE wb.transition = 'start' AND NOT EXISTS (SELECT 1 FROM workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id
        WHERE wr.job_id = wb.job_id AND wa.ready_at IS NOT NULL AND wa.first_connected_at IS NULL)
    ), p AS (
      SELECT template, superseded_at, 'queued' AS phase, created_at AS s, started_at AS e FROM b
      UNION ALL SELECT template, superseded_at, 'provisioning', started_at, completed_at FROM b WHERE NOT failed
      UNION ALL SELECT template, superseded_at, 'connecting', completed_at, connected FROM b WHERE NOT failed AND NOT unconnected
      UNION ALL SELECT template, superseded_at, 'starting', connected, ready FROM b WHERE NOT failed AND NOT unconnected
    )
    SELECT ${group} AS template, phase AS value, count(*)::int AS count,
      percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM e - s)::float8) AS quantiles,
      max(extract(epoch FROM e - s))::float8 AS max
    FROM p WHERE e >= ${since}::timestamptz AND e < ${until}::timestamptz AND (superseded_at IS NULL OR e < superseded_at)
      AND e >= s -- a negative phase (clock skew) is dropped alone; its start still counts
    GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return { starts, phases };
}
