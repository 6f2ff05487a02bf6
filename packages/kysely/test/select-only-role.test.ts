/** The source works with a role that may only SELECT the columns it reads (PostgreSQL server only: roles). */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { AGENT_SOURCE_COLUMNS, CODER_TABLES, createCoderAgentSource, createCoderStartSource, START_SOURCE_COLUMNS } from '../src/index.js';
import { createPostgresDb } from '../src/postgres.js';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import { openPostgresTestDatabase, type TestDatabase } from './helpers/databases.js';
import { CoderFixture } from './helpers/fixtures.js';
import { StartFixture } from './helpers/start-fixtures.js';

const never = new AbortController().signal;

describe('a SELECT-only role', () => {
  const role = `agentconn_reader_${randomBytes(4).toString('hex')}`;
  let database: TestDatabase;
  let schema: string;
  let agentId: string;

  beforeAll(async () => {
    database = await openPostgresTestDatabase();
    const fixture = new CoderFixture(database.db);
    const { resourceId } = await fixture.workspaceWithBuild();
    agentId = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:02.5Z' });
    const { rows } = await sql<{ schema: string }>`SELECT current_schema() AS schema`.execute(database.db);
    schema = rows[0]!.schema;
    await sql`CREATE ROLE ${sql.id(role)} LOGIN`.execute(database.db);
    await sql`GRANT USAGE ON SCHEMA ${sql.id(schema)} TO ${sql.id(role)}`.execute(database.db);
  });
  afterAll(async () => {
    await database?.destroy();
    const admin = createPostgresDb(BASE_DATABASE_URL);
    try {
      await sql`DROP ROLE IF EXISTS ${sql.id(role)}`.execute(admin);
    } finally {
      await admin.destroy();
    }
  });

  function connectAsRole() {
    const url = new URL(BASE_DATABASE_URL);
    url.username = role;
    url.password = '';
    return createPostgresDb({ connectionString: url.toString(), options: `-c search_path=${schema}` });
  }

  it('cannot read anything before the grants (the role is really limited)', async () => {
    const db = connectAsRole();
    try {
      await expect(createCoderAgentSource(db).listAgents({ signal: never })).rejects.toThrow(
        'listing agents from the Coder database failed: permission denied for table workspaces',
      );
    } finally {
      await db.destroy();
    }
  });

  it('lists agents with column-level SELECT grants on the seven tables only', async () => {
    for (const table of CODER_TABLES) {
      const columns = sql.join(AGENT_SOURCE_COLUMNS[table].map((c) => sql.id(c)));
      await sql`GRANT SELECT (${columns}) ON ${sql.id(schema, table)} TO ${sql.id(role)}`.execute(database.db);
    }
    const db = connectAsRole();
    try {
      const { agents } = await createCoderAgentSource(db).listAgents({ signal: never });
      expect(agents.map((a) => [a.agentId, a.createdAt, a.firstConnectedAt])).toEqual([
        [agentId, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:02.500000Z'],
      ]);
      // The incremental query that leaves out the overlap's handled agents needs no other grant.
      const since = new Date('2026-01-01T00:00:00Z');
      expect((await createCoderAgentSource(db).listAgents({ connectedSince: since, excludeAgentIds: [agentId], signal: never })).agents).toEqual([]);
      expect((await createCoderAgentSource(db).listAgents({ connectedSince: since, excludeAgentIds: [], signal: never })).agents).toHaveLength(1);
      // The secrets stay out of reach.
      await expect(sql`SELECT hashed_password FROM users`.execute(db)).rejects.toThrow('permission denied for table users');
      await expect(sql`SELECT auth_token FROM workspace_agents`.execute(db)).rejects.toThrow('permission denied for table workspace_agents');
    } finally {
      await db.destroy();
    }
  });

  it('reads the whole start with the grants of START_SOURCE_COLUMNS added, and no more', async () => {
    const f = await StartFixture.create(database.db);
    const ws = await f.workspace(await f.template('docker'));
    const built = await f.build({ ...ws, createdAt: f.at(0), job: { startedAt: f.at(1), completedAt: f.at(20) } });
    const agent = await f.agent({ resourceId: built.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(21), readyAt: f.at(30) });
    await f.timing(built.jobId, 'plan', f.at(2), f.at(3));
    await f.scriptRun(await f.script(agent, 'install'), { stage: 'start', status: 'ok', startedAt: f.at(22), endedAt: f.at(29) });
    const db = connectAsRole();
    try {
      await expect(createCoderStartSource(db).listStarts({ signal: never })).rejects.toThrow('permission denied');
      for (const [table, columns] of Object.entries(START_SOURCE_COLUMNS)) {
        await sql`GRANT SELECT (${sql.join(columns.map((c) => sql.id(c)))}) ON ${sql.id(schema, table)} TO ${sql.id(role)}`.execute(database.db);
      }
      const batch = await createCoderStartSource(db).listStarts({ since: new Date(Date.parse(f.at(0))), signal: never });
      expect(batch.builds.map((b) => b.buildId)).toEqual([built.buildId]);
      expect(batch.jobs.map((j) => j.stages.map((s) => s.stage))).toEqual([['plan']]);
      expect(batch.scripts.map((s) => s.script)).toEqual(['install']);
      await expect(sql`SELECT input FROM provisioner_jobs`.execute(db)).rejects.toThrow('permission denied for table provisioner_jobs');
      await expect(sql`SELECT script FROM workspace_agent_scripts`.execute(db)).rejects.toThrow('permission denied for table workspace_agent_scripts');
    } finally {
      await db.destroy();
    }
  });
});
