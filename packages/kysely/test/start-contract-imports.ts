import type { Kysely } from 'kysely';
import type { CoderDatabase } from '../src/index.js';
import { coderSchemaSubsetMigration, migrateToLatest } from '../src/testing/index.js';

export {
  checkCoderSchema,
  createCoderAgentSource,
  createCoderStartSource,
  createWorkspaceStartIndexes,
  FIRST_CONNECTION_REQUIREMENT,
  WORKSPACE_START_REQUIREMENT,
} from '../src/index.js';

/** The first-connection subset alone, as on a Coder database the start family cannot read. */
export async function coderSchemaSubsetMigrationOnly(db: Kysely<CoderDatabase>): Promise<void> {
  await migrateToLatest(db, { provider: { getMigrations: () => Promise.resolve({ '0001_coder_schema_subset': coderSchemaSubsetMigration }) } });
}
