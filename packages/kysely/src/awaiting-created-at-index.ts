import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { CoderDatabaseError } from './coder-database-error.js';

/** Name of the opt-in partial index; prefixed so it never collides with an index Coder adds later. */
export const AWAITING_CREATED_AT_INDEX_NAME = 'agentconn_workspace_agents_awaiting_created_at_idx';

/**
 * Opt-in, for operators, and not in `coderSchemaMigrations`: a partial index on
 * `workspace_agents(created_at) WHERE first_connected_at IS NULL`, which Coder does not have. It holds
 * only the agents that have not connected, so it stays small, and with it the per-tick read of the
 * waiting agents created since the last tick reads just those. Built `CONCURRENTLY` (no transaction:
 * Kysely's Migrator needs `disableTransactions: true`), by a role that owns `workspace_agents`.
 */
export const awaitingCreatedAtIndexMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${sql.id(AWAITING_CREATED_AT_INDEX_NAME)} ON workspace_agents USING btree (created_at) WHERE first_connected_at IS NULL`.execute(
      db,
    );
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await sql`DROP INDEX CONCURRENTLY IF EXISTS ${sql.id(AWAITING_CREATED_AT_INDEX_NAME)}`.execute(db);
  },
};

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
