/**
 * The whole-start bench's databases: `builds` start builds of a month of history on the real server,
 * made by set-based SQL (`generate_series` over a plan table, pseudo-random values from `hashint8`, ids
 * from `md5`), so 1M builds take minutes, not an hour. Every table the start family reads is filled as
 * Coder fills it: a provisioner job per build with four stage timings, a resource and an agent per
 * successful start, two startup scripts per agent with their runs; every outcome; a stop build after
 * some starts; a prebuild pool; and a fixed number of starts stuck unconnected (connection timeout 0),
 * which the in-progress gauges must show at every size.
 */
import { randomBytes } from 'node:crypto';
import type { CoderDatabase } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { databaseUrlFor } from './database.js';
import { progress } from './progress.js';

/** Bumped when the seeded data changes shape, so a kept database is seeded again. */
const SEED_VERSION = 1;
const HISTORY_DAYS = 30;
export const STARTS_TEMPLATES = 20;
const MAX_USERS = 5_000;
/** Latest start builds left unconnected with no connection timeout: in progress forever, at every size. */
export const STUCK_STARTS = 50;

export interface StartsDatabase {
  readonly name: string;
  readonly url: string;
  readonly db: Kysely<CoderDatabase>;
  readonly meta: StartsSeedMeta;
  /** Whether this run seeded it (false: a kept one reused). */
  readonly seeded: boolean;
  close(): Promise<void>;
  drop(): Promise<void>;
}

export interface StartsSeedMeta {
  readonly version: number;
  readonly builds: number;
  readonly workspaces: number;
  /** The history ends here; the bench's ticks write their events after it (RFC 3339). */
  readonly historyEnd: string;
  readonly seedMs: number;
  /** Rows per table after seeding. */
  readonly rows: Readonly<Record<string, number>>;
}

const SEEDED_TABLES = [
  'workspaces',
  'workspace_builds',
  'provisioner_jobs',
  'provisioner_job_timings',
  'workspace_resources',
  'workspace_agents',
  'workspace_agent_scripts',
  'workspace_agent_script_timings',
] as const;

/** Opens (with `keep`, reuses) the database of `builds` start builds, seeding it when needed. */
export async function openStartsDatabase(options: { readonly baseUrl: string; readonly builds: number; readonly keep: boolean }): Promise<StartsDatabase> {
  const { builds, baseUrl } = options;
  const stable = `agentconn_bench_starts_${builds}`;
  const name = options.keep ? stable : `${stable}_${randomBytes(3).toString('hex')}`;
  const url = databaseUrlFor(baseUrl, name);
  let meta: StartsSeedMeta | undefined;
  if (options.keep && (await admin(baseUrl, async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1))) {
    meta = await readMeta(url);
    if (meta?.version !== SEED_VERSION || meta.builds !== builds) {
      progress(`${builds}: database ${name} was seeded differently; seeding again`);
      meta = undefined;
    } else {
      progress(`${builds}: reusing database ${name}`);
    }
  }
  if (meta === undefined) {
    await admin(baseUrl, async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.query(`CREATE DATABASE ${name}`);
    });
  }
  const db = createPostgresDb({ connectionString: url, max: 2, application_name: 'agentconn-bench-starts' });
  const drop = async (): Promise<void> => {
    await db.destroy().catch(() => undefined);
    await admin(baseUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  };
  try {
    const seeded = meta === undefined;
    meta ??= await seed(db, builds);
    return { name, url, db, meta, seeded, close: () => db.destroy(), drop };
  } catch (error) {
    if (options.keep) await db.destroy().catch(() => undefined);
    else await drop().catch(() => undefined);
    throw error;
  }
}

/** `hashint8` of a bigint expression mapped to [0, 1): reproducible pseudo-random numbers in SQL. */
const rnd = (salt: number) => `((hashint8(k * 16 + ${salt})::bigint & 2147483647) / 2147483648.0)`;

