import { PGlite } from '@electric-sql/pglite';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCommand, startExporter, type RunningExporter } from '@agentconn/exporter';
import { type CoderDatabase } from '@agentconn/kysely';
import { generateCoderData, migrateToLatest } from '@agentconn/kysely/testing';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import type { Kysely } from 'kysely';
import { startOtlpReceiver, type OtlpReceiver } from '../src/receiver.js';

const NAME = 'coderd_agents_first_connection_seconds';
let receiver: OtlpReceiver | undefined;
let exporter: RunningExporter | undefined;
let db: Kysely<CoderDatabase> | undefined;
afterEach(async () => {
  await exporter?.stop();
  await db?.destroy();
  await receiver?.close();
});

describe('the exporter pushing OTLP/HTTP', () => {
  it('delivers the histogram with its name, unit, description, buckets, attributes and every sample', async () => {
    receiver = await startOtlpReceiver();
    db = createPgliteDb(new PGlite());
    await migrateToLatest(db);
    const generated = await generateCoderData(db, { seed: 3, workspaces: 40, templates: 2, negativeRatio: 0, spanSeconds: 3600 });
    const expected = generated.agents.filter(
      (a) => a.latestBuild && !a.workspaceDeleted && !a.deleted && a.firstConnectedAtMicros !== null,
    );
    expect(expected.length).toBeGreaterThan(10);

    const command = parseCommand(
      ['--otlp-endpoint', receiver.url, '--interval', '300ms',
        '--backfill', 'all', '--leader-election', 'false', '--listen', '127.0.0.1:0', '--log-level', 'error',
        // Coder PR #24179's four labels, so every workspace arrives as an attribute (the default is Coder #24355's two).
        '--labels', 'template_name,agent_name,username,workspace_name'],
      {},
      { db },
    );
    if (command.kind !== 'run') throw new Error('unexpected command');
    exporter = await startExporter({ config: command.config });

    const metric = await receiver.waitFor(
      (m) => m.name === NAME && m.histogramPoints.reduce((n, p) => n + p.count, 0) === expected.length,
    );
    expect(metric.scope).toBe('@agentconn/core');
    expect(metric.unit).toBe('s');
    expect(metric.description).toBe('Duration from agent creation to first connection to the control plane in seconds.');
    expect(metric.temporality).toBe(2); // cumulative
    for (const point of metric.histogramPoints) {
      expect(point.explicitBounds).toEqual([1, 10, 30, 60, 120, 300, 600, 1800, 3600]);
      expect(point.bucketCounts).toHaveLength(10);
      expect(Object.keys(point.attributes)).toEqual(['template_name', 'agent_name', 'username', 'workspace_name']);
    }
    const expectedSum = expected.reduce((s, a) => s + (a.firstConnectedAtMicros! - a.createdAtMicros) / 1e6, 0);
    const sum = metric.histogramPoints.reduce((s, p) => s + p.sum, 0);
    expect(sum).toBeCloseTo(expectedSum, 3);
    const workspaces = new Set(metric.histogramPoints.map((p) => p.attributes['workspace_name']));
    expect(workspaces).toEqual(new Set(expected.map((a) => a.workspaceName)));
  });
});
