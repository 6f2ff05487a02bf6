import { afterEach, describe, expect, it } from 'vitest';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  MAX_EXCLUDED_AGENT_IDS,
  firstConnectionView,
  type AgentBatch,
  type AgentFirstConnection,
  type AgentQuery,
  type FirstConnectionSource,
  type Takeover,
} from '../src/index.js';
import { samples } from '@agentconn/test-support/exposition-parser';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { agent, createTestMetrics, type TestMetrics } from './helpers.js';

const NAME = 'coderd_agents_first_connection_seconds';

/** A source over an in-memory agent table, honouring connectedSince like a database would. */
class FakeSource implements FirstConnectionSource {
  agents: AgentFirstConnection[] = [];
  queries: AgentQuery[] = [];
  failWith: Error | undefined;
  delayMs = 0;
  inFlight = 0;
  maxInFlight = 0;
  clockMs: number | undefined;

  async listAgents(query: AgentQuery): Promise<AgentBatch> {
    this.queries.push(query);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, this.delayMs);
          query.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(query.signal.reason as Error);
          });
        });
      }
      if (this.failWith) throw this.failWith;
      const since = query.connectedSince?.getTime();
      const excluded = new Set(query.excludeAgentIds ?? []);
      const agents = this.agents.filter(
        (a) =>
          a.firstConnectedAt !== null &&
          (since === undefined || new Date(a.firstConnectedAt).getTime() >= since) &&
          !excluded.has(a.agentId),
      );
      return this.clockMs === undefined ? { agents } : { agents, sourceTime: new Date(this.clockMs) };
    } finally {
      this.inFlight--;
    }
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let metrics: TestMetrics | undefined;
afterEach(async () => {
  await metrics?.shutdown();
  metrics = undefined;
});

function setup(options: Partial<ConstructorParameters<typeof FirstConnectionPoller>[0]> = {}) {
  metrics = createTestMetrics([firstConnectionView()]);
  const logger = createMemoryLogger();
  const source = new FakeSource();
  const recorder = new FirstConnectionRecorder({ meterProvider: metrics.meterProvider, logger });
  const poller = new FirstConnectionPoller({
    source,
    recorder,
    logger,
    meterProvider: metrics.meterProvider,
    backfill: 'all',
    ...options,
  });
  return { metrics, logger, source, recorder, poller };
}

async function totalCount(m: TestMetrics): Promise<number> {
  const s = samples(await m.text(), `${NAME}_count`);
  return [...s.values()].reduce((a, b) => a + b, 0);
}

describe.each(['full-scan', 'incremental'] as const)('poller in %s mode', (mode) => {
  it('observes each agent once across many ticks, including one that connects later', async () => {
    let now = Date.parse('2026-11-25T10:10:00Z');
    const { metrics, source, poller } = setup({ mode, now: () => now });
    const a = agent({ firstConnectedAt: '2026-11-25T10:00:45Z' });
    const later = agent({ firstConnectedAt: null });
    source.agents = [a, later];
    for (let i = 0; i < 5; i++) {
      const result = await poller.tick();
      expect(result.outcome).toBe('success');
      now += 60_000;
    }
    expect(await totalCount(metrics)).toBe(1);
    source.agents = [a, { ...later, firstConnectedAt: new Date(now - 1000) }];
    for (let i = 0; i < 5; i++) {
      await poller.tick();
      now += 60_000;
    }
    expect(await totalCount(metrics)).toBe(2);
  });

  it('a negative duration gives no sample and exactly one warning over 5 ticks', async () => {
    const { metrics, source, poller, logger } = setup({ mode });
    source.agents = [agent({ createdAt: new Date(Date.now() + 2000), firstConnectedAt: new Date(Date.now() - 1000) })];
    for (let i = 0; i < 5; i++) expect((await poller.tick()).outcome).toBe('success');
    expect(await totalCount(metrics)).toBe(0);
    expect(logger.records.filter((r) => r.message.startsWith('negative agent first connection duration'))).toHaveLength(1);
  });

  it('a failing source is logged once per outage, counted, and the next tick retries without loss', async () => {
    const { metrics, source, poller, logger } = setup({ mode });
    source.agents = [agent({ firstConnectedAt: new Date(Date.now() - 5000), createdAt: new Date(Date.now() - 65_000) })];
    source.failWith = new Error('connect ECONNREFUSED 127.0.0.1:1');
    for (let i = 0; i < 3; i++) {
      const result = await poller.tick();
      expect(result.outcome).toBe('error');
      expect(result.error?.message).toContain('ECONNREFUSED');
    }
    const errors = logger.records.filter((r) => r.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.fields).toMatchObject({ error: 'connect ECONNREFUSED 127.0.0.1:1' });
    source.failWith = undefined;
    expect((await poller.tick()).outcome).toBe('success');
    expect(logger.records.filter((r) => r.message === 'agent source recovered')).toHaveLength(1);
    const text = await metrics.text();
    expect(samples(text, 'agentconn_polls_total').get('agentconn_polls_total{outcome="error"}')).toBe(3);
    expect(samples(text, 'agentconn_polls_total').get('agentconn_polls_total{outcome="success"}')).toBe(1);
    expect(await totalCount(metrics)).toBe(1);
    // A second outage logs again.
    source.failWith = new Error('boom');
    await poller.tick();
    expect(logger.records.filter((r) => r.level === 'error')).toHaveLength(2);
  });
});

