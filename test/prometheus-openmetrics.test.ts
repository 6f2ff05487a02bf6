import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createCoderFixture, observedCount, waitFor, type CoderFixture } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';

/** What Prometheus 2.42 sends by default: OpenMetrics first. */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
const BUCKETS = 'coderd_agents_first_connection_seconds_bucket';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function setup(
  fixture: Parameters<typeof createCoderFixture>[0],
  flags: string[] = [],
): Promise<{ f: CoderFixture; exporter: ExporterProcess; url: string; prometheus: PrometheusServer }> {
  const f = await createCoderFixture(fixture);
  cleanups.push(() => f.close());
  const port = await freePort();
  const exporter = spawnExporter(['--database-url', f.database.url, '--listen', `127.0.0.1:${port}`, '--interval', '500ms', ...flags]);
  cleanups.push(() => exporter.stop());
  const url = await exporter.started;
  const prometheus = await startPrometheus([new URL(url).host], { flags: ['--enable-feature=exemplar-storage'] });
  cleanups.push(() => prometheus.stop());
  return { f, exporter, url, prometheus };
}

/** Connects agents with an exact duration: both timestamps from one clock reading, so the µs are the test's. */
async function connectWithDuration(f: CoderFixture, id: string, seconds: number): Promise<void> {
  await sql`UPDATE workspace_agents AS wa
    SET first_connected_at = t.ts, last_connected_at = t.ts, created_at = t.ts - make_interval(secs => ${seconds})
    FROM (SELECT clock_timestamp() AS ts) AS t
    WHERE wa.id = ${id}`.execute(f.db);
}