async function seed(db: Kysely<CoderDatabase>, builds: number): Promise<StartsSeedMeta> {
  const started = performance.now();
  await migrateToLatest(db);
  const workspaces = Math.ceil(builds / 2);
  const users = Math.min(MAX_USERS, workspaces);
  const historyEnd = new Date(Math.floor((Date.now() - 86_400_000) / 60_000) * 60_000).toISOString();
  const step = async (what: string, statement: string): Promise<void> => {
    const t = performance.now();
    await sql.raw(statement).execute(db);
    progress(`${builds}: ${what} (${((performance.now() - t) / 1000).toFixed(1)} s)`);
  };
  const org = `md5('org')::uuid`;
  const end = `'${historyEnd}'::timestamptz`;

  await step('users, templates', `
    INSERT INTO users (id, email, username, hashed_password, created_at, updated_at)
      SELECT md5('u' || g)::uuid, 'user-' || g || '@example.com', 'user-' || g, ''::bytea, ${end} - interval '60 days', ${end} - interval '60 days'
      FROM generate_series(1, ${users}) g
      UNION ALL SELECT 'c42fdf75-3097-471c-8c33-fb52454d81c0', 'prebuilds@system', 'prebuilds', ''::bytea, ${end} - interval '60 days', ${end} - interval '60 days';
    INSERT INTO templates (id, created_at, updated_at, organization_id, name, provisioner, active_version_id, created_by)
      SELECT md5('t' || g)::uuid, ${end} - interval '60 days', ${end} - interval '60 days', ${org}, 'template-' || g, 'terraform',
             md5('v' || g)::uuid, md5('u1')::uuid
      FROM generate_series(1, ${STARTS_TEMPLATES}) g;
    INSERT INTO template_versions (id, template_id, organization_id, created_at, updated_at, name, readme, job_id, created_by)
      SELECT md5('v' || g)::uuid, md5('t' || g)::uuid, ${org}, ${end} - interval '60 days', ${end} - interval '60 days', 'v1', '', md5('tvj' || g)::uuid, md5('u1')::uuid
      FROM generate_series(1, ${STARTS_TEMPLATES}) g;`);

  // One row per start build with every instant of its path; k numbers the builds 1..2W.
  await step('plan of the builds', `
    CREATE UNLOGGED TABLE bench_seed AS
    SELECT k, g, n, owner, tpl, deleted, outcome, created, started, completed,
           CASE WHEN outcome IN ('build_failed', 'canceled') THEN NULL ELSE completed + interval '100 ms' END AS agent_created,
           CASE WHEN outcome IN ('build_failed', 'canceled', 'stuck') THEN NULL
                WHEN outcome = 'connect_timeout' THEN completed + (150 + 100 * r4) * interval '1 second'
                ELSE completed + (3 + 57 * r4) * interval '1 second' END AS connected,
           s1, s2
    FROM (
      SELECT k, g, n, r4,
             CASE WHEN g % 50 = 0 THEN 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid ELSE md5('u' || ((g::bigint * 7919) % ${users} + 1))::uuid END AS owner,
             g % ${STARTS_TEMPLATES} + 1 AS tpl,
             (g % 33 = 0) AS deleted,
             CASE WHEN n = 2 AND g % 5 <> 0 AND g % 33 <> 0 AND g % greatest(2, ${workspaces} / ${STUCK_STARTS}) = 1 THEN 'stuck'
                  WHEN r3 < 0.03 THEN 'build_failed' WHEN r3 < 0.04 THEN 'canceled' WHEN r3 < 0.06 THEN 'start_error'
                  WHEN r3 < 0.07 THEN 'start_timeout' WHEN r3 < 0.08 THEN 'connect_timeout' ELSE 'ready' END AS outcome,
             created,
             created + queue AS started,
             created + queue + (20 + 100 * r2) * interval '1 second' AS completed,
             1 + 20 * r5 AS s1, 0.5 + 10 * r6 AS s2
      FROM (
        SELECT k, g, n, ${rnd(2)} AS r2, ${rnd(3)} AS r3, ${rnd(4)} AS r4, ${rnd(5)} AS r5, ${rnd(6)} AS r6,
               ${end} - interval '4 hours' - ${HISTORY_DAYS} * interval '1 day' * ((hashint8(g)::bigint & 2147483647) / 2147483648.0)
                 + (n - 1) * interval '1 hour' AS created,
               CASE WHEN ${rnd(1)} < 0.9 THEN (0.05 + 1.5 * ${rnd(7)}) ELSE (5 + 60 * ${rnd(7)}) END * interval '1 second' AS queue
        FROM generate_series(1, ${workspaces}) g CROSS JOIN generate_series(1, 2) n
        CROSS JOIN LATERAL (SELECT (g - 1) * 2 + n AS k) kk
        WHERE (g - 1) * 2 + n <= ${builds}
      ) r
    ) p`);

  await step('workspaces and builds', `
    INSERT INTO workspaces (id, created_at, updated_at, owner_id, organization_id, template_id, deleted, name)
      SELECT md5('w' || g)::uuid, min(created) - interval '1 minute', min(created) - interval '1 minute', min(owner::text)::uuid, ${org},
             md5('t' || min(tpl))::uuid, bool_or(deleted), 'ws-' || g
      FROM bench_seed GROUP BY g;
    INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, template_version_id, build_number, transition, initiator_id, job_id)
      SELECT md5('b' || k)::uuid, created, created, md5('w' || g)::uuid, md5('v' || tpl)::uuid, n, 'start', owner, md5('j' || k)::uuid FROM bench_seed;
    -- Every fifth workspace was stopped after its second start: a stop build supersedes it.
    INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, template_version_id, build_number, transition, initiator_id, job_id)
      SELECT md5('stop' || g)::uuid, created + interval '2 hours', created + interval '2 hours', md5('w' || g)::uuid, md5('v' || tpl)::uuid, 3, 'stop', owner, md5('stopj' || g)::uuid
      FROM bench_seed WHERE n = 2 AND g % 5 = 0;`);

  await step('provisioner jobs', `
    INSERT INTO provisioner_jobs (id, created_at, updated_at, started_at, canceled_at, completed_at, error, organization_id, initiator_id, provisioner, storage_method, type, input, file_id)
      SELECT md5('j' || k)::uuid, created, completed, started,
             CASE WHEN outcome = 'canceled' THEN completed - interval '1 second' END, completed,
             CASE WHEN outcome = 'build_failed' THEN 'terraform apply: exit status 1' END,
             ${org}, owner, 'terraform'::provisioner_type, 'file'::provisioner_storage_method, 'workspace_build'::provisioner_job_type, '{}'::jsonb, md5('f')::uuid
      FROM bench_seed
      UNION ALL
      SELECT md5('stopj' || g)::uuid, created + interval '2 hours', created + interval '2 hours 1 minute', created + interval '2 hours 1 second', NULL,
             created + interval '2 hours 1 minute', NULL, ${org}, owner, 'terraform'::provisioner_type, 'file'::provisioner_storage_method, 'workspace_build'::provisioner_job_type, '{}'::jsonb, md5('f')::uuid
      FROM bench_seed WHERE n = 2 AND g % 5 = 0;`);

  await step('stage timings', `
    INSERT INTO provisioner_job_timings (job_id, started_at, ended_at, stage, source, action, resource)
      SELECT md5('j' || k)::uuid, started + (completed - started) * a, started + (completed - started) * b, stage::provisioner_job_timing_stage, 'terraform', 'create', 'docker_container.workspace[0]'
      FROM bench_seed CROSS JOIN (VALUES ('init', 0.0, 0.15), ('plan', 0.16, 0.35), ('graph', 0.36, 0.38), ('apply', 0.39, 0.99)) s(stage, a, b);`);

  await step('resources and agents', `
    INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name)
      SELECT md5('r' || k)::uuid, agent_created, md5('j' || k)::uuid, 'start', 'docker_container', 'dev' FROM bench_seed WHERE agent_created IS NOT NULL;
    INSERT INTO workspace_agents (id, created_at, updated_at, name, first_connected_at, last_connected_at, resource_id, auth_token, architecture, operating_system,
                                  connection_timeout_seconds, lifecycle_state, started_at, ready_at)
      SELECT md5('a' || k)::uuid, agent_created, coalesce(connected, agent_created), 'main', connected, connected, md5('r' || k)::uuid, md5('tok' || k)::uuid, 'amd64', 'linux',
             CASE WHEN outcome = 'connect_timeout' THEN 120 ELSE 0 END,
             (CASE WHEN outcome IN ('start_error', 'start_timeout') THEN outcome WHEN outcome = 'stuck' THEN 'created' ELSE 'ready' END)::workspace_agent_lifecycle_state,
             connected + interval '100 ms', connected + (s1 + s2 + 0.2) * interval '1 second'
      FROM bench_seed WHERE agent_created IS NOT NULL;`);

  await step('scripts and their runs', `
    INSERT INTO workspace_agent_scripts (id, workspace_agent_id, log_source_id, log_path, created_at, script, cron, start_blocks_login, run_on_start, run_on_stop, timeout_seconds, display_name)
      SELECT md5('s' || k || '-' || i)::uuid, md5('a' || k)::uuid, md5('ls' || i)::uuid, '', agent_created, '#!/bin/sh', '', true, true, false, 60,
             CASE i WHEN 1 THEN 'Install tools' ELSE 'Clone repository' END
      FROM bench_seed CROSS JOIN generate_series(1, 2) i WHERE agent_created IS NOT NULL;
    INSERT INTO workspace_agent_script_timings (script_id, started_at, ended_at, exit_code, stage, status)
      SELECT md5('s' || k || '-1')::uuid, connected + interval '100 ms', connected + (0.1 + s1) * interval '1 second',
             CASE WHEN outcome = 'start_timeout' THEN 255 ELSE 0 END, 'start'::workspace_agent_script_timing_stage,
             (CASE WHEN outcome = 'start_timeout' THEN 'timed_out' ELSE 'ok' END)::workspace_agent_script_timing_status
      FROM bench_seed WHERE connected IS NOT NULL
      UNION ALL
      SELECT md5('s' || k || '-2')::uuid, connected + (0.15 + s1) * interval '1 second', connected + (0.15 + s1 + s2) * interval '1 second',
             CASE WHEN outcome = 'start_error' THEN 1 ELSE 0 END, 'start'::workspace_agent_script_timing_stage,
             (CASE WHEN outcome = 'start_error' THEN 'exit_failure' ELSE 'ok' END)::workspace_agent_script_timing_status
      FROM bench_seed WHERE connected IS NOT NULL;`);

  await step('VACUUM ANALYZE', 'DROP TABLE bench_seed');
  await sql`VACUUM ANALYZE`.execute(db);
  const rows: Record<string, number> = {};
  for (const table of SEEDED_TABLES) {
    const { rows: r } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${sql.table(table)}`.execute(db);
    rows[table] = Number(r[0]!.n);
  }
  const meta: StartsSeedMeta = { version: SEED_VERSION, builds, workspaces, historyEnd, seedMs: performance.now() - started, rows };
  await sql`CREATE TABLE bench_starts_meta (id integer PRIMARY KEY, meta jsonb NOT NULL)`.execute(db);
  await sql`INSERT INTO bench_starts_meta VALUES (1, ${JSON.stringify(meta)}::jsonb)`.execute(db);
  progress(`${builds}: seeded in ${(meta.seedMs / 1000).toFixed(1)} s: ${JSON.stringify(rows)}`);
  return meta;
}

async function readMeta(url: string): Promise<StartsSeedMeta | undefined> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ meta: StartsSeedMeta }>('SELECT meta FROM bench_starts_meta WHERE id = 1')).rows[0]?.meta;
  } catch {
    return undefined;
  } finally {
    await client.end();
  }
}

async function admin<T>(baseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
