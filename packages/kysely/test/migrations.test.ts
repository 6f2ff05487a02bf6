import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import {
  CODER_TABLES,
  START_TABLES,
  FIRST_CONNECTED_AT_INDEX_NAME,
  createFirstConnectedAtIndex,
  dropFirstConnectedAtIndex,
  firstConnectedAtIndexMigration,
} from '../src/index.js';
import {
  coderSchemaMigrations,
  migrateToLatest,
} from '../src/testing/index.js';
import { openPgliteTestDatabase, openPostgresTestDatabase, type OpenTestDatabase, type TestDatabase } from './helpers/databases.js';

/**
 * What Coder's `coderd/database/dump.sql` declares for the columns of the subset, written out by hand:
 * name, type as `format_type` prints it, NOT NULL, default as `pg_get_expr` prints it.
 */
const EXPECTED_COLUMNS: Record<string, [string, string, boolean, string | null][]> = {
  users: [
    ['id', 'uuid', true, null],
    ['email', 'text', true, null],
    ['username', 'text', true, "''::text"],
    ['hashed_password', 'bytea', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['deleted', 'boolean', true, 'false'],
  ],
  templates: [
    ['id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['organization_id', 'uuid', true, null],
    ['deleted', 'boolean', true, 'false'],
    ['name', 'character varying(64)', true, null],
    ['provisioner', 'provisioner_type', true, null],
    ['active_version_id', 'uuid', true, null],
    ['created_by', 'uuid', true, null],
  ],
  template_versions: [
    ['id', 'uuid', true, null],
    ['template_id', 'uuid', false, null],
    ['organization_id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['name', 'character varying(64)', true, null],
    ['readme', 'character varying(1048576)', true, null],
    ['job_id', 'uuid', true, null],
    ['created_by', 'uuid', true, null],
  ],
  workspaces: [
    ['id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['owner_id', 'uuid', true, null],
    ['organization_id', 'uuid', true, null],
    ['template_id', 'uuid', true, null],
    ['deleted', 'boolean', true, 'false'],
    ['name', 'character varying(64)', true, null],
  ],
  workspace_builds: [
    ['id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['workspace_id', 'uuid', true, null],
    ['template_version_id', 'uuid', true, null],
    ['build_number', 'integer', true, null],
    ['transition', 'workspace_transition', true, null],
    ['initiator_id', 'uuid', true, null],
    ['job_id', 'uuid', true, null],
  ],
  workspace_resources: [
    ['id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['job_id', 'uuid', true, null],
    ['transition', 'workspace_transition', true, null],
    ['type', 'character varying(192)', true, null],
    ['name', 'character varying(64)', true, null],
  ],
  workspace_agents: [
    ['id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['name', 'character varying(64)', true, null],
    ['first_connected_at', 'timestamp with time zone', false, null],
    ['last_connected_at', 'timestamp with time zone', false, null],
    ['disconnected_at', 'timestamp with time zone', false, null],
    ['resource_id', 'uuid', true, null],
    ['auth_token', 'uuid', true, null],
    ['auth_instance_id', 'character varying', false, null],
    ['architecture', 'character varying(64)', true, null],
    ['operating_system', 'character varying(64)', true, null],
    ['connection_timeout_seconds', 'integer', true, '0'],
    ['lifecycle_state', 'workspace_agent_lifecycle_state', true, "'created'::workspace_agent_lifecycle_state"],
    ['started_at', 'timestamp with time zone', false, null],
    ['ready_at', 'timestamp with time zone', false, null],
    ['parent_id', 'uuid', false, null],
    ['deleted', 'boolean', true, 'false'],
  ],
  provisioner_jobs: [
    ['id', 'uuid', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['updated_at', 'timestamp with time zone', true, null],
    ['started_at', 'timestamp with time zone', false, null],
    ['canceled_at', 'timestamp with time zone', false, null],
    ['completed_at', 'timestamp with time zone', false, null],
    ['error', 'text', false, null],
    ['organization_id', 'uuid', true, null],
    ['initiator_id', 'uuid', true, null],
    ['provisioner', 'provisioner_type', true, null],
    ['storage_method', 'provisioner_storage_method', true, null],
    ['type', 'provisioner_job_type', true, null],
    ['input', 'jsonb', true, null],
    ['worker_id', 'uuid', false, null],
    ['file_id', 'uuid', true, null],
    ['error_code', 'text', false, null],
    [
      'job_status',
      'provisioner_job_status',
      true,
      // pg_get_expr's text of Coder's generated column.
      "\nCASE\n    WHEN (completed_at IS NOT NULL) THEN\n    CASE\n        WHEN (error <> ''::text) THEN 'failed'::provisioner_job_status\n        WHEN (canceled_at IS NOT NULL) THEN 'canceled'::provisioner_job_status\n        ELSE 'succeeded'::provisioner_job_status\n    END\n    ELSE\n    CASE\n        WHEN (error <> ''::text) THEN 'failed'::provisioner_job_status\n        WHEN (canceled_at IS NOT NULL) THEN 'canceling'::provisioner_job_status\n        WHEN (started_at IS NULL) THEN 'pending'::provisioner_job_status\n        ELSE 'running'::provisioner_job_status\n    END\nEND",
    ],
  ],
  provisioner_job_timings: [
    ['job_id', 'uuid', true, null],
    ['started_at', 'timestamp with time zone', true, null],
    ['ended_at', 'timestamp with time zone', true, null],
    ['stage', 'provisioner_job_timing_stage', true, null],
    ['source', 'text', true, null],
    ['action', 'text', true, null],
    ['resource', 'text', true, null],
  ],
  workspace_agent_scripts: [
    ['workspace_agent_id', 'uuid', true, null],
    ['log_source_id', 'uuid', true, null],
    ['log_path', 'text', true, null],
    ['created_at', 'timestamp with time zone', true, null],
    ['script', 'text', true, null],
    ['cron', 'text', true, null],
    ['start_blocks_login', 'boolean', true, null],
    ['run_on_start', 'boolean', true, null],
    ['run_on_stop', 'boolean', true, null],
    ['timeout_seconds', 'integer', true, null],
    ['display_name', 'text', true, null],
    ['id', 'uuid', true, 'gen_random_uuid()'],
  ],
  workspace_agent_script_timings: [
    ['script_id', 'uuid', true, null],
    ['started_at', 'timestamp with time zone', true, null],
    ['ended_at', 'timestamp with time zone', true, null],
    ['exit_code', 'integer', true, null],
    ['stage', 'workspace_agent_script_timing_stage', true, null],
    ['status', 'workspace_agent_script_timing_status', true, null],
  ],
};

/** Every table of the subset: the first connection's and the whole start's. */
const SUBSET_TABLES = [...CODER_TABLES, ...START_TABLES];

/** Coder's constraints among the tables of the subset (foreign keys to tables outside it left out). */
const EXPECTED_CONSTRAINTS = [
  'provisioner_job_timings provisioner_job_timings_job_id_fkey FOREIGN KEY (job_id) REFERENCES provisioner_jobs(id) ON DELETE CASCADE',
  'provisioner_jobs provisioner_jobs_pkey PRIMARY KEY (id)',
  'template_versions template_versions_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE RESTRICT',
  'template_versions template_versions_pkey PRIMARY KEY (id)',
  'template_versions template_versions_template_id_fkey FOREIGN KEY (template_id) REFERENCES templates(id) ON DELETE CASCADE',
  'template_versions template_versions_template_id_name_key UNIQUE (template_id, name)',
  'templates templates_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE RESTRICT',
  'templates templates_pkey PRIMARY KEY (id)',
  'users users_pkey PRIMARY KEY (id)',
  'users users_username_min_length CHECK ((length(username) >= 1))',
  'workspace_agent_script_timings workspace_agent_script_timings_script_id_fkey FOREIGN KEY (script_id) REFERENCES workspace_agent_scripts(id) ON DELETE CASCADE',
  'workspace_agent_script_timings workspace_agent_script_timings_script_id_started_at_key UNIQUE (script_id, started_at)',
  'workspace_agent_scripts workspace_agent_scripts_id_key UNIQUE (id)',
  'workspace_agent_scripts workspace_agent_scripts_workspace_agent_id_fkey FOREIGN KEY (workspace_agent_id) REFERENCES workspace_agents(id) ON DELETE CASCADE',
  'workspace_agents workspace_agents_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES workspace_agents(id) ON DELETE CASCADE',
  'workspace_agents workspace_agents_pkey PRIMARY KEY (id)',
  'workspace_agents workspace_agents_resource_id_fkey FOREIGN KEY (resource_id) REFERENCES workspace_resources(id) ON DELETE CASCADE',
  'workspace_builds workspace_builds_job_id_key UNIQUE (job_id)',
  'workspace_builds workspace_builds_pkey PRIMARY KEY (id)',
  'workspace_builds workspace_builds_template_version_id_fkey FOREIGN KEY (template_version_id) REFERENCES template_versions(id) ON DELETE CASCADE',
  'workspace_builds workspace_builds_workspace_id_build_number_key UNIQUE (workspace_id, build_number)',
  'workspace_builds workspace_builds_workspace_id_fkey FOREIGN KEY (workspace_id) REFERENCES workspaces(id) ON DELETE CASCADE',
  'workspace_resources workspace_resources_pkey PRIMARY KEY (id)',
  'workspaces workspaces_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users(id) ON DELETE RESTRICT',
  'workspaces workspaces_pkey PRIMARY KEY (id)',
  'workspaces workspaces_template_id_fkey FOREIGN KEY (template_id) REFERENCES templates(id) ON DELETE RESTRICT',
];

/** Coder's indexes on the columns of the subset (key columns and partial predicates), besides constraint indexes. */
const EXPECTED_INDEXES = [
  'idx_provisioner_jobs_status ON provisioner_jobs USING btree (job_status)',
  "idx_users_email ON users USING btree (email) WHERE ((deleted = false) AND (email <> ''::text)) UNIQUE",
  'idx_users_username ON users USING btree (username) WHERE (deleted = false) UNIQUE',
  'idx_workspace_builds_initiator_id ON workspace_builds USING btree (initiator_id)',
  'provisioner_jobs_started_at_idx ON provisioner_jobs USING btree (started_at) WHERE (started_at IS NULL)',
  'provisioner_jobs_worker_id_organization_id_completed_at_idx ON provisioner_jobs USING btree (worker_id, organization_id, completed_at DESC)',
  'templates_organization_id_name_idx ON templates USING btree (organization_id, lower((name)::text)) WHERE (deleted = false) UNIQUE',
  "users_email_lower_idx ON users USING btree (lower(email)) WHERE ((deleted = false) AND (email <> ''::text)) UNIQUE",
  'users_username_lower_idx ON users USING btree (lower(username)) WHERE (deleted = false) UNIQUE',
  'workspace_agent_scripts_workspace_agent_id_idx ON workspace_agent_scripts USING btree (workspace_agent_id)',
  'workspace_agents_auth_instance_id_deleted_idx ON workspace_agents USING btree (auth_instance_id, deleted)',
  'workspace_agents_auth_token_idx ON workspace_agents USING btree (auth_token)',
  'workspace_agents_resource_id_idx ON workspace_agents USING btree (resource_id)',
  'workspace_resources_job_id_idx ON workspace_resources USING btree (job_id)',
  'workspace_template_id_idx ON workspaces USING btree (template_id) WHERE (deleted = false)',
  'workspaces_owner_id_lower_idx ON workspaces USING btree (owner_id, lower((name)::text)) WHERE (deleted = false) UNIQUE',
];

async function columns(db: Kysely<any>, table: string): Promise<[string, string, boolean, string | null][]> {
  const { rows } = await sql<{ name: string; type: string; not_null: boolean; default: string | null }>`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
           pg_get_expr(d.adbin, d.adrelid) AS default
    FROM pg_attribute a
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = ${table}::regclass AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum`.execute(db);
  return rows.map((r) => [r.name, r.type, r.not_null, r.default]);
}

async function constraints(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ line: string }>`
    SELECT c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid) AS line
    FROM pg_constraint c
    -- PostgreSQL 18 (PGlite) also lists NOT NULLs as constraints (contype 'n'); the columns test checks those.
    WHERE c.connamespace = current_schema()::regnamespace AND c.conrelid <> 0 AND c.contype <> 'n'
      AND c.conrelid::regclass::text = ANY(${SUBSET_TABLES}::text[])
    ORDER BY 1`.execute(db);
  return rows.map((r) => r.line);
}

/** Indexes that back no constraint, as `name ON table USING method (keys) [WHERE ...] [UNIQUE]`. */
async function indexes(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ line: string }>`
    SELECT regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX ([^ ]+) ON (ONLY )?([^ .]+\\.)?', '\\2 ON ')
           || CASE WHEN i.indisunique THEN ' UNIQUE' ELSE '' END AS line
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    WHERE t.relnamespace = current_schema()::regnamespace
      AND t.relname = ANY(${SUBSET_TABLES}::text[])
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
    ORDER BY 1`.execute(db);
  return rows.map((r) => r.line);
}

function defineMigrationTests(name: string, open: OpenTestDatabase): void {
  describe(`Coder schema subset migrations: ${name}`, () => {
    let database: TestDatabase;
    beforeAll(async () => {
      database = await open({ migrate: false });
    });
    afterAll(async () => {
      await database?.destroy();
    });

    it('creates the eleven tables with Coder’s column names, types, NOT NULLs and defaults', async () => {
      expect(await migrateToLatest(database.db)).toEqual(['0001_coder_schema_subset', '0002_workspace_start_tables']);
      for (const table of SUBSET_TABLES) {
        expect({ table, columns: await columns(database.db, table) }).toEqual({ table, columns: EXPECTED_COLUMNS[table] });
      }
    });

    it('creates Coder’s enums with their values', async () => {
      const { rows } = await sql<{ type: string; labels: string }>`
        SELECT t.typname AS type, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS labels
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = current_schema()::regnamespace
        GROUP BY t.typname ORDER BY t.typname`.execute(database.db);
      expect(rows).toEqual([
        { type: 'provisioner_job_status', labels: 'pending,running,succeeded,canceling,canceled,failed,unknown' },
        { type: 'provisioner_job_timing_stage', labels: 'init,plan,graph,apply' },
        { type: 'provisioner_job_type', labels: 'template_version_import,workspace_build,template_version_dry_run' },
        { type: 'provisioner_storage_method', labels: 'file' },
        { type: 'provisioner_type', labels: 'echo,terraform' },
        { type: 'workspace_agent_lifecycle_state', labels: 'created,starting,start_timeout,start_error,ready,shutting_down,shutdown_timeout,shutdown_error,off' },
        { type: 'workspace_agent_script_timing_stage', labels: 'start,stop,cron' },
        { type: 'workspace_agent_script_timing_status', labels: 'ok,exit_failure,timed_out,pipes_left_open' },
        { type: 'workspace_transition', labels: 'start,stop,delete' },
      ]);
    });

    it('creates Coder’s keys, foreign keys, unique constraints and checks among the tables', async () => {
      expect(await constraints(database.db)).toEqual(EXPECTED_CONSTRAINTS);
    });

    it('creates exactly Coder’s indexes: none on created_at or first_connected_at', async () => {
      const found = await indexes(database.db);
      expect(found).toEqual(EXPECTED_INDEXES);
      expect(found.some((line) => /\((created_at|first_connected_at)\)/.test(line))).toBe(false);
    });

    it('is idempotent and does not include the opt-in index', async () => {
      expect(await migrateToLatest(database.db)).toEqual([]);
      expect(Object.keys(await coderSchemaMigrations.getMigrations())).toEqual(['0001_coder_schema_subset', '0002_workspace_start_tables']);
      expect(await indexes(database.db)).not.toContainEqual(expect.stringContaining(FIRST_CONNECTED_AT_INDEX_NAME));
    });

    it('creates and drops the opt-in first_connected_at index on request, idempotently', async () => {
      await createFirstConnectedAtIndex(database.db);
      await createFirstConnectedAtIndex(database.db);
      const withIndex = await indexes(database.db);
      expect(withIndex.filter((line) => line.startsWith(FIRST_CONNECTED_AT_INDEX_NAME))).toEqual([
        `${FIRST_CONNECTED_AT_INDEX_NAME} ON workspace_agents USING btree (first_connected_at)`,
      ]);
      // It leaves no bookkeeping behind, and the default set still considers itself complete.
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'`.execute(database.db);
      expect(rows[0]!.n).toBe(SUBSET_TABLES.length + 2); // + kysely_migration, kysely_migration_lock
      expect(await migrateToLatest(database.db)).toEqual([]);
      await dropFirstConnectedAtIndex(database.db);
      await dropFirstConnectedAtIndex(database.db);
      expect(await indexes(database.db)).toEqual(EXPECTED_INDEXES);
    });

    if (name === 'PGlite') {
      // On PGlite only: on a shared server, Kysely's migration lock (one advisory lock per database) and
      // CREATE INDEX CONCURRENTLY (which waits for every older transaction) deadlock with concurrent runs.
      it('runs as a Kysely migration of its own, outside a transaction', async () => {
        const names = await migrateToLatest(database.db, {
          provider: { getMigrations: () => Promise.resolve({ agentconn_first_connected_at_index: firstConnectedAtIndexMigration }) },
          migrationTableName: 'agentconn_migration',
          migrationLockTableName: 'agentconn_migration_lock',
          disableTransactions: true,
        });
        expect(names).toEqual(['agentconn_first_connected_at_index']);
        expect(await indexes(database.db)).toContain(`${FIRST_CONNECTED_AT_INDEX_NAME} ON workspace_agents USING btree (first_connected_at)`);
      });
    }

    it('names the failed migration and the reason when a migration fails', async () => {
      const clash = await open({ migrate: false });
      try {
        await sql`CREATE TYPE workspace_transition AS ENUM ('start')`.execute(clash.db);
        await expect(migrateToLatest(clash.db)).rejects.toThrow(
          'migrating the database failed at migration "0001_coder_schema_subset": type "workspace_transition" already exists',
        );
      } finally {
        await clash.destroy();
      }
    });
  });
}

defineMigrationTests('PGlite', openPgliteTestDatabase);
defineMigrationTests('PostgreSQL server', openPostgresTestDatabase);
