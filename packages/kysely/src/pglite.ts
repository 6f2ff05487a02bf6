/**
 * `@agentconn/kysely/pglite`: a Kysely over PGlite (PostgreSQL in WebAssembly, in this process) with
 * Kysely's own `PGliteDialect`. The only module of this package that imports `@electric-sql/pglite`.
 */
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, type PGliteDialectConfig } from 'kysely';
import type { CoderDatabase } from './schema.js';

/**
 * What `createPgliteDb` takes: a PGlite instance (or a function that makes one), as Kysely's dialect
 * describes it. Typed by Kysely's structural interface rather than by `@electric-sql/pglite`'s class, so
 * this declaration type-checks with `skipLibCheck: false` (PGlite's own declarations need the DOM and
 * Emscripten type libraries).
 */
export type PgliteInstance = PGliteDialectConfig['pglite'];

/**
 * A `Kysely<CoderDatabase>` over `pglite`, or over a new in-memory PGlite when none is given.
 * `db.destroy()` closes the PGlite instance (Kysely's dialect does), also one passed in.
 */
export function createPgliteDb(pglite: PgliteInstance = new PGlite()): Kysely<CoderDatabase> {
  return new Kysely<CoderDatabase>({ dialect: new PGliteDialect({ pglite }) });
}
