import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  AgentConnectionTracker,
  agentconnViews,
  AWAITING_METRICS,
  FIRST_CONNECTION_METRIC_NAME,
  LABEL_KEYS,
  LabelSetLimit,
  labelSetLimitView,
} from '../src/index.js';
import { createTestMetrics, type TestMetrics } from './helpers.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { parseSamples, type NumericSample } from '@agentconn/test-support/exposition-parser';

const HISTOGRAM_COUNT = `${FIRST_CONNECTION_METRIC_NAME}_count`;
const TIMEOUTS = `${AWAITING_METRICS.timeouts.name}_total`;
const AWAITING = AWAITING_METRICS.awaiting.name;
const OLDEST = AWAITING_METRICS.oldestWait.name;
const OVERFLOW = 'agentconn_label_set_overflow_samples_total';
/** Above the SDK's default of 2000 label sets per instrument, so an instrument left at the default fails. */
const LIMIT = 2_500;
const SETS = 2_700;

let metrics: TestMetrics | undefined;
let tracker: AgentConnectionTracker | undefined;
beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-12-01T10:00:00.000Z') });
});
afterEach(async () => {
  tracker?.destroy();
  tracker = undefined;
  vi.useRealTimers();
  await metrics?.shutdown();
  metrics = undefined;
});

function series(all: readonly NumericSample[], name: string): NumericSample[] {
  return all.filter((s) => s.name === name);
}
const total = (list: readonly NumericSample[]) => list.reduce((sum, s) => sum + s.value, 0);
const isOverflow = (s: NumericSample) => s.labels['otel_metric_overflow'] === 'true';
const overflowOf = (all: readonly NumericSample[], instrument: string) =>
  series(all, OVERFLOW).find((s) => s.labels['instrument'] === instrument)?.value;

/** Four labels, one label set per workspace: `SETS` agents, each of its own workspace. */
function labelsOf(i: number) {
  return { template_name: `t${i % 7}`, agent_name: 'main', username: `user-${i}`, workspace_name: `ws-${i}` };
}

function setup(options: { cumulativeGauges?: boolean; cardinalityLimit?: number } = {}) {
  const cardinalityLimit = options.cardinalityLimit ?? LIMIT;
  metrics = createTestMetrics(agentconnViews({ labels: [...LABEL_KEYS], cardinalityLimit }), options);
  const logger = createMemoryLogger();
  tracker = new AgentConnectionTracker({
    meterProvider: metrics.meterProvider,
    logger,
    labels: [...LABEL_KEYS],
    cardinalityLimit,
    connectionTimeoutMs: 60_000,
    maxAwaitingAgents: 10 * SETS,
    now: () => Date.now(),
  });
  return { metrics, tracker, logger };
}

describe('one cardinality limit for every instrument with label sets', () => {
  it('each instrument keeps limit - 1 label sets exactly, folds the rest into one overflow series with exact sums, logs and counts per instrument', async () => {
    const { metrics, tracker, logger } = setup();
    for (let i = 0; i < SETS; i++) tracker.created({ agentId: `wait-${i}`, labels: labelsOf(i) });
    // Past every agent's timeout: each label set has one timeout and one waiting agent.
    await vi.advanceTimersByTimeAsync(90_000);
    for (let i = 0; i < SETS; i++) {
      expect(tracker.connected({ agentId: `done-${i}`, createdAt: new Date(Date.now() - 5_000), labels: labelsOf(i) })).toBe('observed');
    }
    const all = parseSamples(await metrics.text());
    const folded = SETS - (LIMIT - 1);
    for (const name of [HISTOGRAM_COUNT, TIMEOUTS, AWAITING]) {
      const list = series(all, name);
      expect(list, name).toHaveLength(LIMIT);
      expect(list.filter(isOverflow), name).toHaveLength(1);
      expect(list.find(isOverflow)?.value, name).toBe(folded);
      expect(total(list), name).toBe(SETS);
      expect(list.filter((s) => !isOverflow(s)).every((s) => s.value === 1), name).toBe(true);
    }
    const oldest = series(all, OLDEST);
    expect(oldest).toHaveLength(LIMIT);
    expect(oldest.every((s) => s.value === 90)).toBe(true);

    // Counted per instrument: a histogram or counter sample each, a folded label set per collection for a gauge.
    expect(overflowOf(all, FIRST_CONNECTION_METRIC_NAME)).toBe(folded);
    expect(overflowOf(all, AWAITING_METRICS.timeouts.name)).toBe(folded);
    expect(overflowOf(all, AWAITING)).toBe(folded);
    expect(overflowOf(all, OLDEST)).toBe(folded);
    const warnings = logger.records.filter((r) => r.message.startsWith('cardinality limit'));
    expect(warnings.map((r) => r.fields['metric']).sort()).toEqual(
      [FIRST_CONNECTION_METRIC_NAME, AWAITING_METRICS.timeouts.name, AWAITING, OLDEST].sort(),
    );
    expect(warnings.every((r) => r.fields['cardinality_limit'] === LIMIT)).toBe(true);

    await metrics.text();
    expect(logger.records.filter((r) => r.message.startsWith('cardinality limit'))).toHaveLength(4);
  });

  it('the overflow series of the gauges is the sum of the folded counts and the longest of their waits', async () => {
    const { metrics, tracker } = setup({ cardinalityLimit: 3 });
    tracker.created({ agentId: 'a', labels: labelsOf(0) });
    await vi.advanceTimersByTimeAsync(10_000);
    tracker.created({ agentId: 'b', labels: labelsOf(1) });
    tracker.created({ agentId: 'c1', labels: labelsOf(2) });
    await vi.advanceTimersByTimeAsync(5_000);
    tracker.created({ agentId: 'c2', labels: labelsOf(2) });
    tracker.created({ agentId: 'd', labels: labelsOf(3) });
    const all = parseSamples(await metrics.text());
    const awaiting = series(all, AWAITING);
    expect(awaiting).toHaveLength(3);
    expect(awaiting.find(isOverflow)?.value).toBe(3);
    expect(series(all, OLDEST).find(isOverflow)?.value).toBe(5);
    expect(series(all, OLDEST).find((s) => s.labels['workspace_name'] === 'ws-0')?.value).toBe(15);
    expect(overflowOf(all, AWAITING)).toBe(2);
  });

  it('rejects a cardinality limit below 2 with an error naming it', () => {
    expect(() => labelSetLimitView({ instrumentName: 'x', instrumentType: 'COUNTER' as never, attributeKeys: [], cardinalityLimit: 1 })).toThrow(
      /cardinalityLimit/,
    );
    const meter = new MeterProvider().getMeter('t');
    expect(() => new LabelSetLimit({ instrument: 'x', cardinalityLimit: 1.5, meter, logger: createMemoryLogger() })).toThrow(/cardinalityLimit/);
  });
});

