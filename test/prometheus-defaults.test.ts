import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { type CoderDatabase } from '@agentconn/kysely';
import { addWorkspaces, generateCoderData, migrateToLatest, type GeneratedAgent } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { waitFor } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';

/**
 * What a new user sees with the exporter's default flags. With the four labels of Coder PR #24179 as the
 * default, every new workspace was a new series born at count 1: the headline query answered NaN for every
 * template and `sum(rate(..._count[1h]))` was 0 while 127 agents had connected. Coder #24355's two labels
 * keep one series per template and agent name, so only the first sample of each is invisible to rate().
 * On the old defaults this test fails: "headline query answered only [] within 45000 ms".
 */
const HEADLINE =
  'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))';
const INCREASE = 'sum(increase(coderd_agents_first_connection_seconds_count[5m]))';

/** Connect delay per template index, in seconds. */
const DELAYS = [20, 90, 400] as const;
/** From the first connection of the main wave, how long the headline query may take to answer every template. */
const ANSWER_WITHIN_MS = 45_000;

describe('default flags: a real Prometheus answers the headline query while new workspaces connect', () => {
  let database: TestDatabase;
  let db: Kysely<CoderDatabase>;
  let exporter: ExporterProcess;
  let prometheus: PrometheusServer;
  let templateNames: string[];
  let seed = 100;

  beforeAll(async () => {
    database = await createTestDatabase('agentconn_defaults');
    db = createPostgresDb(database.url);
    await migrateToLatest(db);
    // History that connected before the exporter started: not counted (the default --backfill none).
    const generated = await generateCoderData(db, {
      seed: 21,
      users: 6,
      templates: DELAYS.length,
      workspaces: 6,
      neverConnectedRatio: 0,
      negativeRatio: 0,
    });
    templateNames = generated.templates.map((t) => t.name);
    const port = await freePort();
    // Default flags but the database, a free port and a 1 s poll (the default 60 s would make this test slow).
    exporter = spawnExporter(['--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--interval', '1s']);
    const url = await exporter.started;
    prometheus = await startPrometheus([new URL(url).host]);
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await exporter?.stop();
    await db?.destroy();
    await database?.drop();
  });

  /** New workspaces (created now, agents not connected yet), only those whose agents count. */
  async function newWorkspaces(count: number): Promise<GeneratedAgent[]> {
    const added = await addWorkspaces(db, {
      seed: seed++,
      workspaces: count,
      buildsPerWorkspace: 1,
      deletedWorkspaceRatio: 0,
      deletedAgentRatio: 0,
      neverConnectedRatio: 1,
    });
    return added.agents.filter((a) => a.latestBuild && !a.workspaceDeleted && !a.deleted);
  }

  async function connect(agents: readonly GeneratedAgent[]): Promise<void> {
    for (const agent of agents) {
      const delay = DELAYS[templateNames.indexOf(agent.templateName)]!;
      await sql`UPDATE workspace_agents
        SET created_at = clock_timestamp() - make_interval(secs => ${delay}),
            first_connected_at = clock_timestamp(), last_connected_at = clock_timestamp()
        WHERE id = ${agent.id}`.execute(db);
    }
  }

  const totalCount = async () => Number((await prometheus.query('sum(coderd_agents_first_connection_seconds_count)'))[0]?.value[1] ?? 0);

  it('answers a finite P95 for every template within 45 s, and increase() over 5m counts the connections within 10 %', async () => {
    await prometheus.waitForScrapes(1);
    let connected = 0;

    // First wave: one agent of a new workspace per template.
    const firstWave: GeneratedAgent[] = [];
    while (firstWave.length < templateNames.length) {
      for (const agent of await newWorkspaces(6)) {
        if (!firstWave.some((a) => a.templateName === agent.templateName)) firstWave.push(agent);
      }
    }
    await connect(firstWave);
    connected += firstWave.length;
    await waitFor(async () => (await totalCount()) === connected, 30_000, 'first wave in Prometheus');

    // Main wave: new workspaces keep coming, a few agents a second, each of a workspace Prometheus never saw.
    const mainStarted = Date.now();
    const answered = new Map<string, number>();
    while (answered.size < templateNames.length) {
      if (Date.now() - mainStarted > ANSWER_WITHIN_MS) {
        throw new Error(`headline query answered only ${JSON.stringify([...answered])} within ${ANSWER_WITHIN_MS} ms`);
      }
      const wave = await newWorkspaces(3);
      await connect(wave);
      connected += wave.length;
      await new Promise((r) => setTimeout(r, 1000));
      for (const q of await prometheus.query(HEADLINE)) {
        const value = Number(q.value[1]);
        if (Number.isFinite(value)) answered.set(q.metric['template_name'] ?? '', value);
      }
    }
    expect([...answered.keys()].sort()).toEqual([...templateNames].sort());
    for (const [template, p95] of answered) {
      // The P95 lies in the bucket of the template's delay (or the one above, by interpolation).
      expect(p95, `P95 of ${template}`).toBeGreaterThan(0);
      expect(p95, `P95 of ${template}`).toBeLessThanOrEqual(600);
    }

    // A few more rounds, so the count is well above the number of series.
    while (connected < 60) {
      const wave = await newWorkspaces(3);
      await connect(wave);
      connected += wave.length;
      await new Promise((r) => setTimeout(r, 500));
    }
    await waitFor(async () => (await totalCount()) === connected, 30_000, 'every connection in Prometheus');
    await prometheus.waitForScrapes(2);
    const increase = Number((await prometheus.query(INCREASE))[0]?.value[1]);
    // Every connection of this test happened within the 5m window; increase() misses only the first sample
    // of each series (a few per template) and extrapolates by about half a scrape interval at each end.
    expect(Math.abs(increase - connected), `increase ${increase} for ${connected} connections`).toBeLessThanOrEqual(0.1 * connected);
  }, 180_000);
});