describe('poller scheduling', () => {
  it('never overlaps ticks: a slow source and frequent timers still see one query at a time', async () => {
    const { source, poller } = setup({ intervalMs: 5, timeoutMs: 1000 });
    source.delayMs = 30;
    const manual = [poller.tick(), poller.tick(), poller.tick()];
    expect(new Set(manual).size).toBe(1);
    poller.start();
    await new Promise((r) => setTimeout(r, 200));
    await poller.stop();
    expect(source.maxInFlight).toBe(1);
    expect(source.queries.length).toBeGreaterThanOrEqual(3);
  });

  it('retries a failing source with backoff, then returns to the interval once it recovers', async () => {
    const { source, poller } = setup({ intervalMs: 60_000, retryBaseMs: 10 });
    source.failWith = new Error('down');
    const started = Date.now();
    poller.start();
    // Retries at about 0, 10, 30, 70 ms: far sooner than the 60 s interval.
    await waitFor(() => source.queries.length >= 4, 5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    source.failWith = undefined;
    const failedQueries = source.queries.length;
    await waitFor(() => source.queries.length === failedQueries + 1, 5_000);
    // Recovered: the next tick is a whole interval away.
    await new Promise((r) => setTimeout(r, 300));
    expect(source.queries.length).toBe(failedQueries + 1);
    await poller.stop();
  });

  it('stop() aborts a tick in flight and settles', async () => {
    const { source, poller } = setup({ intervalMs: 60_000, timeoutMs: 60_000 });
    source.delayMs = 10_000;
    poller.start();
    await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    await poller.stop();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(source.queries[0]?.signal.aborted).toBe(true);
  });

  it('a stop during a poll is not an error: no error line, no error count', async () => {
    const { source, poller, logger, metrics } = setup({ intervalMs: 60_000, timeoutMs: 60_000 });
    source.delayMs = 10_000;
    poller.start();
    await waitFor(() => source.queries.length === 1, 1000);
    await poller.stop();
    expect(logger.records.filter((r) => r.level === 'error' || r.level === 'warn')).toEqual([]);
    expect(samples(await metrics.text(), 'agentconn_polls_total').get('agentconn_polls_total{outcome="error"}')).toBe(0);
  });

  it('a slow query is aborted after timeoutMs and counted as an error', async () => {
    const { source, poller } = setup({ timeoutMs: 20 });
    source.delayMs = 5_000;
    const result = await poller.tick();
    expect(result.outcome).toBe('error');
    expect(result.error?.message).toMatch(/timed out after 20 ms/);
  });

  it('rejects bad options with an error naming them', () => {
    const source = new FakeSource();
    const recorder = new FirstConnectionRecorder();
    expect(() => new FirstConnectionPoller({ source, recorder, intervalMs: 0 })).toThrow(/intervalMs/);
    expect(() => new FirstConnectionPoller({ source, recorder, overlapMs: -1 })).toThrow(/overlapMs/);
    expect(() => new FirstConnectionPoller({ source, recorder, mode: 'fast' as never })).toThrow(/mode/);
  });
});

describe('incremental discovery and pruning', () => {
  it('queries from the watermark minus the overlap and holds only agents inside that window', async () => {
    let now = Date.parse('2026-11-25T12:00:00Z');
    const { source, poller, recorder } = setup({ mode: 'incremental', overlapMs: 120_000, backfill: { sinceMs: 0 }, now: () => now });
    source.clockMs = now;
    const first = await poller.tick();
    expect(first.outcome).toBe('success');
    // Before the source's clock is known, the first query reaches back by the overlap too.
    expect(source.queries[0]?.connectedSince?.toISOString()).toBe('2026-11-25T11:58:00.000Z');

    source.agents = [agent({ createdAt: '2026-11-25T12:00:10Z', firstConnectedAt: '2026-11-25T12:00:30Z' })];
    now += 60_000;
    source.clockMs = now;
    await poller.tick();
    // since = max(countFrom 12:00, watermark 12:00 - 2 min)
    expect(source.queries[1]?.connectedSince?.toISOString()).toBe('2026-11-25T12:00:00.000Z');
    expect(recorder.trackedAgents).toBe(1);

    for (let i = 0; i < 4; i++) {
      now += 60_000;
      source.clockMs = now;
      await poller.tick();
    }
    // The last query ran with the 12:04 watermark; after it the watermark is 12:05 and the window
    // starts at 12:03, so the 12:00:30 connection is forgotten.
    expect(source.queries.at(-1)?.connectedSince?.toISOString()).toBe('2026-11-25T12:02:00.000Z');
    expect(recorder.trackedAgents).toBe(0);
  });

  it('a steady tick reads only what is new, not the overlap again (before: 6 minutes of rows per tick at 60 s), and a late row still counts once', async () => {
    let now = Date.parse('2026-11-25T12:00:00Z');
    const { source, poller, metrics: m } = setup({ mode: 'incremental', overlapMs: 300_000, backfill: 'all', now: () => now });
    const rows: number[] = [];
    for (let minute = 0; minute < 8; minute++) {
      // 10 new first connections per minute, each 20 s before the tick.
      const at = new Date(now - 20_000);
      for (let i = 0; i < 10; i++) source.agents.push(agent({ createdAt: new Date(at.getTime() - 30_000), firstConnectedAt: at }));
      source.clockMs = now;
      const result = await poller.tick();
      expect(result.outcome).toBe('success');
      rows.push(result.rowsRead);
      now += 60_000;
    }
    // Every tick returns the 10 new rows only; up to 50 handled rows of the overlap are left out by id.
    expect(rows).toEqual([10, 10, 10, 10, 10, 10, 10, 10]);
    const last = source.queries.at(-1)!;
    expect(last.excludeAgentIds).toHaveLength(50); // the 5 minutes of the overlap
    expect(await totalCount(m)).toBe(80);

    // A row committed late: its first connection is 2 minutes old, inside the overlap, never seen.
    const late = agent({ createdAt: new Date(now - 150_000), firstConnectedAt: new Date(now - 120_000) });
    source.agents.push(late);
    source.clockMs = now;
    const withLate = await poller.tick();
    expect([withLate.rowsRead, withLate.observed]).toEqual([1, 1]);
    now += 60_000;
    source.clockMs = now;
    const after = await poller.tick();
    expect([after.rowsRead, after.observed]).toEqual([0, 0]);
    expect(await totalCount(m)).toBe(81);
  });

  it('after a restart from saved state the first query already leaves out the handled agents', async () => {
    let now = Date.parse('2026-11-25T12:00:00Z');
    const first = setup({ mode: 'incremental', backfill: 'all', now: () => now });
    const agents = Array.from({ length: 5 }, () => agent({ createdAt: new Date(now - 60_000), firstConnectedAt: new Date(now - 30_000) }));
    first.source.agents = agents;
    first.source.clockMs = now;
    expect((await first.poller.tick()).observed).toBe(5);
    const state = first.poller.exportState()!;
    await first.metrics.shutdown();

    now += 60_000;
    const second = setup({ mode: 'incremental', resumeFrom: state, now: () => now });
    second.source.agents = agents;
    second.source.clockMs = now;
    const result = await second.poller.tick();
    expect(new Set(second.source.queries[0]?.excludeAgentIds)).toEqual(new Set(agents.map((a) => a.agentId)));
    expect([result.rowsRead, result.observed]).toEqual([0, 0]);
  });

  it('sends at most MAX_EXCLUDED_AGENT_IDS ids, the most recently handled, and still counts each agent once', async () => {
    let now = Date.parse('2026-11-25T12:00:00Z');
    const { source, poller, metrics: m } = setup({ mode: 'incremental', backfill: 'all', now: () => now });
    const total = MAX_EXCLUDED_AGENT_IDS + 5;
    source.agents = Array.from({ length: total }, (_, i) =>
      agent({ createdAt: new Date(now - 200_000), firstConnectedAt: new Date(now - 100_000 + i) }),
    );
    source.clockMs = now;
    expect((await poller.tick()).observed).toBe(total);
    now += 60_000;
    source.clockMs = now;
    const second = await poller.tick();
    const excluded = source.queries[1]!.excludeAgentIds!;
    expect(excluded).toHaveLength(MAX_EXCLUDED_AGENT_IDS);
    expect(excluded.at(-1)).toBe(source.agents.at(-1)!.agentId);
    expect([second.rowsRead, second.observed]).toEqual([5, 0]);
    expect(await totalCount(m)).toBe(total);
  });

  it('full-scan prunes to the current ids, the rule of Coder PR #24179', async () => {
    const { source, poller, recorder } = setup({ mode: 'full-scan' });
    source.agents = [agent(), agent(), agent()];
    await poller.tick();
    expect(recorder.trackedAgents).toBe(3);
    source.agents = source.agents.slice(0, 1);
    await poller.tick();
    expect(recorder.trackedAgents).toBe(1);
    expect(source.queries.every((q) => q.connectedSince === undefined)).toBe(true);
  });

  it('by default does not count agents that connected before the poller started', async () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    const { metrics, source, poller } = setup({ mode: 'full-scan', backfill: { sinceMs: 0 }, now: () => now });
    source.agents = [
      agent({ createdAt: '2026-11-25T11:00:00Z', firstConnectedAt: '2026-11-25T11:59:59Z' }),
      agent({ createdAt: '2026-11-25T11:59:00Z', firstConnectedAt: '2026-11-25T12:00:00Z' }),
    ];
    await poller.tick();
    await poller.tick();
    expect(await totalCount(metrics)).toBe(1);
  });
});