describe('the awaiting gauges report only the label sets that have waiting agents', () => {
  it('a label set whose last waiting agent connected or left is gone at the next collection; the sum stays exact', async () => {
    const { metrics, tracker } = setup();
    for (let i = 0; i < 3; i++) tracker.created({ agentId: `a${i}`, labels: labelsOf(i) });
    tracker.created({ agentId: 'a0-bis', labels: labelsOf(0) });
    let all = parseSamples(await metrics.text());
    expect(series(all, AWAITING)).toHaveLength(3);
    expect(total(series(all, AWAITING))).toBe(4);

    tracker.connected({ agentId: 'a1' });
    tracker.forget('a2');
    tracker.connected({ agentId: 'a0' });
    all = parseSamples(await metrics.text());
    expect(series(all, AWAITING).map((s) => [s.labels['workspace_name'], s.value])).toEqual([['ws-0', 1]]);
    expect(series(all, OLDEST).map((s) => s.labels['workspace_name'])).toEqual(['ws-0']);

    tracker.connected({ agentId: 'a0-bis' });
    const text = await metrics.text();
    expect(series(parseSamples(text), AWAITING)).toHaveLength(0);
    expect(series(parseSamples(text), OLDEST)).toHaveLength(0);
    expect(text).not.toContain(`${AWAITING}{`);
  });

  it('with a reader that keeps observable gauges cumulative the SDK reports a label set no longer observed at its last value', async () => {
    // The OpenTelemetry JS SDK's behaviour (open-telemetry/opentelemetry-js#4096), why readers take gauges as deltas.
    const { metrics, tracker } = setup({ cumulativeGauges: true });
    tracker.created({ agentId: 'a', labels: labelsOf(0) });
    expect(total(series(parseSamples(await metrics.text()), AWAITING))).toBe(1);
    tracker.connected({ agentId: 'a' });
    expect(total(series(parseSamples(await metrics.text()), AWAITING))).toBe(1);
  });

  it('a label set keeps its slot after it empties: the limit counts label sets over the life of the process', async () => {
    const { metrics, tracker } = setup({ cardinalityLimit: 3 });
    tracker.created({ agentId: 'a', labels: labelsOf(0) });
    tracker.created({ agentId: 'b', labels: labelsOf(1) });
    await metrics.text();
    tracker.connected({ agentId: 'a' });
    tracker.connected({ agentId: 'b' });
    tracker.created({ agentId: 'c', labels: labelsOf(2) });
    tracker.created({ agentId: 'a2', labels: labelsOf(0) });
    const awaiting = series(parseSamples(await metrics.text()), AWAITING);
    expect(awaiting.map((s) => (isOverflow(s) ? 'overflow' : s.labels['workspace_name'])).sort()).toEqual(['overflow', 'ws-0']);
    expect(total(awaiting)).toBe(2);
  });
});
