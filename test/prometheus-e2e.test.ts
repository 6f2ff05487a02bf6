import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { type CoderDatabase } from '@agentconn/kysely';
import { generateCoderData, migrateToLatest, type GeneratedAgent } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { waitFor } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';
import { promtoolCheckMetrics } from '@agentconn/test-support/promtool';

const SEED_PROMQL =
  'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))';

/** Connect delay per template index, in seconds, and the bucket its P95 must fall in. */
const DELAYS = [
  { seconds: 20, bucket: [10, 30] },
  { seconds: 90, bucket: [60, 120] },
  { seconds: 400, bucket: [300, 600] },
] as const;

describe('a real Prometheus scrapes the exporter running on the real PostgreSQL server', () => {
  let database: TestDatabase;
  let db: Kysely<CoderDatabase>;
  let exporter: ExporterProcess;
  let prometheus: PrometheusServer;
  let agents: readonly GeneratedAgent[];
  let templateNames: string[];

  beforeAll(async () => {
    database = await createTestDatabase('agentconn_prom');
    db = createPostgresDb(database.url);
    await migrateToLatest(db);
    const generated = await generateCoderData(db, {
      seed: 11,
      users: 8,
      templates: DELAYS.length,
      workspaces: 60,
      buildsPerWorkspace: 2,
      deletedWorkspaceRatio: 0.1,
      deletedAgentRatio: 0.05,
      neverConnectedRatio: 1, // every agent waits: they connect during the test, after Prometheus's first scrape
      negativeRatio: 0,
    });
    agents = generated.agents;
    templateNames = generated.templates.map((t) => t.name);
    const port = await freePort();
    exporter = spawnExporter([
      '--database-url', database.url,
      '--listen', `127.0.0.1:${port}`,
      '--interval', '1s',
      // Per-template series exist before the main wave connects, so rate() sees the increase.
      '--labels', 'template_name,agent_name',
    ]);
    const url = await exporter.started;
    prometheus = await startPrometheus([new URL(url).host]);
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await exporter?.stop();
    await db?.destroy();
    await database?.drop();
  });

  /** Sets created_at so that connecting now takes the template's delay (or `negative` seconds of skew). */
  async function connect(ids: string[], delayFor: (agent: GeneratedAgent) => number): Promise<void> {
    for (const id of ids) {
      const agent = agents.find((a) => a.id === id)!;
      const delay = delayFor(agent);
      await sql`UPDATE workspace_agents
        SET created_at = clock_timestamp() - make_interval(secs => ${delay}),
            first_connected_at = clock_timestamp(), last_connected_at = clock_timestamp()
        WHERE id = ${id}`.execute(db);
    }
  }

  const templateDelay = (agent: GeneratedAgent) => DELAYS[templateNames.indexOf(agent.templateName)]!.seconds;
  const counts = (a: GeneratedAgent) => a.latestBuild && !a.workspaceDeleted && !a.deleted;

  it('answers Coder PR #24179\'s PromQL with one series per template in the expected bucket, and counts every agent once', async () => {
    await prometheus.waitForScrapes(1);
    const counted = agents.filter(counts);
    // First wave: one agent per template, so every template's series exists before the main wave.
    const firstWave = templateNames.map((name) => counted.find((a) => a.templateName === name)!);
    await connect(firstWave.map((a) => a.id), templateDelay);
    await waitFor(async () => (await prometheus.query('sum(coderd_agents_first_connection_seconds_count)'))[0]?.value[1] === String(firstWave.length));
    await prometheus.waitForScrapes(2);

    // Main wave: the rest, plus agents that must not count (old builds, deleted) and two with clock skew.
    const rest = counted.filter((a) => !firstWave.includes(a));
    const skewed = rest.slice(0, 2);
    const normal = rest.slice(2);
    const ignored = agents.filter((a) => !counts(a));
    expect(ignored.some((a) => !a.latestBuild)).toBe(true);
    expect(ignored.some((a) => a.workspaceDeleted || a.deleted)).toBe(true);
    await connect([...normal, ...ignored].map((a) => a.id), templateDelay);
    await connect(skewed.map((a) => a.id), () => -30);

    const expected = new Map<string, number>();
    for (const a of [...firstWave, ...normal]) expected.set(a.templateName, (expected.get(a.templateName) ?? 0) + 1);

    const byTemplate = async () =>
      new Map(
        (await prometheus.query('sum by (template_name) (coderd_agents_first_connection_seconds_count)')).map((s) => [
          s.metric['template_name'] ?? '',
          Number(s.value[1]),
        ]),
      );
    await waitFor(async () => sameCounts(await byTemplate(), expected));
    await prometheus.waitForScrapes(2);
    expect(await byTemplate()).toEqual(expected);

    const quantiles = await prometheus.query(SEED_PROMQL);
    expect(quantiles.map((q) => q.metric['template_name']).sort()).toEqual([...templateNames].sort());
    for (const q of quantiles) {
      const [low, high] = DELAYS[templateNames.indexOf(q.metric['template_name'] ?? '')]!.bucket;
      const value = Number(q.value[1]);
      expect(value, `P95 of ${q.metric['template_name']}`).toBeGreaterThan(low);
      expect(value, `P95 of ${q.metric['template_name']}`).toBeLessThanOrEqual(high);
    }
    const dropped = await prometheus.query('sum(agentconn_samples_dropped_total{reason="negative_duration"})');
    expect(dropped[0]?.value[1]).toBe('2');
  }, 120_000);

  it('serves output that promtool check metrics accepts', async () => {
    const text = await (await fetch(await exporter.started)).text();
    expect(text).toContain('coderd_agents_first_connection_seconds_bucket');
    const result = promtoolCheckMetrics(text);
    expect(result.output).toBe('');
    expect(result.status).toBe(0);
  });
});

function sameCounts(actual: Map<string, number>, expected: Map<string, number>): boolean {
  return actual.size === expected.size && [...expected].every(([k, v]) => actual.get(k) === v);
}
