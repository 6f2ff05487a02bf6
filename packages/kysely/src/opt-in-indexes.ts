import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { CoderDatabaseError } from './coder-database-error.js';

/**
 * Indexes Coder does not have, which an operator may add so that a tick's incremental reads find the rows
 * that changed without scanning a whole table. Opt-in and not in `coderSchemaMigrations`. Each is built
 * `CONCURRENTLY`, so Coder keeps writing meanwhile; that cannot run inside a transaction (give Kysely's
 * Migrator `disableTransactions: true`, or call the `create…Index(db)` function), waits for transactions
 * older than itself, and needs a role that owns the table. Names are prefixed so they never collide with
 * an index Coder adds later.
 */
export interface OptInIndex {
  readonly name: string;
  readonly table: string;
  /** What follows `ON <table>`: the method, the key and an optional predicate. */
  readonly definition: string;
}

/**
 * `workspace_agents(first_connected_at)`: the incremental first-connection query
 * (`first_connected_at >= $since`) reads only the agents that connected since the last tick.
 */
export const FIRST_CONNECTED_AT_INDEX: OptInIndex = {
  name: 'agentconn_workspace_agents_first_connected_at_idx',
  table: 'workspace_agents',
  definition: 'USING btree (first_connected_at)',
};

/**
 * `workspace_agents(created_at) WHERE first_connected_at IS NULL`: holds only the agents that have not
 * connected, so it stays small, and the per-tick read of the waiting agents created since the last tick
 * reads just those.
 */
export const AWAITING_CREATED_AT_INDEX: OptInIndex = {
  name: 'agentconn_workspace_agents_awaiting_created_at_idx',
  table: 'workspace_agents',
  definition: 'USING btree (created_at) WHERE first_connected_at IS NULL',
};

/**
 * The whole start's incremental reads (`--phases`): jobs that started or completed since the last tick, agents
 * that became ready, stage timings by job, start scripts' runs that ended, and the agents not ready yet (the
 * builds in progress). With `FIRST_CONNECTED_AT_INDEX` and `AWAITING_CREATED_AT_INDEX` (the connections and the
 * waits for them), each read finds its rows by index instead of a sequential scan.
 */
export const WORKSPACE_START_INDEXES: readonly OptInIndex[] = Object.freeze([
  { name: 'agentconn_provisioner_jobs_started_at_idx', table: 'provisioner_jobs', definition: 'USING btree (started_at)' },
  { name: 'agentconn_provisioner_jobs_completed_at_idx', table: 'provisioner_jobs', definition: 'USING btree (completed_at)' },
  { name: 'agentconn_provisioner_job_timings_job_id_idx', table: 'provisioner_job_timings', definition: 'USING btree (job_id)' },
  { name: 'agentconn_workspace_agents_ready_at_idx', table: 'workspace_agents', definition: 'USING btree (ready_at)' },
  {
    name: 'agentconn_workspace_agents_not_ready_idx',
    table: 'workspace_agents',
    definition: 'USING btree (resource_id) WHERE ready_at IS NULL AND parent_id IS NULL',
  },
  { name: 'agentconn_workspace_agent_script_timings_ended_at_idx', table: 'workspace_agent_script_timings', definition: 'USING btree (ended_at)' },
]);

export const FIRST_CONNECTED_AT_INDEX_NAME = FIRST_CONNECTED_AT_INDEX.name;
export const AWAITING_CREATED_AT_INDEX_NAME = AWAITING_CREATED_AT_INDEX.name;

/** The index as a migration: `up` creates it if missing, `down` drops it if present, both concurrently. */
export function optInIndexMigration(index: OptInIndex): Migration {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${sql.id(index.name)} ON ${sql.id(index.table)} ${sql.raw(index.definition)}`.execute(db);
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await sql`DROP INDEX CONCURRENTLY IF EXISTS ${sql.id(index.name)}`.execute(db);
    },
  };
}

/**
 * Creates the index if it is missing, concurrently. Runs the statement directly: no bookkeeping table and
 * no migration lock in Coder's database. Rejects with a `CoderDatabaseError` naming the index.
 */
export async function createOptInIndex<DB>(db: Kysely<DB>, index: OptInIndex): Promise<void> {
  try {
    await optInIndexMigration(index).up(db as Kysely<unknown>);
  } catch (error) {
    throw new CoderDatabaseError(`creating the index ${index.name} failed`, error);
  }
}

/** Drops the index if it exists, concurrently. */
export async function dropOptInIndex<DB>(db: Kysely<DB>, index: OptInIndex): Promise<void> {
  try {
    await optInIndexMigration(index).down!(db as Kysely<unknown>);
  } catch (error) {
    throw new CoderDatabaseError(`dropping the index ${index.name} failed`, error);
  }
}

export const firstConnectedAtIndexMigration: Migration = optInIndexMigration(FIRST_CONNECTED_AT_INDEX);
export const awaitingCreatedAtIndexMigration: Migration = optInIndexMigration(AWAITING_CREATED_AT_INDEX);

/** Opt-in: the index on `workspace_agents(first_connected_at)`, concurrently, if missing. */
export const createFirstConnectedAtIndex = <DB>(db: Kysely<DB>): Promise<void> => createOptInIndex(db, FIRST_CONNECTED_AT_INDEX);
/** Drops the first-connection index if it exists (concurrently). */
export const dropFirstConnectedAtIndex = <DB>(db: Kysely<DB>): Promise<void> => dropOptInIndex(db, FIRST_CONNECTED_AT_INDEX);
/** Opt-in: the partial index of the waiting agents' `created_at`, concurrently, if missing. */
export const createAwaitingCreatedAtIndex = <DB>(db: Kysely<DB>): Promise<void> => createOptInIndex(db, AWAITING_CREATED_AT_INDEX);
/** Drops the waiting agents' partial index if it exists (concurrently). */
export const dropAwaitingCreatedAtIndex = <DB>(db: Kysely<DB>): Promise<void> => dropOptInIndex(db, AWAITING_CREATED_AT_INDEX);

/** Every index the whole start's reads use, the first connection's two included. */
const ALL_START_INDEXES: readonly OptInIndex[] = [FIRST_CONNECTED_AT_INDEX, AWAITING_CREATED_AT_INDEX, ...WORKSPACE_START_INDEXES];

/**
 * Opt-in: every index of `WORKSPACE_START_INDEXES` plus the first connection's two, concurrently, each if
 * missing, one after the other (a failure names its index; those before it stay).
 */
export async function createWorkspaceStartIndexes<DB>(db: Kysely<DB>): Promise<void> {
  for (const index of ALL_START_INDEXES) await createOptInIndex(db, index);
}

/** Drops the whole start's own indexes if they exist (the first connection's two stay). */
export async function dropWorkspaceStartIndexes<DB>(db: Kysely<DB>): Promise<void> {
  for (const index of WORKSPACE_START_INDEXES) await dropOptInIndex(db, index);
}
