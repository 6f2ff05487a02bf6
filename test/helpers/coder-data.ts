import { sql, type Kysely } from 'kysely';
import { type CoderDatabase } from '@agentconn/kysely';
import { generateCoderData, migrateToLatest, type GeneratedAgent, type GeneratedCoderData } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';

export interface CoderFixture {
  readonly database: TestDatabase;
  readonly db: Kysely<CoderDatabase>;
  readonly data: GeneratedCoderData;
  /** Agents Coder PR #24179's rule counts once connected: latest build, workspace and agent not deleted. */
  readonly counting: GeneratedAgent[];
  /** Agents it never counts (older builds, deleted). */
  readonly ignored: GeneratedAgent[];
  close(): Promise<void>;
}

/** A fresh database with the Coder schema subset and workspaces whose agents have not connected yet. */
export async function createCoderFixture(options: { workspaces?: number; templates?: number; seed?: number; specialLabels?: boolean } = {}): Promise<CoderFixture> {
  const database = await createTestDatabase();
  const db = createPostgresDb(database.url);
  await migrateToLatest(db);
  const data = await generateCoderData(db, {
    seed: options.seed ?? 5,
    users: 6,
    templates: options.templates ?? 2,
    workspaces: options.workspaces ?? 40,
    buildsPerWorkspace: 2,
    deletedWorkspaceRatio: 0.1,
    deletedAgentRatio: 0.05,
    neverConnectedRatio: 1,
    negativeRatio: 0,
    specialLabels: options.specialLabels ?? false,
  });
  const counts = (a: GeneratedAgent) => a.latestBuild && !a.workspaceDeleted && !a.deleted;
  return {
    database,
    db,
    data,
    counting: data.agents.filter(counts),
    ignored: data.agents.filter((a) => !counts(a)),
    async close() {
      await db.destroy();
      await database.drop();
    },
  };
}

/** Agents connect now (database clock), `delaySeconds` after they were created. */
export async function connectNow(db: Kysely<CoderDatabase>, agents: readonly GeneratedAgent[], delaySeconds = 30): Promise<void> {
  if (agents.length === 0) return;
  await sql`UPDATE workspace_agents
    SET created_at = clock_timestamp() - make_interval(secs => ${delaySeconds}),
        first_connected_at = clock_timestamp(), last_connected_at = clock_timestamp()
    WHERE id = ANY(${agents.map((a) => a.id)}::uuid[])`.execute(db);
}

export async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`scrape ${url}: HTTP ${response.status}`);
  return response.text();
}

/** The exporter's total count of observed first connections. */
export async function observedCount(url: string): Promise<number> {
  return sumSamples(await scrape(url), 'coderd_agents_first_connection_seconds_count');
}

export async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `agentconn_polls_total{outcome="success"}` of the exporter at `url`, 0 before its first poll. */
export async function successfulPolls(url: string): Promise<number> {
  const line = (await scrape(url)).split('\n').find((l) => l.startsWith('agentconn_polls_total{') && l.includes('outcome="success"'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Resolves once the exporter at `url` has made `n` more successful polls (20 s at most). */
export async function afterPolls(url: string, n: number): Promise<void> {
  const start = await successfulPolls(url);
  await waitFor(async () => (await successfulPolls(url)) >= start + n, 20_000, `${n} more successful polls`);
}
