/**
 * The agents that never connect, end to end: the exporter on the real PostgreSQL server, a real
 * Prometheus scraping it with examples/prometheus/sli-rules.yml loaded (evaluated every second here
 * instead of every minute). The SLI is checked against the share computed from the database itself.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createCoderFixture, waitFor, type CoderFixture } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';

const SLI_RULES = fileURLToPath(new URL('../examples/prometheus/sli-rules.yml', import.meta.url));

describe('awaiting gauges, timeouts and the SLI rule through a real Prometheus', () => {
  let fixture: CoderFixture;
  let exporter: ExporterProcess;
  let prometheus: PrometheusServer;

  beforeAll(async () => {
    fixture = await createCoderFixture({ workspaces: 30, templates: 2, seed: 15 });
    const port = await freePort();
    exporter = spawnExporter([
      '--database-url', fixture.database.url,
      '--listen', `127.0.0.1:${port}`,
      '--interval', '1s',
      '--labels', 'template_name,agent_name',
    ]);
    const url = await exporter.started;
    const rules = readFileSync(SLI_RULES, 'utf8').replaceAll('interval: 1m', 'interval: 1s');
    expect(rules).toContain('interval: 1s');
    prometheus = await startPrometheus([new URL(url).host], { rules: [rules] });
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await exporter?.stop();
    await fixture?.close();
  });

  const byTemplate = async (expr: string) =>
    new Map((await prometheus.query(expr)).map((s) => [s.metric['template_name'] ?? '', Number(s.value[1])]));

  it('awaiting series leave as their agents connect; timeouts counted once; the SLI rule is the share computed from the database', async () => {
    const { db, counting } = fixture;
    const [slow, fast] = fixture.data.templates.map((t) => t.name) as [string, string];
    const ofSlow = counting.filter((a) => a.templateName === slow);
    const ofFast = counting.filter((a) => a.templateName === fast);
    expect(ofSlow.length).toBeGreaterThan(2);
    expect(ofFast.length).toBeGreaterThan(2);
    await prometheus.waitForScrapes(1);

    // Every agent starts waiting now (after the exporter started: the default backfill counts from its
    // start); the slow template's agents time out after 2 s, the fast one's never (0, as in Coder).
    await sql`UPDATE workspace_agents SET created_at = clock_timestamp(), connection_timeout_seconds = 0`.execute(db);
    await sql`UPDATE workspace_agents SET connection_timeout_seconds = 2 WHERE id = ANY(${ofSlow.map((a) => a.id)}::uuid[])`.execute(db);
    const awaiting = 'sum by (template_name) (coderd_agents_awaiting_first_connection)';
    await waitFor(async () => (await byTemplate(awaiting)).get(slow) === ofSlow.length, 30_000, 'all agents awaiting');
    // Old builds and deleted agents or workspaces also wait in the database; they are not counted.
    expect(await byTemplate(awaiting)).toEqual(new Map([[slow, ofSlow.length], [fast, ofFast.length]]));

    // The fast template connects now: a third of its agents took 400 s (not within 300 s), the rest 20 s.
    const late = ofFast.slice(0, Math.ceil(ofFast.length / 3));
    const onTime = ofFast.slice(late.length);
    const connect = async (ids: string[], delaySeconds?: number) =>
      delaySeconds === undefined
        ? sql`UPDATE workspace_agents SET first_connected_at = clock_timestamp() WHERE id = ANY(${ids}::uuid[])`.execute(db)
        : sql`UPDATE workspace_agents SET created_at = clock_timestamp() - make_interval(secs => ${delaySeconds}), first_connected_at = clock_timestamp() WHERE id = ANY(${ids}::uuid[])`.execute(db);
    await connect(late.map((a) => a.id), 400);
    await connect(onTime.map((a) => a.id), 20);

    // The slow template's agents pass their 2 s timeout; then half of them connect after all.
    const timeouts = 'sum by (template_name) (coderd_agents_first_connection_timeouts_total)';
    await waitFor(async () => (await byTemplate(timeouts)).get(slow) === ofSlow.length, 30_000, 'timeouts counted');
    const half = ofSlow.slice(0, Math.floor(ofSlow.length / 2));
    await connect(half.map((a) => a.id));
    await waitFor(async () => (await byTemplate(awaiting)).get(slow) === ofSlow.length - half.length, 30_000, 'half connected');
    // No fast agent waits: its series left /metrics, so Prometheus has none (not a 0).
    expect((await byTemplate(awaiting)).get(fast)).toBeUndefined();
    const oldest = await byTemplate('max by (template_name) (coderd_agents_awaiting_first_connection_oldest_seconds)');
    expect(oldest.get(slow)).toBeGreaterThan(2);

    // The rest connect: nothing awaits any more, and no timeout is counted twice.
    await connect(ofSlow.slice(half.length).map((a) => a.id));
    await waitFor(async () => (await byTemplate(awaiting)).get(slow) === undefined, 30_000, 'no awaiting series');
    await prometheus.waitForScrapes(3);
    expect(await byTemplate(awaiting)).toEqual(new Map());
    expect(await byTemplate('count by (template_name) (coderd_agents_awaiting_first_connection_oldest_seconds)')).toEqual(new Map());
    expect((await byTemplate(timeouts)).get(slow)).toBe(ofSlow.length);
    expect((await byTemplate(timeouts)).get(fast)).toBeUndefined();

    // The SLI, independently: good = connected within 300 s, total = connected + timed out (Coder's rule).
    const { rows } = await sql<{ template_name: string; good: number; connected: number; timed_out: number }>`
      SELECT t.name AS template_name,
             count(*) FILTER (WHERE wa.first_connected_at - wa.created_at <= interval '300 seconds')::int AS good,
             count(*) FILTER (WHERE wa.first_connected_at IS NOT NULL)::int AS connected,
             count(*) FILTER (WHERE wa.connection_timeout_seconds > 0
               AND (wa.first_connected_at IS NULL OR wa.first_connected_at > wa.created_at + wa.connection_timeout_seconds * interval '1 second'))::int AS timed_out
      FROM workspace_agents wa JOIN workspace_resources wr ON wr.id = wa.resource_id
      JOIN workspace_builds wb ON wb.job_id = wr.job_id JOIN workspaces w ON w.id = wb.workspace_id
      JOIN templates t ON t.id = w.template_id
      WHERE wa.id = ANY(${counting.map((a) => a.id)}::uuid[])
      GROUP BY t.name`.execute(db);
    const expected = new Map(rows.map((r) => [r.template_name, r.good / (r.connected + r.timed_out)]));
    expect(expected.get(slow)).toBeCloseTo(0.5, 9); // every slow agent connected in time once, and timed out once
    expect(expected.get(fast)).toBeCloseTo(onTime.length / ofFast.length, 9);
    const sli = 'template_name:coderd_agents_first_connection_sli:ratio_1h';
    await waitFor(async () => {
      const got = await byTemplate(sli);
      return [...expected].every(([name, share]) => Math.abs((got.get(name) ?? -1) - share) < 1e-9);
    }, 30_000, 'the SLI rule evaluated');
    const result = await prometheus.query(sli);
    expect(result.every((s) => s.metric['threshold_seconds'] === '300')).toBe(true);
  }, 180_000);
});