describe('leadership', () => {
  class SwitchableLeadership {
    leader = false;
    fail: Error | undefined;
    async isLeader(): Promise<boolean> {
      if (this.fail) throw this.fail;
      return this.leader;
    }
  }

  it('a follower observes nothing and counts its skipped ticks; the leader observes', async () => {
    const leadership = new SwitchableLeadership();
    const { metrics, source, poller } = setup({ leadership, backfill: 'all' });
    source.agents = [agent({ firstConnectedAt: new Date(Date.now() - 1000), createdAt: new Date(Date.now() - 31_000) })];
    for (let i = 0; i < 3; i++) expect((await poller.tick()).outcome).toBe('skipped_not_leader');
    expect(source.queries).toHaveLength(0);
    expect(await totalCount(metrics)).toBe(0);
    let text = await metrics.text();
    expect(samples(text, 'agentconn_leader').get('agentconn_leader{}')).toBe(0);
    leadership.leader = true;
    expect((await poller.tick()).outcome).toBe('success');
    text = await metrics.text();
    expect(samples(text, 'agentconn_leader').get('agentconn_leader{}')).toBe(1);
    expect(samples(text, 'agentconn_polls_total').get('agentconn_polls_total{outcome="skipped_not_leader"}')).toBe(3);
  });

  it('on takeover counts from one interval before its last follower tick: nothing older is re-counted', async () => {
    let now = Date.parse('2026-11-25T12:00:00Z');
    const leadership = new SwitchableLeadership();
    const { metrics, source, poller } = setup({ leadership, backfill: 'all', intervalMs: 60_000, now: () => now });
    const at = (iso: string) => agent({ createdAt: new Date(Date.parse(iso) - 10_000), firstConnectedAt: iso });
    source.agents = [
      at('2026-11-25T11:00:00Z'), // long before: the old leader counted it
      at('2026-11-25T12:00:30Z'), // within one interval before the last follower tick (12:01)
      at('2026-11-25T12:01:30Z'), // after the last follower tick
    ];
    now = Date.parse('2026-11-25T12:01:00Z');
    await poller.tick(); // follower
    leadership.leader = true;
    now = Date.parse('2026-11-25T12:02:00Z');
    expect((await poller.tick()).observed).toBe(2);
    expect(await totalCount(metrics)).toBe(2);
  });

  it('a leadership check that fails is an error tick, not a follower tick', async () => {
    const leadership = new SwitchableLeadership();
    leadership.fail = new Error('leader lock connection failed: ECONNREFUSED');
    const { poller } = setup({ leadership });
    const result = await poller.tick();
    expect(result.outcome).toBe('error');
    expect(result.error?.message).toContain('leader lock');
  });
});

