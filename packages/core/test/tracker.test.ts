import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AgentConnectionTracker, firstConnectionView } from '../src/index.js';
import { createTestMetrics, type TestMetrics } from './helpers.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { samples } from '@agentconn/test-support/exposition-parser';

const HISTOGRAM = 'coderd_agents_first_connection_seconds';
const TIMEOUTS = 'coderd_agents_first_connection_timeouts_total';
const AWAITING = 'coderd_agents_awaiting_first_connection';
const OLDEST = 'coderd_agents_awaiting_first_connection_oldest_seconds';
const LABELS = 'template_name="docker",agent_name="main"';

let metrics: TestMetrics | undefined;
let tracker: AgentConnectionTracker | undefined;
beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-12-01T10:00:00.000Z') });
});
afterEach(async () => {
  tracker?.destroy();
  vi.useRealTimers();
  await metrics?.shutdown();
  metrics = undefined;
});

function setup(connectionTimeoutMs = 0) {
  metrics = createTestMetrics([firstConnectionView({ labels: ['template_name', 'agent_name'] })]);
  const logger = createMemoryLogger();
  tracker = new AgentConnectionTracker({
    meterProvider: metrics.meterProvider,
    logger,
    labels: ['template_name', 'agent_name'],
    connectionTimeoutMs,
    now: () => Date.now(),
  });
  return { metrics, tracker, logger };
}

const labels = { template_name: 'docker', agent_name: 'main', username: 'alice', workspace_name: 'ws-1' };

describe('AgentConnectionTracker (in-service, Coder #24355 style)', () => {
  it('exposes the timeouts counter as the Prometheus family coderd_agents_first_connection_timeouts_total', async () => {
    const { metrics, tracker } = setup(1000);
    tracker.created({ agentId: 'a1', labels });
    await vi.advanceTimersByTimeAsync(1001);
    const text = await metrics.text();
    expect(text).toContain(`# TYPE ${TIMEOUTS} counter\n`);
    expect(text).toMatch(new RegExp(`^# HELP ${TIMEOUTS} Agents whose wait`, 'm'));
    expect(text).toContain(`# TYPE ${AWAITING} gauge\n`);
    expect(text).toContain(`# TYPE ${OLDEST} gauge\n`);
  });

  it('created → connected observes the wait once and the awaiting gauges drop the label set', async () => {
    const { metrics, tracker } = setup(120_000);
    tracker.created({ agentId: 'a1', labels });
    await vi.advanceTimersByTimeAsync(30_000);
    let text = await metrics.text();
    expect(samples(text, AWAITING).get(`${AWAITING}{${LABELS}}`)).toBe(1);
    expect(samples(text, OLDEST).get(`${OLDEST}{${LABELS}}`)).toBe(30);

    expect(tracker.connected({ agentId: 'a1' })).toBe('observed');
    expect(tracker.connected({ agentId: 'a1' })).toBe('duplicate');
    await vi.advanceTimersByTimeAsync(200_000);
    text = await metrics.text();
    expect(samples(text, `${HISTOGRAM}_count`).get(`${HISTOGRAM}_count{${LABELS}}`)).toBe(1);
    expect(samples(text, `${HISTOGRAM}_sum`).get(`${HISTOGRAM}_sum{${LABELS}}`)).toBe(30);
    expect(samples(text, AWAITING).size).toBe(0);
    expect(samples(text, OLDEST).size).toBe(0);
    expect(samples(text, TIMEOUTS).get(`${TIMEOUTS}{${LABELS}}`)).toBeUndefined();
  });

  it('created → timeout counts once, the agent still awaits', async () => {
    const { metrics, tracker } = setup(1000);
    tracker.created({ agentId: 'a1', labels });
    tracker.created({ agentId: 'a1', labels }); // a repeat is ignored
    await vi.advanceTimersByTimeAsync(999);
    expect(samples(await metrics.text(), TIMEOUTS).get(`${TIMEOUTS}{${LABELS}}`)).toBeUndefined();
    await vi.advanceTimersByTimeAsync(10_000);
    const text = await metrics.text();
    expect(samples(text, TIMEOUTS).get(`${TIMEOUTS}{${LABELS}}`)).toBe(1);
    expect(samples(text, AWAITING).get(`${AWAITING}{${LABELS}}`)).toBe(1);
    expect(samples(text, OLDEST).get(`${OLDEST}{${LABELS}}`)).toBe(10.999);
  });

  it("an agent's own timeout wins over the default; 0 and no default never time out", async () => {
    const { metrics, tracker } = setup(0);
    tracker.created({ agentId: 'own', labels, connectionTimeoutMs: 5000 });
    tracker.created({ agentId: 'none', labels });
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(samples(await metrics.text(), TIMEOUTS).get(`${TIMEOUTS}{${LABELS}}`)).toBe(1);
  });

  it('connected after its timeout is observed once in the histogram and the timeout is never counted again', async () => {
    const { metrics, tracker } = setup(1000);
    tracker.created({ agentId: 'a1', labels });
    await vi.advanceTimersByTimeAsync(5000);
    expect(tracker.connected({ agentId: 'a1' })).toBe('observed');
    tracker.created({ agentId: 'a1', labels }); // already handled: no new wait
    await vi.advanceTimersByTimeAsync(60_000);
    expect(tracker.connected({ agentId: 'a1' })).toBe('duplicate');
    const text = await metrics.text();
    expect(samples(text, `${HISTOGRAM}_count`).get(`${HISTOGRAM}_count{${LABELS}}`)).toBe(1);
    expect(samples(text, `${HISTOGRAM}_sum`).get(`${HISTOGRAM}_sum{${LABELS}}`)).toBe(5);
    expect(samples(text, TIMEOUTS).get(`${TIMEOUTS}{${LABELS}}`)).toBe(1);
    expect(samples(text, AWAITING).size).toBe(0);
  });

  it('never throws into the host, keeps memory bounded and leaves no timer keeping the process alive', async () => {
    metrics = createTestMetrics();
    const logger = createMemoryLogger();
    tracker = new AgentConnectionTracker({ meterProvider: metrics.meterProvider, logger, maxAwaitingAgents: 2, connectionTimeoutMs: 1000 });
    expect(() => tracker!.created(null as never)).not.toThrow();
    expect(() => tracker!.created({ agentId: 'x', labels, createdAt: 'not a time' })).not.toThrow();
    expect(tracker.connected(undefined as never)).toBe('invalid');
    expect(tracker.connected({ agentId: 'never-created' })).toBe('unknown_agent');
    for (const id of ['a', 'b', 'c']) tracker.created({ agentId: id, labels });
    expect(tracker.awaitingAgents).toBe(2);
    expect(logger.records.some((r) => r.message.startsWith('too many agents waiting'))).toBe(true);
    // 'a' was forgotten: its timer is cleared, so only b and c time out.
    await vi.advanceTimersByTimeAsync(2000);
    // The default labels (Coder #24355's two).
    expect(samples(await metrics.text(), TIMEOUTS).get(`${TIMEOUTS}{${LABELS}}`)).toBe(2);
    expect(() => new AgentConnectionTracker({ connectionTimeoutMs: -1 })).toThrow(/connectionTimeoutMs/);
  });

  it('timers are unref()ed', () => {
    vi.useRealTimers();
    const { tracker } = setup(60_000);
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    tracker.created({ agentId: 'a1', labels });
    // An unref()ed timer is not among the resources that keep the event loop alive.
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(before);
  });
});