/** A label value as the exposition writes it between quotes: backslash, double quote and newline escaped. */
function asWritten(value: string): string {
  return value.replace(/[\\"\n]/g, (ch) => (ch === '\n' ? '\\n' : '\\' + ch));
}

/** Sample lines of an exposition (OpenMetrics or text): every line that is not a comment or empty. */
function sampleLines(text: string): string[] {
  return text.split('\n').filter((line) => line.length > 0 && !line.startsWith('#'));
}

describe('OpenMetrics with exemplars, scraped by a real Prometheus (2.42, --enable-feature=exemplar-storage)', () => {
  it('query_exemplars names the slow agent (workspace_name, agent_id) in the bucket of its duration, µs kept', async () => {
    const { f, url, prometheus } = await setup({ workspaces: 12, templates: 1 });
    await prometheus.waitForScrapes(1);
    const [slow, onBound, aboveBound, ...others] = f.counting.slice(0, 8);
    if (slow === undefined || onBound === undefined || aboveBound === undefined) throw new Error('fixture has too few agents');
    for (const [i, agent] of others.entries()) await connectWithDuration(f, agent.id, 20 + i);
    await waitFor(async () => (await observedCount(url)) === others.length, 15_000, 'fast agents observed');
    await prometheus.waitForScrapes(1);
    // 1234.567891 s lies in (600, 1800]: the exemplar must be on the le="1800" line.
    await connectWithDuration(f, slow.id, 1234.567891);
    await waitFor(async () => (await observedCount(url)) === others.length + 1, 15_000, 'slow agent observed');
    await prometheus.waitForScrapes(2);

    // 600 s exactly is in (300, 600]; 1 µs more is in (600, 1800]: the exemplar keeps the µs and its bucket.
    await connectWithDuration(f, onBound.id, 600);
    await waitFor(async () => (await observedCount(url)) === others.length + 2, 15_000, 'on-bound agent observed');
    await prometheus.waitForScrapes(2);
    await connectWithDuration(f, aboveBound.id, 600.000001);
    await waitFor(async () => (await observedCount(url)) === others.length + 3, 15_000, 'above-bound agent observed');
    await prometheus.waitForScrapes(2);

    const series = await prometheus.queryExemplars(BUCKETS);
    const found = series.flatMap((s) => s.exemplars.map((e) => ({ series: s.seriesLabels, exemplar: e })));
    const of = (id: string) => found.filter((x) => x.exemplar.labels['agent_id'] === id).map((x) => [x.series['le'], x.exemplar.value]);
    expect(of(onBound.id)).toEqual([['600', '600']]);
    expect(of(aboveBound.id)).toEqual([['1800', '600.000001']]);
    const slowOnes = found.filter((x) => x.exemplar.labels['agent_id'] === slow.id);
    expect(slowOnes.length).toBeGreaterThan(0);
    for (const { series: labels, exemplar } of slowOnes) {
      expect(labels['le']).toBe('1800');
      expect(labels['template_name']).toBe(slow.templateName);
      expect(labels['username']).toBeUndefined();
      expect(exemplar.labels['workspace_name']).toBe(slow.workspaceName);
      expect(exemplar.labels['username']).toBe(slow.username);
      expect(exemplar.value).toBe('1234.567891');
    }
    // The fast agents' exemplars sit in (10, 30], never on the slow bucket.
    const fastIds = new Set(others.map((a) => a.id));
    expect(others.length).toBeGreaterThan(2);
    const fast = found.filter((x) => fastIds.has(x.exemplar.labels['agent_id'] ?? ''));
    expect(fast.length).toBeGreaterThan(0);
    for (const { series: labels, exemplar } of fast) {
      expect(labels['le']).toBe('30');
      expect(Number(exemplar.value)).toBeGreaterThan(10);
      expect(Number(exemplar.value)).toBeLessThanOrEqual(30);
    }
  }, 120_000);

  it('ingests every series of the OpenMetrics answer, hostile label values and exemplars included', async () => {
    const { f, url, prometheus } = await setup({ workspaces: 16, specialLabels: true });
    const agents = f.counting.slice(0, 8);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the range of non-ASCII characters starts after \x7f
    expect(agents.some((a) => /["\\\n]/.test(a.workspaceName) && /[^\x00-\x7f]/.test(a.workspaceName))).toBe(true);
    await prometheus.waitForScrapes(1);
    for (const [i, agent] of agents.entries()) await connectWithDuration(f, agent.id, 5 + i * 40);
    await waitFor(async () => (await observedCount(url)) === agents.length, 15_000, 'observed');

    const response = await fetch(url, { headers: { accept: PROMETHEUS_ACCEPT } });
    expect(response.headers.get('content-type')).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    const text = await response.text();
    expect(text.endsWith('# EOF\n')).toBe(true);
    expect(text).toContain('# TYPE agentconn_samples_observed counter\n');
    expect(text).toContain('# UNIT coderd_agents_first_connection_seconds seconds\n');
    expect(text).toMatch(/_bucket\{[^\n]*\} \d+ # \{agent_id="/);
    // Without an OpenMetrics Accept header: the Prometheus text format, as before.
    const plain = await fetch(url);
    expect(plain.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await plain.text()).not.toContain('# EOF');

    await prometheus.waitForScrapes(2);
    const [target] = (await prometheus.query('scrape_samples_scraped{job="agentconn"}')).map((s) => Number(s.value[1]));
    // Only the poll self-metrics change between scrapes; the number of lines does not.
    expect(target).toBe(sampleLines(text).length);
    const up = await prometheus.query('up{job="agentconn"}');
    expect(up.map((s) => s.value[1])).toEqual(['1']);
    // Series labels round-trip through Prometheus's OpenMetrics parser.
    const counts = await prometheus.query('coderd_agents_first_connection_seconds_count');
    const templates = new Set(agents.map((a) => a.templateName));
    expect(new Set(counts.map((s) => s.metric['template_name']))).toEqual(templates);
    expect(counts.reduce((n, s) => n + Number(s.value[1]), 0)).toBe(agents.length);
    // Exemplar labels too: every agent is some bucket's latest here (different buckets per agent or template).
    const exemplars = (await prometheus.queryExemplars(BUCKETS)).flatMap((s) => s.exemplars);
    const byId = new Map(exemplars.map((e) => [e.labels['agent_id'], e.labels]));
    const seen = agents.filter((a) => byId.has(a.id));
    expect(seen.length).toBeGreaterThan(0);
    for (const agent of seen) {
      const labels = byId.get(agent.id)!;
      // Prometheus 2.42 unescapes series label values but stores exemplar label values as written, so
      // what it returns is the escaped text; the Unicode arrives intact either way.
      expect(labels['workspace_name']).toBe(asWritten(agent.workspaceName));
      expect(labels['username']).toBe(asWritten(agent.username));
    }
  }, 120_000);
});