describe('leadership that cannot strand or skip', () => {
  class LockLike {
    leader = true;
    fail: Error | undefined;
    held = true;
    takeoverAnswer: Takeover = { kind: 'unknown' };
    published: number[] = [];
    publishFails: Error | undefined;
    async isLeader(): Promise<boolean> {
      if (this.fail) throw this.fail;
      return this.leader;
    }
    takeover(): Takeover {
      return this.takeoverAnswer;
    }
    async publishProgress(watermarkMs: number): Promise<void> {
      if (this.publishFails) throw this.publishFails;
      this.published.push(watermarkMs);
    }
  }
  const connected = (offsetMs = 0) => agent({ firstConnectedAt: new Date(Date.now() + offsetMs - 1000), createdAt: new Date(Date.now() - 31_000) });
  const leaderGauge = async (m: TestMetrics) => samples(await m.text(), 'agentconn_leader').get('agentconn_leader{}');

  // Mutant from the HA attack: the poller counting as leader when the leader's check throws.
  it('a leader whose check throws stops observing at once and reports agentconn_leader 0', async () => {
    const leadership = new LockLike();
    const { metrics, source, poller } = setup({ leadership, backfill: 'all' });
    source.agents = [connected()];
    expect((await poller.tick()).observed).toBe(1);
    expect(await leaderGauge(metrics)).toBe(1);
    leadership.fail = new Error('leader lock check failed: no answer within 500 ms');
    source.agents.push(connected());
    const queries = source.queries.length;
    const failed = await poller.tick();
    expect(failed.outcome).toBe('error');
    expect(failed.observed).toBe(0);
    expect(source.queries).toHaveLength(queries);
    expect(await leaderGauge(metrics)).toBe(0);
    expect(poller.isLeader).toBe(false);
    expect(await totalCount(metrics)).toBe(1);
  });

  it('agentconn_leader goes to 0 as soon as the lock is known lost, before the next check', async () => {
    const leadership = new LockLike();
    const { metrics, poller } = setup({ leadership });
    await poller.tick();
    expect(await leaderGauge(metrics)).toBe(1);
    leadership.held = false; // e.g. 'leadership released' when the lock's connection dropped
    expect(await leaderGauge(metrics)).toBe(0);
  });

  it('publishes each poll before recording it; a failed publish records nothing and stops observing', async () => {
    let now = Date.parse('2026-11-25T12:00:00Z');
    const leadership = new LockLike();
    const { metrics, source, poller } = setup({ leadership, backfill: 'all', now: () => now });
    source.clockMs = now + 7;
    source.agents = [connected()];
    await poller.tick();
    expect(leadership.published).toEqual([now + 7]);
    source.agents.push(connected());
    leadership.publishFails = new Error('publishing leader progress failed: connection lost');
    now += 60_000;
    source.clockMs = now;
    const result = await poller.tick();
    expect(result.outcome).toBe('error');
    expect(await totalCount(metrics)).toBe(1);
    expect(await leaderGauge(metrics)).toBe(0);
    // Leadership continues (own session regained): the same rows are read again and counted once.
    leadership.publishFails = undefined;
    leadership.takeoverAnswer = { kind: 'continue' };
    now += 1000;
    source.clockMs = now;
    expect((await poller.tick()).observed).toBe(1);
    expect(await totalCount(metrics)).toBe(2);
  });

  it('a takeover resumes exactly from the previous leader\'s published progress (issue figures: 560 of 650)', async () => {
    let now = Date.parse('2026-11-25T12:10:00Z');
    const leadership = new LockLike();
    leadership.leader = false;
    const { metrics, source, poller } = setup({ leadership, backfill: { sinceMs: 0 }, intervalMs: 1000, now: () => now });
    const at = (iso: string) => agent({ createdAt: new Date(Date.parse(iso) - 10_000), firstConnectedAt: iso });
    source.agents = [
      at('2026-11-25T12:04:59Z'), // before the old leader's last published poll: it counted it
      at('2026-11-25T12:05:01Z'), // after it, while the old leader was partitioned: nobody counted it
      at('2026-11-25T12:09:30Z'), // after: long before this process's last follower tick
    ];
    await poller.tick(); // follower at 12:10
    leadership.leader = true;
    leadership.takeoverAnswer = { kind: 'resume', fromMs: Date.parse('2026-11-25T12:05:00Z') };
    now += 1000;
    source.clockMs = now;
    const result = await poller.tick();
    expect(result.observed).toBe(2);
    expect(source.queries.at(-1)?.connectedSince?.toISOString()).toBe('2026-11-25T12:05:00.000Z');
    expect(await totalCount(metrics)).toBe(2);
  });

  it('a follower that recovers from an outage logs its next outage again (not only at debug)', async () => {
    const leadership = new LockLike();
    leadership.leader = false;
    const { poller, logger } = setup({ leadership });
    await poller.tick();
    leadership.fail = new Error('leader lock connection failed: ECONNREFUSED');
    await poller.tick();
    await poller.tick();
    leadership.fail = undefined;
    expect((await poller.tick()).outcome).toBe('skipped_not_leader');
    leadership.fail = new Error('leader lock connection failed: ETIMEDOUT');
    await poller.tick();
    const outages = logger.records.filter((r) => r.level !== 'debug' && r.message.startsWith('polling the agent source failed'));
    expect(outages).toHaveLength(2);
    expect(logger.records.filter((r) => r.message === 'agent source recovered')).toHaveLength(1);
  });
});

describe('clock skew between this process and the source', () => {
  it.each([
    ['ahead by 30 s', 30_000],
    ['behind by 30 s', -30_000],
  ])('counts exactly the connections after start on the source clock when the source is %s', async (_label, offsetMs) => {
    const localStart = Date.parse('2026-11-25T12:00:00Z');
    let now = localStart;
    const { metrics, source, poller } = setup({ mode: 'incremental', backfill: { sinceMs: 0 }, now: () => now });
    const sourceStart = localStart + offsetMs;
    const connectedAt = (deltaMs: number) =>
      agent({ createdAt: new Date(sourceStart + deltaMs - 20_000), firstConnectedAt: new Date(sourceStart + deltaMs) });
    const before = connectedAt(-10_000);
    source.agents = [before];
    source.clockMs = sourceStart;
    await poller.tick();
    source.agents = [before, connectedAt(5_000)];
    now += 60_000;
    source.clockMs += 60_000;
    await poller.tick();
    expect(await totalCount(metrics)).toBe(1);
  });
});
