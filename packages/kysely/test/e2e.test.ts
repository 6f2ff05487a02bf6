/**
 * End to end: generator → database → createCoderAgentSource → FirstConnectionPoller/Recorder →
 * MeterProvider with the core's View → the real PrometheusExporter over HTTP → text. The expected
 * histogram per template is computed here from the generator's report, never through the source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_DESCRIPTION,
  FIRST_CONNECTION_METRIC_NAME,
  FirstConnectionPoller,
} from '@agentconn/core';
import { createCoderAgentSource } from '../src/index.js';
import { connectAgents, connectDelays, generateCoderData, type GeneratedCoderData } from '../src/testing/index.js';
import { openPgliteTestDatabase, openPostgresTestDatabase, type OpenTestDatabase, type TestDatabase } from './helpers/databases.js';
import { histogramBy, parseSamples } from '@agentconn/test-support/exposition-parser';
import { PrometheusHarness } from './helpers/prometheus.js';

interface Expected {
  count: number;
  sum: number;
  /** Cumulative, by `le` as the exposition prints it. */
  buckets: Map<string, number>;
}

const BOUNDS = [...FIRST_CONNECTION_BUCKET_BOUNDARIES.map(String), '+Inf'];

/** Adds one duration (in µs, exact) to the expected histogram of its template. */
function addSample(expected: Map<string, Expected>, template: string, micros: number): void {
  let entry = expected.get(template);
  if (entry === undefined) {
    entry = { count: 0, sum: 0, buckets: new Map(BOUNDS.map((le) => [le, 0])) };
    expected.set(template, entry);
  }
  entry.count++;
  entry.sum += micros / 1e6;
  for (const le of BOUNDS) {
    // Bucket bounds are inclusive upper bounds; compare in whole µs so 60.000001 s is not <= 60.
    if (le === '+Inf' || micros <= Number(le) * 1_000_000) entry.buckets.set(le, entry.buckets.get(le)! + 1);
  }
}

/** Coder PR #24179's rule applied to what the generator says it created. */
function expectedFromReport(data: GeneratedCoderData): { histograms: Map<string, Expected>; negative: number; counted: number } {
  const histograms = new Map<string, Expected>();
  let negative = 0;
  let counted = 0;
  for (const agent of data.agents) {
    if (!agent.latestBuild || agent.workspaceDeleted || agent.deleted || agent.firstConnectedAtMicros === null) continue;
    const micros = agent.firstConnectedAtMicros - agent.createdAtMicros;
    if (micros < 0) {
      negative++;
      continue;
    }
    counted++;
    addSample(histograms, agent.templateName, micros);
  }
  return { histograms, negative, counted };
}

function expectHistograms(text: string, expected: Map<string, Expected>): void {
  const actual = histogramBy(parseSamples(text), FIRST_CONNECTION_METRIC_NAME, 'template_name');
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [template, want] of expected) {
    const got = actual.get(template)!;
    expect({ template, count: got.count, buckets: Object.fromEntries(got.buckets) }).toEqual({
      template,
      count: want.count,
      buckets: Object.fromEntries(want.buckets),
    });
    // Float sums in a different order: equal up to rounding of the last bits.
    expect(Math.abs(got.sum - want.sum)).toBeLessThanOrEqual(1e-9 * Math.max(1, want.sum));
  }
}

function defineEndToEnd(name: string, open: OpenTestDatabase, workspaces: number): void {
  describe(`end to end on ${name}: generator → source → poller → Prometheus text`, () => {
    let database: TestDatabase;
    let data: GeneratedCoderData;
    const harness = new PrometheusHarness();
    let poller: FirstConnectionPoller;

    beforeAll(async () => {
      database = await open();
      data = await generateCoderData(database.db, {
        seed: 2024,
        users: 40,
        templates: 4,
        workspaces,
        agentsPerWorkspace: 2,
        buildsPerWorkspace: 2,
        neverConnectedRatio: 0.1,
        negativeRatio: 0.02,
        // Spread over every bucket, +Inf included.
        connectDelay: connectDelays.logNormal(45, 1.6),
        // Well before now, so the incremental query's window never reaches these rows again.
        baseTime: new Date(Date.now() - 7 * 86_400_000),
        specialLabels: true,
      });
      await harness.start();
      poller = new FirstConnectionPoller({
        source: createCoderAgentSource(database.db),
        recorder: harness.recorder,
        meterProvider: harness.meterProvider,
        logger: harness.logger,
        backfill: 'all',
      });
    });
    afterAll(async () => {
      await poller?.stop();
      await harness.shutdown();
      await database?.destroy();
    });

    const expected = new Map<string, Expected>();

    it('observes every agent that counts, once, into the right buckets per template', async () => {
      const fromReport = expectedFromReport(data);
      for (const [template, entry] of fromReport.histograms) expected.set(template, entry);
      expect(fromReport.counted).toBeGreaterThan(workspaces); // most agents of the latest builds count
      expect(fromReport.negative).toBeGreaterThan(0);

      const tick = await poller.tick();
      expect(tick.outcome).toBe('success');
      expect(tick.observed).toBe(fromReport.counted);
      expect(tick.dropped).toBe(fromReport.negative);
      expect(tick.rowsRead).toBe(fromReport.counted + fromReport.negative);

      const text = await harness.scrape();
      expect(text).toContain(`# HELP ${FIRST_CONNECTION_METRIC_NAME} ${FIRST_CONNECTION_METRIC_DESCRIPTION}`);
      expect(text).toContain(`# TYPE ${FIRST_CONNECTION_METRIC_NAME} histogram`);
      expectHistograms(text, expected);
      // Some samples beyond the last bound, so +Inf is exercised.
      expect([...expected.values()].some((e) => e.buckets.get('+Inf')! > e.buckets.get('3600')!)).toBe(true);

      const dropped = parseSamples(text).filter((s) => s.name === 'agentconn_samples_dropped_total');
      expect(new Map(dropped.map((s) => [s.labels.reason, s.value]))).toEqual(
        new Map([
          ['negative_duration', fromReport.negative],
          ['invalid', 0],
        ]),
      );
      expect(harness.logger.records.filter((l) => l.message.startsWith('negative agent first connection duration'))).toHaveLength(
        fromReport.negative,
      );
    });

    it('then observes only the trickle of new first connections, once', async () => {
      const connected = await connectAgents(database.db, { count: 25 });
      expect(connected).toHaveLength(25);
      for (const agent of connected) addSample(expected, agent.templateName, agent.firstConnectedAtMicros - agent.createdAtMicros);

      const tick = await poller.tick();
      expect(tick.outcome).toBe('success');
      expect(tick.rowsRead).toBe(25);
      expect(tick.observed).toBe(25);

      const again = await poller.tick();
      expect(again.outcome).toBe('success');
      expect(again.observed).toBe(0);

      expectHistograms(await harness.scrape(), expected);
    });
  });
}

defineEndToEnd('the PostgreSQL server', openPostgresTestDatabase, 3_000);
defineEndToEnd('PGlite', openPgliteTestDatabase, 500);
