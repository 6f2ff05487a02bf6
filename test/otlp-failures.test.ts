import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCoderData, migrateToLatest } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { startOtlpReceiver } from '../examples/otlp/src/receiver.js';
import { spawnExporter } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';

function failures(text: string): number {
  const match = /^agentconn_otlp_exports_total\{[^}]*outcome="failure"[^}]*\} (\d+)/m.exec(text);
  return match === null ? 0 : Number(match[1]);
}

describe('OTLP that tells', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('agentconn_otlp');
    const db = createPostgresDb(database.url);
    await migrateToLatest(db);
    await generateCoderData(db, { seed: 9, users: 2, templates: 1, workspaces: 5, buildsPerWorkspace: 1, neverConnectedRatio: 0, negativeRatio: 0, deletedWorkspaceRatio: 0, deletedAgentRatio: 0 });
    await db.destroy();
  }, 60_000);
  afterAll(async () => {
    await database?.drop();
  });

  // Before: with --otlp-endpoint at a closed port the exporter said nothing at any level, counted nothing, and
  // took 7.5–8.7 s to stop.
  it('a closed port: one warning for the outage, the failure counter rises, SIGTERM exits 0 within 5 s', async () => {
    const port = await freePort();
    const otlpPort = await freePort();
    const exporter = spawnExporter([
      '--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--interval', '1s',
      '--otlp-endpoint', `http://127.0.0.1:${otlpPort}/v1/metrics`,
    ]);
    try {
      const url = await exporter.started;
      const warning = await exporter.waitForLog((l) => l.level === 'warn' && l.msg === 'OTLP export failed', 15_000);
      expect(String(warning['endpoint'])).toBe(`http://127.0.0.1:${otlpPort}/v1/metrics`);
      expect(String(warning['error'])).toMatch(/ECONNREFUSED|connect|fetch failed/i);
      const first = failures(await (await fetch(url)).text());
      expect(first).toBeGreaterThanOrEqual(1);
      // Each export to the closed port ends on its own timeout and retries, so when the next failure is counted
      // depends on the machine's load: poll for it instead of sleeping a fixed 3.5 s (once too short in CI).
      let later = first;
      for (const deadline = Date.now() + 15_000; later <= first && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 500));
        later = failures(await (await fetch(url)).text());
      }
      expect(later).toBeGreaterThan(first);
      expect(exporter.logs.filter((l) => l.msg === 'OTLP export failed')).toHaveLength(1);
      const stopping = Date.now();
      expect(await exporter.stop('SIGTERM')).toBe(0);
      expect(Date.now() - stopping).toBeLessThan(5000);
    } finally {
      exporter.child.kill('SIGKILL');
    }
  }, 60_000);

  it('when a receiver starts: one recovery line, and the histogram arrives', async () => {
    const port = await freePort();
    const otlpPort = await freePort();
    const exporter = spawnExporter([
      '--database-url', database.url, '--listen', `127.0.0.1:${port}`, '--interval', '1s', '--backfill', 'all',
      '--otlp-endpoint', `http://127.0.0.1:${otlpPort}/v1/metrics`,
    ]);
    let receiver: Awaited<ReturnType<typeof startOtlpReceiver>> | undefined;
    try {
      const url = await exporter.started;
      await exporter.waitForLog((l) => l.msg === 'OTLP export failed', 15_000);
      receiver = await startOtlpReceiver(otlpPort);
      const recovered = await exporter.waitForLog((l) => l.msg === 'OTLP export recovered', 15_000);
      expect(Number(recovered['failed_exports'])).toBeGreaterThanOrEqual(1);
      const metric = await receiver.waitFor(
        (m) => m.name === 'coderd_agents_first_connection_seconds' && m.histogramPoints.reduce((n, p) => n + p.count, 0) === 5,
        15_000,
      );
      expect(metric.histogramPoints.length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 2500));
      expect(exporter.logs.filter((l) => l.msg === 'OTLP export recovered')).toHaveLength(1);
      expect(exporter.logs.filter((l) => l.msg === 'OTLP export failed')).toHaveLength(1);
      expect(await (await fetch(url)).text()).toMatch(/^agentconn_otlp_exports_total\{[^}]*outcome="success"[^}]*\} [1-9]/m);
      expect(await exporter.stop('SIGTERM')).toBe(0);
    } finally {
      await receiver?.close();
      exporter.child.kill('SIGKILL');
    }
  }, 60_000);
});
