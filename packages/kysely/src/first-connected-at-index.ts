import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { CoderDatabaseError } from './coder-database-error.js';

/** Name of the opt-in index; prefixed so it never collides with an index Coder adds later. */
export const FIRST_CONNECTED_AT_INDEX_NAME = 'agentconn_workspace_agents_first_connected_at_idx';

/**
 * Opt-in, for operators, and not in `coderSchemaMigrations`: an index on
 * `workspace_agents(first_connected_at)`, which Coder does not have. With it the incremental query
 * (`first_connected_at >= $since`) reads only the agents that connected since the last tick instead of
 * every agent row. Built `CONCURRENTLY`, so Coder keeps writing agents while it builds; that cannot run
 * inside a transaction, so give Kysely's Migrator `disableTransactions: true`, or call
 * `createFirstConnectedAtIndex(db)`. Needs a role that owns `workspace_agents`.
 */
export const firstConnectedAtIndexMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${sql.id(FIRST_CONNECTED_AT_INDEX_NAME)} ON workspace_agents USING btree (first_connected_at)`.execute(
      db,
    );
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await sql`DROP INDEX CONCURRENTLY IF EXISTS ${sql.id(FIRST_CONNECTED_AT_INDEX_NAME)}`.execute(db);
  },
};

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
