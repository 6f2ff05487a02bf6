/**
 * `@agentconn/kysely/pglite`: a Kysely over PGlite (PostgreSQL in WebAssembly, in this process) with
 * Kysely's own `PGliteDialect`. The only module of this package that imports `@electric-sql/pglite`.
 */
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect } from 'kysely';
import type { CoderDatabase } from './schema.js';

/**
 * A `Kysely<CoderDatabase>` over `pglite`, or over a new in-memory PGlite when none is given.
 * `db.destroy()` closes the PGlite instance (Kysely's dialect does), also one passed in.
 */
export function createPgliteDb(pglite: PGlite = new PGlite()): Kysely<CoderDatabase> {
  return new Kysely<CoderDatabase>({ dialect: new PGliteDialect({ pglite }) });
}
