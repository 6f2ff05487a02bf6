import { sql, type Kysely } from 'kysely';
import { Migrator, type MigrationProvider } from 'kysely/migration';
import { CoderDatabaseError } from '../../coder-database-error.js';
import { coderSchemaSubsetMigration } from './0001-coder-schema-subset.js';
import { workspaceStartTablesMigration } from './0002-workspace-start-tables.js';

export { coderSchemaSubsetMigration } from './0001-coder-schema-subset.js';
export { workspaceStartTablesMigration } from './0002-workspace-start-tables.js';

/**
 * The Coder schema subset as Kysely migrations, for the demo, the tests and the benchmark.
 * Never run them against a real Coder database: Coder owns its schema and migrates it itself.
 */
export const coderSchemaMigrations: MigrationProvider = {
  getMigrations: () =>
    Promise.resolve({
      '0001_coder_schema_subset': coderSchemaSubsetMigration,
      '0002_workspace_start_tables': workspaceStartTablesMigration,
    }),
};

export interface MigrateToLatestOptions {
  /** Default `coderSchemaMigrations`. */
  readonly provider?: MigrationProvider;
  /** Default Kysely's `kysely_migration`. */
  readonly migrationTableName?: string;
  /** Default Kysely's `kysely_migration_lock`. */
  readonly migrationLockTableName?: string;
  /**
   * Schema of the bookkeeping tables. Default: the session's `current_schema()`, the first schema of
   * its `search_path` (Kysely on its own would find another schema's bookkeeping tables and miss its own).
   */
  readonly migrationTableSchema?: string;
  /** Run each migration outside a transaction. Default false. */
  readonly disableTransactions?: boolean;
}

/**
 * Runs every pending migration (by default the Coder schema subset) and resolves with the names it
 * ran. Throws a `CoderDatabaseError` naming the failed migration and the database's reason.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>, options: MigrateToLatestOptions = {}): Promise<string[]> {
  let migrationTableSchema = options.migrationTableSchema;
  try {
    if (migrationTableSchema === undefined) {
      const { rows } = await sql<{ schema: string | null }>`SELECT current_schema() AS schema`.execute(db);
      migrationTableSchema = rows[0]?.schema ?? undefined;
    }
  } catch (error) {
    throw new CoderDatabaseError('migrating the database failed', error);
  }
  if (migrationTableSchema === undefined) {
    throw new CoderDatabaseError('migrating the database failed', new Error('no schema on the search_path to create tables in'));
  }
  const migrator = new Migrator({
    db,
    migrationTableSchema,
    provider: options.provider ?? coderSchemaMigrations,
    ...(options.migrationTableName !== undefined && { migrationTableName: options.migrationTableName }),
    ...(options.migrationLockTableName !== undefined && { migrationLockTableName: options.migrationLockTableName }),
    ...(options.disableTransactions !== undefined && { disableTransactions: options.disableTransactions }),
  });
  let resultSet;
  try {
    resultSet = await migrator.migrateToLatest();
  } catch (error) {
    throw new CoderDatabaseError('migrating the database failed', error);
  }
  const { error, results = [] } = resultSet;
  if (error !== undefined) {
    const failed = results.find((r) => r.status === 'Error');
    throw new CoderDatabaseError(
      failed === undefined ? 'migrating the database failed' : `migrating the database failed at migration "${failed.migrationName}"`,
      error,
    );
  }
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
