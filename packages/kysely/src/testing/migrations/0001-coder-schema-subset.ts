import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { PROVISIONER_TYPES, WORKSPACE_AGENT_LIFECYCLE_STATES, WORKSPACE_TRANSITIONS } from '../../schema.js';

/**
 * The seven tables of the subset, their enums, keys, foreign keys among them, and the indexes Coder
 * has on the columns of the subset (none on `created_at` or `first_connected_at`: Coder has none, and
 * the benchmark must see the real plans). Not created: foreign keys to tables outside the subset
 * (`organizations`, `provisioner_jobs`, `template_version_presets`) and Coder's triggers.
 *
 * For the demo, the tests and the benchmark only: never run it against a real Coder database.
 */
export const coderSchemaSubsetMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.createType('workspace_agent_lifecycle_state').asEnum(WORKSPACE_AGENT_LIFECYCLE_STATES).execute();
    await db.schema.createType('workspace_transition').asEnum(WORKSPACE_TRANSITIONS).execute();
    await db.schema.createType('provisioner_type').asEnum(PROVISIONER_TYPES).execute();

    await db.schema
      .createTable('users')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('email', 'text', (c) => c.notNull())
      .addColumn('username', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('hashed_password', 'bytea', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('deleted', 'boolean', (c) => c.notNull().defaultTo(false))
      .addCheckConstraint('users_username_min_length', sql`length(username) >= 1`)
      .execute();

    await db.schema
      .createTable('templates')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('organization_id', 'uuid', (c) => c.notNull())
      .addColumn('deleted', 'boolean', (c) => c.notNull().defaultTo(false))
      .addColumn('name', 'varchar(64)', (c) => c.notNull())
      .addColumn('provisioner', sql`provisioner_type`, (c) => c.notNull())
      .addColumn('active_version_id', 'uuid', (c) => c.notNull())
      .addColumn('created_by', 'uuid', (c) => c.notNull())
      .addForeignKeyConstraint('templates_created_by_fkey', ['created_by'], 'users', ['id'], (fk) => fk.onDelete('restrict'))
      .execute();

    await db.schema
      .createTable('template_versions')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('template_id', 'uuid')
      .addColumn('organization_id', 'uuid', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('name', 'varchar(64)', (c) => c.notNull())
      .addColumn('readme', 'varchar(1048576)', (c) => c.notNull())
      .addColumn('job_id', 'uuid', (c) => c.notNull())
      .addColumn('created_by', 'uuid', (c) => c.notNull())
      .addUniqueConstraint('template_versions_template_id_name_key', ['template_id', 'name'])
      .addForeignKeyConstraint('template_versions_created_by_fkey', ['created_by'], 'users', ['id'], (fk) =>
        fk.onDelete('restrict'),
      )
      .addForeignKeyConstraint('template_versions_template_id_fkey', ['template_id'], 'templates', ['id'], (fk) =>
        fk.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('workspaces')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('owner_id', 'uuid', (c) => c.notNull())
      .addColumn('organization_id', 'uuid', (c) => c.notNull())
      .addColumn('template_id', 'uuid', (c) => c.notNull())
      .addColumn('deleted', 'boolean', (c) => c.notNull().defaultTo(false))
      .addColumn('name', 'varchar(64)', (c) => c.notNull())
      .addForeignKeyConstraint('workspaces_owner_id_fkey', ['owner_id'], 'users', ['id'], (fk) => fk.onDelete('restrict'))
      .addForeignKeyConstraint('workspaces_template_id_fkey', ['template_id'], 'templates', ['id'], (fk) =>
        fk.onDelete('restrict'),
      )
      .execute();

    await db.schema
      .createTable('workspace_builds')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('workspace_id', 'uuid', (c) => c.notNull())
      .addColumn('template_version_id', 'uuid', (c) => c.notNull())
      .addColumn('build_number', 'integer', (c) => c.notNull())
      .addColumn('transition', sql`workspace_transition`, (c) => c.notNull())
      .addColumn('initiator_id', 'uuid', (c) => c.notNull())
      .addColumn('job_id', 'uuid', (c) => c.notNull())
      .addUniqueConstraint('workspace_builds_job_id_key', ['job_id'])
      .addUniqueConstraint('workspace_builds_workspace_id_build_number_key', ['workspace_id', 'build_number'])
      .addForeignKeyConstraint(
        'workspace_builds_template_version_id_fkey',
        ['template_version_id'],
        'template_versions',
        ['id'],
        (fk) => fk.onDelete('cascade'),
      )
      .addForeignKeyConstraint('workspace_builds_workspace_id_fkey', ['workspace_id'], 'workspaces', ['id'], (fk) =>
        fk.onDelete('cascade'),
      )
      .execute();

    await db.schema
      .createTable('workspace_resources')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('job_id', 'uuid', (c) => c.notNull())
      .addColumn('transition', sql`workspace_transition`, (c) => c.notNull())
      .addColumn('type', 'varchar(192)', (c) => c.notNull())
      .addColumn('name', 'varchar(64)', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('workspace_agents')
      .addColumn('id', 'uuid', (c) => c.notNull().primaryKey())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('name', 'varchar(64)', (c) => c.notNull())
      .addColumn('first_connected_at', 'timestamptz')
      .addColumn('last_connected_at', 'timestamptz')
      .addColumn('disconnected_at', 'timestamptz')
      .addColumn('resource_id', 'uuid', (c) => c.notNull())
      .addColumn('auth_token', 'uuid', (c) => c.notNull())
      .addColumn('auth_instance_id', 'varchar')
      .addColumn('architecture', 'varchar(64)', (c) => c.notNull())
      .addColumn('operating_system', 'varchar(64)', (c) => c.notNull())
      .addColumn('connection_timeout_seconds', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('lifecycle_state', sql`workspace_agent_lifecycle_state`, (c) =>
        c.notNull().defaultTo(sql`'created'::workspace_agent_lifecycle_state`),
      )
      .addColumn('started_at', 'timestamptz')
      .addColumn('ready_at', 'timestamptz')
      .addColumn('parent_id', 'uuid')
      .addColumn('deleted', 'boolean', (c) => c.notNull().defaultTo(false))
      .addForeignKeyConstraint('workspace_agents_parent_id_fkey', ['parent_id'], 'workspace_agents', ['id'], (fk) =>
        fk.onDelete('cascade'),
      )
      .addForeignKeyConstraint('workspace_agents_resource_id_fkey', ['resource_id'], 'workspace_resources', ['id'], (fk) =>
        fk.onDelete('cascade'),
      )
      .execute();

    // Coder's indexes on the columns above, by Coder's names; nothing more.
    await db.schema
      .createIndex('idx_users_email')
      .unique()
      .on('users')
      .column('email')
      .where(sql.raw<boolean>(`deleted = false AND email <> ''`))
      .execute();
    await db.schema
      .createIndex('idx_users_username')
      .unique()
      .on('users')
      .column('username')
      .where(sql.raw<boolean>('deleted = false'))
      .execute();
    await db.schema
      .createIndex('users_email_lower_idx')
      .unique()
      .on('users')
      .expression(sql`lower(email)`)
      .where(sql.raw<boolean>(`deleted = false AND email <> ''`))
      .execute();
    await db.schema
      .createIndex('users_username_lower_idx')
      .unique()
      .on('users')
      .expression(sql`lower(username)`)
      .where(sql.raw<boolean>('deleted = false'))
      .execute();
    await db.schema
      .createIndex('templates_organization_id_name_idx')
      .unique()
      .on('templates')
      .columns(['organization_id'])
      .expression(sql`lower((name)::text)`)
      .where(sql.raw<boolean>('deleted = false'))
      .execute();
    await db.schema
      .createIndex('workspace_template_id_idx')
      .on('workspaces')
      .column('template_id')
      .where(sql.raw<boolean>('deleted = false'))
      .execute();
    await db.schema
      .createIndex('workspaces_owner_id_lower_idx')
      .unique()
      .on('workspaces')
      .column('owner_id')
      .expression(sql`lower((name)::text)`)
      .where(sql.raw<boolean>('deleted = false'))
      .execute();
    await db.schema.createIndex('idx_workspace_builds_initiator_id').on('workspace_builds').column('initiator_id').execute();
    await db.schema.createIndex('workspace_resources_job_id_idx').on('workspace_resources').column('job_id').execute();
    await db.schema
      .createIndex('workspace_agents_auth_instance_id_deleted_idx')
      .on('workspace_agents')
      .columns(['auth_instance_id', 'deleted'])
      .execute();
    await db.schema.createIndex('workspace_agents_auth_token_idx').on('workspace_agents').column('auth_token').execute();
    await db.schema.createIndex('workspace_agents_resource_id_idx').on('workspace_agents').column('resource_id').execute();
  },

  async down(db: Kysely<unknown>): Promise<void> {
    for (const table of [
      'workspace_agents',
      'workspace_resources',
      'workspace_builds',
      'workspaces',
      'template_versions',
      'templates',
      'users',
    ]) {
      await db.schema.dropTable(table).execute();
    }
    for (const type of ['provisioner_type', 'workspace_transition', 'workspace_agent_lifecycle_state']) {
      await db.schema.dropType(type).execute();
    }
  },
};
