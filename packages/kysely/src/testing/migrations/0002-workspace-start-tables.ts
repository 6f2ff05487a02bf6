import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import {
  PROVISIONER_JOB_STATUSES,
  PROVISIONER_JOB_TIMING_STAGES,
  PROVISIONER_JOB_TYPES,
  PROVISIONER_STORAGE_METHODS,
  WORKSPACE_AGENT_SCRIPT_TIMING_STAGES,
  WORKSPACE_AGENT_SCRIPT_TIMING_STATUSES,
} from '../../schema.js';

/**
 * The tables the whole start reads besides the first-connection subset: the provisioner jobs (with
 * Coder's generated `job_status`), their stage timings, and the agents' scripts with their timings, by
 * Coder's names, types, NOT NULLs, keys and indexes. Foreign keys among them are Coder's; the one from
 * `workspace_builds.job_id` to `provisioner_jobs` is left out, so rows of the first-connection subset
 * need no job (Coder has it). Not created: foreign keys to tables outside the subset (`organizations`,
 * `files`, `provisioner_daemons`), the jobs' columns nothing reads that have defaults.
 *
 * For the demo, the tests and the benchmark only: never run it against a real Coder database.
 */
export const workspaceStartTablesMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.createType('provisioner_job_status').asEnum(PROVISIONER_JOB_STATUSES).execute();
    await db.schema.createType('provisioner_job_timing_stage').asEnum(PROVISIONER_JOB_TIMING_STAGES).execute();
    await db.schema.createType('provisioner_job_type').asEnum(PROVISIONER_JOB_TYPES).execute();
    await db.schema.createType('provisioner_storage_method').asEnum(PROVISIONER_STORAGE_METHODS).execute();
    await db.schema.createType('workspace_agent_script_timing_stage').asEnum(WORKSPACE_AGENT_SCRIPT_TIMING_STAGES).execute();
    await db.schema.createType('workspace_agent_script_timing_status').asEnum(WORKSPACE_AGENT_SCRIPT_TIMING_STATUSES).execute();

    // job_status is Coder's generated column, expression for expression.
    await db.schema
      .createTable('provisioner_jobs')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('started_at', 'timestamptz')
      .addColumn('canceled_at', 'timestamptz')
      .addColumn('completed_at', 'timestamptz')
      .addColumn('error', 'text')
      .addColumn('organization_id', 'uuid', (c) => c.notNull())
      .addColumn('initiator_id', 'uuid', (c) => c.notNull())
      .addColumn('provisioner', sql`provisioner_type`, (c) => c.notNull())
      .addColumn('storage_method', sql`provisioner_storage_method`, (c) => c.notNull())
      .addColumn('type', sql`provisioner_job_type`, (c) => c.notNull())
      .addColumn('input', 'jsonb', (c) => c.notNull())
      .addColumn('worker_id', 'uuid')
      .addColumn('file_id', 'uuid', (c) => c.notNull())
      .addColumn('error_code', 'text')
      .addColumn('job_status', sql`provisioner_job_status`, (c) =>
        c
          .notNull()
          .generatedAlwaysAs(
            sql`CASE WHEN completed_at IS NOT NULL THEN
                  CASE WHEN error <> ''::text THEN 'failed'::provisioner_job_status
                       WHEN canceled_at IS NOT NULL THEN 'canceled'::provisioner_job_status
                       ELSE 'succeeded'::provisioner_job_status END
                ELSE
                  CASE WHEN error <> ''::text THEN 'failed'::provisioner_job_status
                       WHEN canceled_at IS NOT NULL THEN 'canceling'::provisioner_job_status
                       WHEN started_at IS NULL THEN 'pending'::provisioner_job_status
                       ELSE 'running'::provisioner_job_status END
                END`,
          )
          .stored(),
      )
      .execute();

    await db.schema
      .createTable('provisioner_job_timings')
      .addColumn('job_id', 'uuid', (c) => c.notNull())
      .addColumn('started_at', 'timestamptz', (c) => c.notNull())
      .addColumn('ended_at', 'timestamptz', (c) => c.notNull())
      .addColumn('stage', sql`provisioner_job_timing_stage`, (c) => c.notNull())
      .addColumn('source', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('resource', 'text', (c) => c.notNull())
      .addForeignKeyConstraint('provisioner_job_timings_job_id_fkey', ['job_id'], 'provisioner_jobs', ['id'], (fk) =>
        fk.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('workspace_agent_scripts')
      .addColumn('workspace_agent_id', 'uuid', (c) => c.notNull())
      .addColumn('log_source_id', 'uuid', (c) => c.notNull())
      .addColumn('log_path', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('script', 'text', (c) => c.notNull())
      .addColumn('cron', 'text', (c) => c.notNull())
      .addColumn('start_blocks_login', 'boolean', (c) => c.notNull())
      .addColumn('run_on_start', 'boolean', (c) => c.notNull())
      .addColumn('run_on_stop', 'boolean', (c) => c.notNull())
      .addColumn('timeout_seconds', 'integer', (c) => c.notNull())
      .addColumn('display_name', 'text', (c) => c.notNull())
      .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
      .addUniqueConstraint('workspace_agent_scripts_id_key', ['id'])
      .addForeignKeyConstraint(
        'workspace_agent_scripts_workspace_agent_id_fkey',
        ['workspace_agent_id'],
        'workspace_agents',
        ['id'],
        (fk) => fk.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('workspace_agent_script_timings')
      .addColumn('script_id', 'uuid', (c) => c.notNull())
      .addColumn('started_at', 'timestamptz', (c) => c.notNull())
      .addColumn('ended_at', 'timestamptz', (c) => c.notNull())
      .addColumn('exit_code', 'integer', (c) => c.notNull())
      .addColumn('stage', sql`workspace_agent_script_timing_stage`, (c) => c.notNull())
      .addColumn('status', sql`workspace_agent_script_timing_status`, (c) => c.notNull())
      .addUniqueConstraint('workspace_agent_script_timings_script_id_started_at_key', ['script_id', 'started_at'])
      .addForeignKeyConstraint(
        'workspace_agent_script_timings_script_id_fkey',
        ['script_id'],
        'workspace_agent_scripts',
        ['id'],
        (fk) => fk.onDelete('cascade'),
      )
      .execute();

    // Coder's indexes on these tables, by Coder's names; nothing more.
    await db.schema.createIndex('idx_provisioner_jobs_status').on('provisioner_jobs').column('job_status').execute();
    await db.schema
      .createIndex('provisioner_jobs_started_at_idx')
      .on('provisioner_jobs')
      .column('started_at')
      .where(sql.raw<boolean>('started_at IS NULL'))
      .execute();
    await db.schema
      .createIndex('provisioner_jobs_worker_id_organization_id_completed_at_idx')
      .on('provisioner_jobs')
      .columns(['worker_id', 'organization_id', 'completed_at desc'])
      .execute();
    await db.schema
      .createIndex('workspace_agent_scripts_workspace_agent_id_idx')
      .on('workspace_agent_scripts')
      .column('workspace_agent_id')
      .execute();
  },

  async down(db: Kysely<unknown>): Promise<void> {
    for (const table of ['workspace_agent_script_timings', 'workspace_agent_scripts', 'provisioner_job_timings', 'provisioner_jobs']) {
      await db.schema.dropTable(table).execute();
    }
    for (const type of [
      'workspace_agent_script_timing_status',
      'workspace_agent_script_timing_stage',
      'provisioner_storage_method',
      'provisioner_job_type',
      'provisioner_job_timing_stage',
      'provisioner_job_status',
    ]) {
      await db.schema.dropType(type).execute();
    }
  },
};
