import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { sql, type Kysely } from 'kysely';
import { type CoderDatabase } from '../../src/index.js';
import { migrateToLatest } from '../../src/testing/index.js';
import { createPgliteDb } from '../../src/pglite.js';
import { createPostgresDb } from '../../src/postgres.js';

/** Session settings a test database is opened with. */
export interface SessionSettings {
  /** e.g. `America/St_Johns` (UTC-03:30). */
  readonly timeZone?: string;
  /** e.g. `SQL, DMY`. */
  readonly dateStyle?: string;
  /** Default true: create the Coder schema subset. */
  readonly migrate?: boolean;
}

export interface TestDatabase {
  readonly db: Kysely<CoderDatabase>;
  /** `postgres` (a real server) or `pglite`. */
  readonly kind: 'postgres' | 'pglite';
  /** Drops everything this database created. */
  destroy(): Promise<void>;
}

export type OpenTestDatabase = (settings?: SessionSettings) => Promise<TestDatabase>;

/**
 * A fresh schema on the real server, dropped by `destroy()`: concurrent runs never see each other's rows.
 * The pool puts the schema first on `search_path`, so the code under test uses unqualified names as
 * it does on a Coder database.
 */
export const openPostgresTestDatabase: OpenTestDatabase = async (settings = {}) => {
  const schema = `agentconn_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = createPostgresDb(BASE_DATABASE_URL);
  try {
    await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(admin);
  } catch (error) {
    await admin.destroy();
    throw error;
  }
  const options = [`-c search_path=${schema}`];
  if (settings.timeZone !== undefined) options.push(`-c TimeZone=${settings.timeZone}`);
  if (settings.dateStyle !== undefined) options.push(`-c DateStyle=${settings.dateStyle.replaceAll(' ', '\\ ')}`);
  // The schema's name as application_name tells this database's sessions apart in pg_stat_activity.
  const db = createPostgresDb({ connectionString: BASE_DATABASE_URL, options: options.join(' '), max: 4, application_name: schema });
  const destroy = async (): Promise<void> => {
    await db.destroy();
    try {
      await sql`DROP SCHEMA ${sql.id(schema)} CASCADE`.execute(admin);
    } finally {
      await admin.destroy();
    }
  };
  try {
    if (settings.migrate ?? true) await migrateToLatest(db);
  } catch (error) {
    await destroy();
    throw error;
  }
  return { db, kind: 'postgres', destroy };
};

/** A fresh in-memory PGlite. */
export const openPgliteTestDatabase: OpenTestDatabase = async (settings = {}) => {
  const db = createPgliteDb(new PGlite());
  // PGlite is one session: a SET holds for everything that follows.
  if (settings.timeZone !== undefined) await sql`SELECT set_config('TimeZone', ${settings.timeZone}, false)`.execute(db);
  if (settings.dateStyle !== undefined) await sql`SELECT set_config('DateStyle', ${settings.dateStyle}, false)`.execute(db);
  if (settings.migrate ?? true) await migrateToLatest(db);
  return {
    db,
    kind: 'pglite',
    destroy: () => db.destroy(),
  };
};
