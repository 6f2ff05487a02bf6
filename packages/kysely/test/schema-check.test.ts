/** The preflight's database part, on PGlite and on the real server; roles and grants on the server only. */
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BASE_DATABASE_URL, createTestDatabase } from '@agentconn/test-support/postgres';
import { AWAITING_REQUIREMENT, checkCoderSchema, FIRST_CONNECTION_REQUIREMENT, type SchemaRequirement } from '../src/index.js';
import { createPostgresDb } from '../src/postgres.js';
import { openPgliteTestDatabase, openPostgresTestDatabase, type OpenTestDatabase, type TestDatabase } from './helpers/databases.js';

const REQUIREMENTS = [FIRST_CONNECTION_REQUIREMENT, AWAITING_REQUIREMENT];
const texts = (check: { problems: readonly { text: string }[] }) => check.problems.map((p) => p.text);

const opened: TestDatabase[] = [];
afterEach(async () => {
  for (const database of opened.splice(0)) await database.destroy();
});

describe.each<[string, OpenTestDatabase]>([
  ['PGlite', openPgliteTestDatabase],
  ['PostgreSQL', openPostgresTestDatabase],
])('checkCoderSchema on %s', (_name, open) => {
  const database = async (migrate = true) => {
    const db = await open({ migrate });
    opened.push(db);
    return db.db as Kysely<unknown>;
  };

  it('finds nothing wrong with the schema subset, and says which server it asked', async () => {
    const check = await checkCoderSchema(await database(), REQUIREMENTS);
    expect(check.problems).toEqual([]);
    expect(check.features.map((f) => f.problems)).toEqual([[], []]);
    expect(check.hasCoderSchema).toBe(true);
    expect(check.serverVersion).toMatch(/^\d+\.\d+/);
    expect(check.coderMigration).toBeUndefined();
  });

  it('a dropped connection_timeout_seconds stops only the family that reads it', async () => {
    const db = await database();
    await sql`ALTER TABLE workspace_agents DROP COLUMN connection_timeout_seconds`.execute(db);
    const check = await checkCoderSchema(db, REQUIREMENTS);
    expect(check.features[0]?.problems).toEqual([]);
    expect(check.features[1]?.problems.map((p) => p.text)).toEqual(['workspace_agents.connection_timeout_seconds: missing']);
  });

  it('every missing column at once, each once, under every family that needs it', async () => {
    const db = await database();
    await sql`ALTER TABLE template_versions DROP COLUMN name`.execute(db);
    await sql`ALTER TABLE workspaces DROP COLUMN deleted`.execute(db);
    const check = await checkCoderSchema(db, REQUIREMENTS);
    expect(texts(check)).toEqual(['workspaces.deleted: missing', 'template_versions.name: missing']);
    expect(check.features.map((f) => f.problems.length)).toEqual([2, 2]);
  });

  it("reads Coder's migration from schema_migrations, and takes a family's own tables as data", async () => {
    const db = await database();
    await sql`CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`.execute(db);
    await sql`INSERT INTO schema_migrations VALUES (412, false)`.execute(db);
    const daemons: SchemaRequirement = { feature: 'a family of provisioner daemons', required: false, columns: { provisioner_daemons: ['id', 'name'] } };
    const check = await checkCoderSchema(db, [...REQUIREMENTS, daemons]);
    expect(check.coderMigration).toBe(412);
    expect(check.features[2]?.problems.map((p) => p.text)).toEqual(['provisioner_daemons: missing']);
  });
});

