import { sql, type Kysely } from 'kysely';
import { Migrator, type MigrationProvider } from 'kysely/migration';
import { CoderDatabaseError } from '../errors.js';
import { coderSchemaSubsetMigration } from './0001-coder-schema-subset.js';
import { FIRST_CONNECTED_AT_INDEX_NAME, firstConnectedAtIndexMigration } from './first-connected-at-index.js';
import { AWAITING_CREATED_AT_INDEX_NAME, awaitingCreatedAtIndexMigration } from './awaiting-created-at-index.js';

export { coderSchemaSubsetMigration } from './0001-coder-schema-subset.js';
export { FIRST_CONNECTED_AT_INDEX_NAME, firstConnectedAtIndexMigration } from './first-connected-at-index.js';
export { AWAITING_CREATED_AT_INDEX_NAME, awaitingCreatedAtIndexMigration } from './awaiting-created-at-index.js';

/**
 * The Coder schema subset as Kysely migrations, for the demo, the tests and the benchmark.
 * Never run them against a real Coder database: Coder owns its schema and migrates it itself.
 */
export const coderSchemaMigrations: MigrationProvider = {
  getMigrations: () => Promise.resolve({ '0001_coder_schema_subset': coderSchemaSubsetMigration }),
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

/**
 * Opt-in, for operators: creates the index on `workspace_agents(first_connected_at)` if it is missing,
 * concurrently (Coder keeps writing agents meanwhile). Runs the statement directly: no bookkeeping
 * table and no migration lock in Coder's database. `CREATE INDEX CONCURRENTLY` waits for transactions
 * older than itself to finish.
 */
export async function createFirstConnectedAtIndex<DB>(db: Kysely<DB>): Promise<void> {
  try {
    await firstConnectedAtIndexMigration.up(db);
  } catch (error) {
    throw new CoderDatabaseError(`creating the index ${FIRST_CONNECTED_AT_INDEX_NAME} failed`, error);
  }
}

/** Drops the opt-in index if it exists (concurrently). */
export async function dropFirstConnectedAtIndex<DB>(db: Kysely<DB>): Promise<void> {
  try {
    await firstConnectedAtIndexMigration.down!(db);
  } catch (error) {
    throw new CoderDatabaseError(`dropping the index ${FIRST_CONNECTED_AT_INDEX_NAME} failed`, error);
  }
}

/** Opt-in, for operators: the partial index of the waiting agents' `created_at`, concurrently, if missing. */
export async function createAwaitingCreatedAtIndex<DB>(db: Kysely<DB>): Promise<void> {
  try {
    await awaitingCreatedAtIndexMigration.up(db);
  } catch (error) {
    throw new CoderDatabaseError(`creating the index ${AWAITING_CREATED_AT_INDEX_NAME} failed`, error);
  }
}

/** Drops the opt-in partial index if it exists (concurrently). */
export async function dropAwaitingCreatedAtIndex<DB>(db: Kysely<DB>): Promise<void> {
  try {
    await awaitingCreatedAtIndexMigration.down!(db);
  } catch (error) {
    throw new CoderDatabaseError(`dropping the index ${AWAITING_CREATED_AT_INDEX_NAME} failed`, error);
  }
}
