/**
 * The whole start scraped by a real Prometheus (2.42, exemplar storage on): the P95 of ready starts per
 * template and the phase P95s answer within two scrapes of new starts, and an exemplar names the slow build.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '@agentconn/test-support/ports';
import { startPrometheus } from '@agentconn/test-support/prometheus-server';
import { waitFor } from './helpers/coder-data.js';
import { spawnExporter } from './helpers/exporter-process.js';
import { createStartDatabase, insertStartBuild, startsObserved } from './helpers/start-builds.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const P95_READY = 'histogram_quantile(0.95, sum by (le, template_name) (rate(agentconn_workspace_start_seconds_bucket{outcome="ready"}[1m])))';
const P95_PHASE = 'histogram_quantile(0.95, sum by (le, phase) (rate(agentconn_workspace_start_phase_seconds_bucket[1m])))';

describe('the whole start in a real Prometheus', () => {
  it('answers the P95 of ready starts per template and per phase within two scrapes, and an exemplar names the slow build', async () => {
    const d = await createStartDatabase();
    cleanups.push(() => d.close());
    const port = await freePort();
    // --backfill 1h: the builds below began before they are inserted; their early phases count too.
    const exporter = spawnExporter([
      '--database-url', d.database.url, '--listen', `127.0.0.1:${port}`, '--interval', '500ms', '--phases', 'true', '--backfill', '1h',
    ]);
    cleanups.push(() => exporter.stop());
    const url = await exporter.started;
    const prometheus = await startPrometheus([new URL(url).host], { flags: ['--enable-feature=exemplar-storage'] });
    cleanups.push(() => prometheus.stop());

    // A first start per template makes the series, so rate() sees the next ones.
    await insertStartBuild(d.db, { template: 'docker', seconds: 25 });
    await insertStartBuild(d.db, { template: 'k8s', seconds: 200 });
    await waitFor(async () => (await startsObserved(url)) === 2, 15_000, 'first starts observed');
    await prometheus.waitForScrapes(2);

    for (let i = 0; i < 10; i++) await insertStartBuild(d.db, { template: 'docker', seconds: 20 + i });
    const slow = await insertStartBuild(d.db, { template: 'docker', seconds: 1234.5 });
    for (let i = 0; i < 5; i++) await insertStartBuild(d.db, { template: 'k8s', seconds: 150 + i });
    await waitFor(async () => (await startsObserved(url)) === 18, 15_000, 'new starts observed');
    await prometheus.waitForScrapes(2);

    const p95 = Object.fromEntries((await prometheus.query(P95_READY)).map((s) => [s.metric['template_name'], Number(s.value[1])]));
    // docker: 11 new starts, the slowest in (600, 1800]: the 95th percentile falls in that bucket.
    expect(p95['docker']).toBeGreaterThan(600);
    expect(p95['docker']).toBeLessThanOrEqual(1800);
    // k8s: five in (120, 300].
    expect(p95['k8s']).toBeGreaterThan(120);
    expect(p95['k8s']).toBeLessThanOrEqual(300);

    const phases: Record<string, number> = Object.fromEntries((await prometheus.query(P95_PHASE)).map((s) => [s.metric['phase'], Number(s.value[1])]));
    expect(Object.keys(phases).sort()).toEqual(['connecting', 'provisioning', 'queued', 'starting']);
    for (const value of Object.values(phases)) expect(Number.isFinite(value) && value > 0).toBe(true);
    // Queueing is 1 % of each start: its P95 is far below the others'.
    expect(phases['queued']).toBeLessThan(phases['provisioning']!);

    const series = await prometheus.queryExemplars('agentconn_workspace_start_seconds_bucket');
    const named = series.flatMap((s) => s.exemplars.filter((e) => e.labels['build_id'] === slow.buildId).map((e) => [s.seriesLabels['le'], Number(e.value)]));
    expect(named).toEqual([['1800', expect.closeTo(1234.5, 5)]]);
  }, 90_000);
});
