/**
 * One cardinality limit for every instrument with label sets, through the poller on a real database: run by
 * cardinality-pglite.test.ts and cardinality-postgres.test.ts with their own `open`. Four labels, one label set
 * per workspace, more label sets than the SDK's default limit of 2000 and than `--cardinality-limit`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { sql } from 'kysely';
import {
  agentconnViews,
  AWAITING_METRICS,
  AwaitingAgentsRecorder,
  FIRST_CONNECTION_METRIC_NAME,
  FirstConnectionPoller,
  FirstConnectionRecorder,
  LABEL_KEYS,
  observableGaugesAsDelta,
} from '@agentconn/core';
import { createCoderAgentSource } from '../src/index.js';
import { connectDelays, generateCoderData, type GeneratedAgent } from '../src/testing/index.js';
import type { OpenTestDatabase, TestDatabase } from './helpers/databases.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { parseSamples, type NumericSample } from '@agentconn/test-support/exposition-parser';

/** Above the SDK's default (2000), below the label sets of each instrument. */
const LIMIT = 2_100;
const WORKSPACES = 4_800;
const TIMEOUTS = `${AWAITING_METRICS.timeouts.name}_total`;
const AWAITING = AWAITING_METRICS.awaiting.name;
const OLDEST = AWAITING_METRICS.oldestWait.name;
const OVERFLOW = 'agentconn_label_set_overflow_samples_total';

const ofFamily = (all: readonly NumericSample[], name: string) => all.filter((s) => s.name === name);
const isOverflow = (s: NumericSample) => s.labels['otel_metric_overflow'] === 'true';
const total = (list: readonly NumericSample[]) => list.reduce((sum, s) => sum + s.value, 0);

export function defineCardinalityContract(name: string, open: OpenTestDatabase): void {
  describe(`cardinality limit of every instrument: ${name}`, () => {
    let database: TestDatabase;
    let counting: GeneratedAgent[];

    beforeAll(async () => {
      database = await open();
      const data = await generateCoderData(database.db, {
        workspaces: WORKSPACES,
        users: 50,
        templates: 3,
        buildsPerWorkspace: 1,
        deletedWorkspaceRatio: 0,
        deletedAgentRatio: 0,
        negativeRatio: 0,
        neverConnectedRatio: 0.5,
        // Within the one-minute timeout below: only the agents that never connected time out.
        connectDelay: connectDelays.fixed(5),
        spanSeconds: 3_600,
        baseTime: new Date(Date.now() - 3_600_000),
      });
      counting = data.agents.filter((a) => a.latestBuild && !a.deleted && !a.workspaceDeleted);
    }, 120_000);
    afterAll(async () => {
      await database?.destroy();
    });

    it('each instrument keeps limit - 1 label sets exactly and folds the rest into one overflow series, logged and counted per instrument; once all connected, no awaiting series', async () => {
      const connected = counting.filter((a) => a.firstConnectedAtMicros !== null).length;
      const waiting = counting.length - connected;
      expect(Math.min(connected, waiting)).toBeGreaterThan(LIMIT);

      const exporter = observableGaugesAsDelta(new PrometheusExporter({ preventServerStart: true }));
      const meterProvider = new MeterProvider({ readers: [exporter], views: agentconnViews({ labels: [...LABEL_KEYS], cardinalityLimit: LIMIT }) });
      const logger = createMemoryLogger();
      const options = { meterProvider, logger, labels: [...LABEL_KEYS], cardinalityLimit: LIMIT };
      const recorder = new FirstConnectionRecorder(options);
      const awaiting = new AwaitingAgentsRecorder(options);
      // Agents that waited longer than a minute timed out (Coder's rule), so every waiting agent has a timeout.
      const source = createCoderAgentSource(database.db, { fallbackConnectionTimeoutSeconds: 60 });
      const poller = new FirstConnectionPoller({ source, recorder, awaiting, meterProvider, logger, backfill: 'all' });
      const scrape = async () => {
        const { resourceMetrics, errors } = await exporter.collect();
        expect(errors).toEqual([]);
        return parseSamples(new PrometheusSerializer().serialize(resourceMetrics));
      };
      try {
        const first = await poller.tick();
        expect(first.outcome).toBe('success');
        expect(first.observed).toBe(connected);
        expect(first.timeouts).toBe(waiting);
        let all = await scrape();

        const expected: Array<[family: string, instrument: string, sum: number]> = [
          [`${FIRST_CONNECTION_METRIC_NAME}_count`, FIRST_CONNECTION_METRIC_NAME, connected],
          [TIMEOUTS, AWAITING_METRICS.timeouts.name, waiting],
          [AWAITING, AWAITING, waiting],
        ];
        for (const [family, instrument, sum] of expected) {
          const series = ofFamily(all, family);
          expect(series, family).toHaveLength(LIMIT);
          expect(series.filter(isOverflow), family).toHaveLength(1);
          expect(total(series), family).toBe(sum);
          const folded = sum - (LIMIT - 1);
          expect(series.find(isOverflow)?.value, family).toBe(folded);
          expect(ofFamily(all, OVERFLOW).find((s) => s.labels['instrument'] === instrument)?.value, instrument).toBe(folded);
        }
        expect(ofFamily(all, OLDEST)).toHaveLength(LIMIT);
        expect(ofFamily(all, OVERFLOW).find((s) => s.labels['instrument'] === OLDEST)?.value).toBe(waiting - (LIMIT - 1));
        const warnings = logger.records.filter((r) => r.message.startsWith('cardinality limit'));
        expect(warnings.map((r) => r.fields['metric']).sort()).toEqual(
          [FIRST_CONNECTION_METRIC_NAME, AWAITING_METRICS.timeouts.name, AWAITING, OLDEST].sort(),
        );

        // Every waiting agent connects: the awaiting gauges report no label set at the next collection.
        await sql`UPDATE workspace_agents SET first_connected_at = now() WHERE first_connected_at IS NULL`.execute(database.db);
        const second = await poller.tick();
        expect(second.outcome).toBe('success');
        expect(second.observed).toBe(waiting);
        all = await scrape();
        expect(ofFamily(all, AWAITING)).toHaveLength(0);
        expect(ofFamily(all, OLDEST)).toHaveLength(0);
        expect(total(ofFamily(all, `${FIRST_CONNECTION_METRIC_NAME}_count`))).toBe(connected + waiting);
        expect(ofFamily(all, `${FIRST_CONNECTION_METRIC_NAME}_count`)).toHaveLength(LIMIT);
        expect(logger.records.filter((r) => r.message.startsWith('cardinality limit'))).toHaveLength(4);
      } finally {
        await poller.stop();
        await meterProvider.shutdown();
      }
    }, 120_000);
  });
}