describe('checkCoderSchema on a database without Coder', () => {
  const expected = [
    'workspace_agents: missing',
    'workspace_resources: missing',
    'workspace_builds: missing',
    'workspaces: missing',
    'templates: missing',
    'template_versions: missing',
    'users: missing',
  ];

  it('PGlite: no Coder schema, every table named', async () => {
    const database = await openPgliteTestDatabase({ migrate: false });
    opened.push(database);
    const check = await checkCoderSchema(database.db as Kysely<unknown>, REQUIREMENTS);
    expect(check.hasCoderSchema).toBe(false);
    expect(texts(check)).toEqual(expected);
  });

  it('PostgreSQL: no Coder schema in a database of its own (no other schema holds Coder tables either)', async () => {
    const created = await createTestDatabase('agentconn_nocoder');
    const db = createPostgresDb(created.url);
    try {
      const check = await checkCoderSchema(db as Kysely<unknown>, REQUIREMENTS);
      expect(check.hasCoderSchema).toBe(false);
      expect(texts(check)).toEqual(expected);
    } finally {
      await db.destroy();
      await created.drop();
    }
  });
});

/** A fresh schema with the subset on the real server, and its name. */
async function serverDatabase(): Promise<{ database: TestDatabase; schema: string }> {
  const database = await openPostgresTestDatabase();
  opened.push(database);
  const schema = (await sql<{ schema: string }>`SELECT current_schema() AS schema`.execute(database.db)).rows[0]!.schema;
  return { database, schema };
}

describe('checkCoderSchema with a role of limited grants (PostgreSQL)', () => {
  const role = `agentconn_preflight_${randomBytes(4).toString('hex')}`;
  afterAll(async () => {
    const admin = createPostgresDb(BASE_DATABASE_URL);
    try {
      await sql`DROP ROLE IF EXISTS ${sql.id(role)}`.execute(admin);
    } finally {
      await admin.destroy();
    }
  });

  it('a role missing three grants gets all three at once, each with the GRANT that fixes it, and the GRANTs do', async () => {
    const { database, schema } = await serverDatabase();
    await sql`CREATE ROLE ${sql.id(role)} LOGIN`.execute(database.db);
    await sql`GRANT USAGE ON SCHEMA ${sql.id(schema)} TO ${sql.id(role)}`.execute(database.db);
    for (const table of ['workspace_agents', 'workspace_resources', 'workspace_builds', 'workspaces']) {
      await sql`GRANT SELECT ON ${sql.id(schema, table)} TO ${sql.id(role)}`.execute(database.db);
    }
    const url = new URL(BASE_DATABASE_URL);
    url.username = role;
    const asRole = createPostgresDb({ connectionString: url.toString(), options: `-c search_path=${schema}` });
    try {
      const check = await checkCoderSchema(asRole as Kysely<unknown>, REQUIREMENTS);
      expect(texts(check)).toEqual(['templates: permission denied', 'template_versions: permission denied', 'users: permission denied']);
      const fixes = check.problems.map((p) => p.fix);
      expect(fixes).toEqual([
        `GRANT SELECT (id, name) ON templates TO ${role};`,
        `GRANT SELECT (id, name) ON template_versions TO ${role};`,
        `GRANT SELECT (id, username) ON users TO ${role};`,
      ]);
      for (const fix of fixes) await sql.raw(fix ?? '').execute(database.db);
      expect((await checkCoderSchema(asRole as Kysely<unknown>, REQUIREMENTS)).problems).toEqual([]);
    } finally {
      await asRole.destroy();
    }
  });

  it('tables in a schema off the search path are found there, with the setting that reaches them', async () => {
    const { schema } = await serverDatabase();
    const elsewhere = createPostgresDb({ connectionString: BASE_DATABASE_URL, options: '-c search_path=public' });
    try {
      const check = await checkCoderSchema(elsewhere as Kysely<unknown>, [FIRST_CONNECTION_REQUIREMENT]);
      expect(check.hasCoderSchema).toBe(true);
      const users = check.problems.find((p) => p.table === 'users');
      expect(users?.kind).toBe('not on the search path');
      expect(users?.text).toContain(`(it is in schema ${schema})`);
      expect(users?.fix).toBe(`add options=-c%20search_path%3D${schema} to the database URL`);
    } finally {
      await elsewhere.destroy();
    }
  });
});
