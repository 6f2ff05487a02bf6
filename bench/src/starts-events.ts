/**
 * The fixed rate of new events of `pnpm bench:starts`: before each tick, `builds` new start builds of
 * existing workspaces (a restart supersedes the workspace's build before) go the whole path inside the
 * tick's interval, as Coder writes it: build and job, the job started and completed with its four stage
 * timings, the resource and agent, the agent connected and ready, two startup script runs. Set-based
 * SQL, one statement per table. `removeTickEvents` puts a kept database back as it was seeded.
 */
import type { CoderDatabase } from '@agentconn/kysely';
import { sql, type Kysely } from 'kysely';

/** Build numbers of the ticks' builds start here (the seeded ones are 1 to 3). */
const TICK_BUILD_NUMBER_BASE = 1000;

/** Rows a perfect source returns for one tick's builds: the build (one agent), four stages, two script runs. */
export const ROWS_PER_TICK_BUILD = 1 + 4 + 2;

export interface TickEvents {
  /** Global tick number: unique over the run, it names the rows and numbers the builds. */
  readonly tick: number;
  /** Start of the tick's interval (epoch ms); every instant of its builds falls within `intervalMs` after it. */
  readonly fromMs: number;
  readonly intervalMs: number;
  readonly builds: number;
  readonly workspaces: number;
  readonly templates: number;
}

export async function writeTickEvents(db: Kysely<CoderDatabase>, e: TickEvents): Promise<void> {
  const from = new Date(e.fromMs).toISOString();
  // Instants as fractions of the interval: created at 2–35 %, job started 0.5 s later, completed at +25 %,
  // agent connected at +35 %, ready at +55 %: all inside the interval.
  const plan = sql`
    SELECT i, g,
      md5('tb' || ${e.tick} || '-' || i)::uuid AS build_id, md5('tj' || ${e.tick} || '-' || i)::uuid AS job_id,
      md5('tr' || ${e.tick} || '-' || i)::uuid AS resource_id, md5('ta' || ${e.tick} || '-' || i)::uuid AS agent_id,
      ${from}::timestamptz + (0.02 + 0.33 * i / ${e.builds}::float8) * ${e.intervalMs}::float8 * interval '1 millisecond' AS created,
      ${e.intervalMs}::float8 * interval '1 millisecond' AS span
    FROM generate_series(1, ${e.builds}) i
    CROSS JOIN LATERAL (SELECT ((${e.tick}::bigint * ${e.builds} + i) * 7919) % ${e.workspaces} + 1 AS g) w`;
  await sql`
    WITH p AS (${plan})
    INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, template_version_id, build_number, transition, initiator_id, job_id)
    SELECT p.build_id, p.created, p.created, w.id, md5('v' || (p.g % ${e.templates} + 1))::uuid, ${TICK_BUILD_NUMBER_BASE + e.tick}, 'start', w.owner_id, p.job_id
    FROM p JOIN workspaces w ON w.id = md5('w' || p.g)::uuid`.execute(db);
  await sql`
    WITH p AS (${plan})
    INSERT INTO provisioner_jobs (id, created_at, updated_at, started_at, completed_at, organization_id, initiator_id, provisioner, storage_method, type, input, file_id)
    SELECT job_id, created, created + 0.25 * span, created + interval '500 ms', created + 0.25 * span, md5('org')::uuid, md5('u1')::uuid,
           'terraform', 'file', 'workspace_build', '{}', md5('f')::uuid
    FROM p`.execute(db);
  await sql`
    WITH p AS (${plan})
    INSERT INTO provisioner_job_timings (job_id, started_at, ended_at, stage, source, action, resource)
    SELECT job_id, created + interval '500 ms' + (0.25 * span - interval '500 ms') * a, created + interval '500 ms' + (0.25 * span - interval '500 ms') * b,
           stage::provisioner_job_timing_stage, 'terraform', 'create', 'docker_container.workspace[0]'
    FROM p CROSS JOIN (VALUES ('init', 0.0, 0.15), ('plan', 0.16, 0.35), ('graph', 0.36, 0.38), ('apply', 0.39, 0.99)) s(stage, a, b)`.execute(db);
  await sql`
    WITH p AS (${plan})
    INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name)
    SELECT resource_id, created + 0.26 * span, job_id, 'start', 'docker_container', 'dev' FROM p`.execute(db);
  await sql`
    WITH p AS (${plan})
    INSERT INTO workspace_agents (id, created_at, updated_at, name, first_connected_at, last_connected_at, resource_id, auth_token, architecture, operating_system,
                                  lifecycle_state, started_at, ready_at)
    SELECT agent_id, created + 0.26 * span, created + 0.55 * span, 'main', created + 0.35 * span, created + 0.35 * span, resource_id, agent_id, 'amd64', 'linux',
           'ready', created + 0.36 * span, created + 0.55 * span
    FROM p`.execute(db);
  await sql`
    WITH p AS (${plan})
    INSERT INTO workspace_agent_scripts (id, workspace_agent_id, log_source_id, log_path, created_at, script, cron, start_blocks_login, run_on_start, run_on_stop, timeout_seconds, display_name)
    SELECT md5(agent_id::text || n)::uuid, agent_id, md5('ls' || n)::uuid, '', created + 0.26 * span, '#!/bin/sh', '', true, true, false, 60,
           CASE n WHEN 1 THEN 'Install tools' ELSE 'Clone repository' END
    FROM p CROSS JOIN generate_series(1, 2) n`.execute(db);
  await sql`
    WITH p AS (${plan})
    INSERT INTO workspace_agent_script_timings (script_id, started_at, ended_at, exit_code, stage, status)
    SELECT md5(agent_id::text || n)::uuid, created + (0.36 + (n - 1) * 0.1) * span, created + (0.45 + (n - 1) * 0.09) * span, 0, 'start', 'ok'
    FROM p CROSS JOIN generate_series(1, 2) n`.execute(db);
}

/**
 * Deletes every row the ticks wrote (scripts and their runs go with their agent). Coder has no index on
 * `provisioner_job_timings.job_id`, so the foreign key's cascade would scan the timings once per deleted
 * job: with none (Coder's indexes only), a temporary index serves the deletion.
 */
export async function removeTickEvents(db: Kysely<CoderDatabase>): Promise<number> {
  const jobs = sql`SELECT job_id FROM workspace_builds WHERE build_number >= ${TICK_BUILD_NUMBER_BASE}`;
  const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM workspace_builds WHERE build_number >= ${TICK_BUILD_NUMBER_BASE}`.execute(db);
  const builds = Number(rows[0]?.n ?? 0);
  if (builds === 0) return 0;
  await sql`CREATE INDEX IF NOT EXISTS bench_starts_cleanup_timings_job_id ON provisioner_job_timings (job_id)`.execute(db);
  await sql`DELETE FROM workspace_agents WHERE resource_id IN (SELECT id FROM workspace_resources WHERE job_id IN (${jobs}))`.execute(db);
  await sql`DELETE FROM workspace_resources WHERE job_id IN (${jobs})`.execute(db);
  await sql`DELETE FROM provisioner_jobs WHERE id IN (${jobs})`.execute(db);
  await sql`DELETE FROM workspace_builds WHERE build_number >= ${TICK_BUILD_NUMBER_BASE}`.execute(db);
  await sql`DROP INDEX bench_starts_cleanup_timings_job_id`.execute(db);
  await sql`VACUUM ANALYZE`.execute(db);
  return builds;
}
