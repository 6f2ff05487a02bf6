import { afterEach, describe, expect, it } from 'vitest';
import {
  CountWindow,
  FirstConnectionPoller,
  FirstConnectionRecorder,
  firstConnectionView,
  type AgentBatch,
  type AgentFirstConnection,
  type AgentQuery,
  type FirstConnectionSource,
} from '../src/index.js';
import { agent, createTestMetrics, type TestMetrics } from './helpers.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { samples } from '@agentconn/test-support/exposition-parser';

const START_MS = Date.parse('2026-11-25T12:00:00Z');

/**
 * A hot standby over an in-memory table: a row is visible once its commit is replayed. Each agent
 * commits the instant it connects (on the primary's clock, shared with the standby here).
 */
class StandbySource implements FirstConnectionSource {
  readonly committed: AgentFirstConnection[] = [];
  clockMs = START_MS;
  /** The commit time of the last replayed transaction; advances with the clock unless paused. */
  replayedUntilMs: number | null = START_MS;
  paused = false;
  /** Whether it reports what it replayed (false: the behaviour before, watermark on its own clock). */
  reportsReplay = true;

  connect(n: number): AgentFirstConnection[] {
    const added = Array.from({ length: n }, () =>
      agent({ createdAt: new Date(this.clockMs - 20_000), firstConnectedAt: new Date(this.clockMs) }),
    );
    this.committed.push(...added);
    if (!this.paused) this.replayedUntilMs = this.clockMs;
    return added;
  }

  get pending(): boolean {
    return this.committed.some((a) => this.#commitMs(a) > (this.replayedUntilMs ?? -Infinity));
  }

  resume(): void {
    this.paused = false;
    const last = Math.max(...this.committed.map((a) => this.#commitMs(a)));
    this.replayedUntilMs = Math.max(this.replayedUntilMs ?? -Infinity, last);
  }

  async listAgents(query: AgentQuery): Promise<AgentBatch> {
    const since = query.connectedSince?.getTime() ?? -Infinity;
    const agents = this.committed.filter((a) => this.#commitMs(a) <= (this.replayedUntilMs ?? -Infinity) && this.#commitMs(a) >= since);
    if (!this.reportsReplay) return { agents, sourceTime: new Date(this.clockMs) };
    const replayed = this.replayedUntilMs;
    return {
      agents,
      sourceTime: new Date(this.clockMs),
      visibleUntil: replayed === null ? null : new Date(replayed),
      replayLagMs: this.pending ? this.clockMs - (replayed ?? START_MS) : 0,
    };
  }

  #commitMs(a: AgentFirstConnection): number {
    return new Date(a.firstConnectedAt!).getTime();
  }
}

const running: TestMetrics[] = [];
afterEach(async () => {
  for (const m of running.splice(0)) await m.shutdown();
});

function setup(source: StandbySource) {
  const metrics = createTestMetrics([firstConnectionView()]);
  running.push(metrics);
  const logger = createMemoryLogger();
  const recorder = new FirstConnectionRecorder({ meterProvider: metrics.meterProvider, logger });
  const poller = new FirstConnectionPoller({
    source,
    recorder,
    logger,
    meterProvider: metrics.meterProvider,
    overlapMs: 10_000,
    intervalMs: 1000,
    now: () => source.clockMs,
  });
  const text = () => metrics.text();
  const count = async () => [...samples(await text(), 'coderd_agents_first_connection_seconds_count').values()].reduce((a, b) => a + b, 0);
  const lag = async () => samples(await text(), 'agentconn_source_replay_lag_seconds').get('agentconn_source_replay_lag_seconds{}');
  return { poller, logger, count, lag };
}

/** Ticks once a second for `seconds`. */
async function tickFor(poller: FirstConnectionPoller, source: StandbySource, seconds: number): Promise<void> {
  for (let i = 0; i < seconds; i++) {
    expect((await poller.tick()).outcome).toBe('success');
    source.clockMs += 1000;
  }
}

describe('a source that is a hot standby', () => {
  it('replay paused 20 s with a 10 s overlap while 10 of 20 agents connect: all 20 counted once after replay resumes, the lag logged once', async () => {
    const source = new StandbySource();
    const { poller, logger, count, lag } = setup(source);
    await tickFor(poller, source, 2);
    source.connect(10);
    await tickFor(poller, source, 2);
    expect(await count()).toBe(10);
    expect(await lag()).toBe(0);

    source.paused = true;
    source.connect(10);
    await tickFor(poller, source, 20);
    expect(await count()).toBe(10);
    expect(await lag()).toBeGreaterThan(10);
    const lagLines = logger.records.filter((r) => r.message.startsWith('the standby replays behind its primary'));
    expect(lagLines).toHaveLength(1);
    expect(lagLines[0]!).toMatchObject({ level: 'warn', fields: { overlap_s: 10 } });

    source.resume();
    await tickFor(poller, source, 5);
    expect(await count()).toBe(20);
    expect(await lag()).toBe(0);
    const caughtUp = logger.records.filter((r) => r.message === 'the standby caught up with its primary');
    expect(caughtUp).toHaveLength(1);
    expect(caughtUp[0]!.fields['max_replay_lag_s']).toBeGreaterThan(10);
  });

  it('the figure of the report: a standby that does not say what it replayed loses the 10 of the pause', async () => {
    const source = new StandbySource();
    source.reportsReplay = false;
    const { poller, count } = setup(source);
    await tickFor(poller, source, 2);
    source.connect(10);
    await tickFor(poller, source, 2);
    source.paused = true;
    source.connect(10);
    await tickFor(poller, source, 20);
    source.resume();
    await tickFor(poller, source, 5);
    expect(await count()).toBe(10);
  });

  it('an idle primary (nothing to replay, the replay time stands still): no lag, no warning, and the next connection is counted', async () => {
    const source = new StandbySource();
    const { poller, logger, count, lag } = setup(source);
    source.connect(1);
    await tickFor(poller, source, 60);
    expect(await lag()).toBe(0);
    expect(logger.records.filter((r) => r.level === 'warn')).toHaveLength(0);
    source.connect(3);
    await tickFor(poller, source, 2);
    expect(await count()).toBe(4);
  });

  it('a standby that has replayed nothing yet (no replay time) keeps the watermark where it was', () => {
    const options = { overlapMs: 10_000, intervalMs: 1000 };
    const started = CountWindow.start(options, START_MS).afterQuery(START_MS, START_MS);
    expect(started.afterQuery(START_MS + 60_000, START_MS + 60_000, null).watermarkMs).toBe(START_MS);
    expect(started.afterQuery(START_MS + 60_000, START_MS + 60_000, START_MS + 5_000).watermarkMs).toBe(START_MS + 5_000);
    expect(started.afterQuery(START_MS + 60_000, START_MS + 60_000, START_MS + 90_000).watermarkMs).toBe(START_MS + 60_000);
    const fresh = CountWindow.start(options, START_MS).afterQuery(START_MS, START_MS, null);
    expect(fresh.watermarkMs).toBeUndefined();
    expect(fresh.querySinceMs).toBe(START_MS);
  });

  it('a primary exposes no replay lag series', async () => {
    const source = new StandbySource();
    source.reportsReplay = false;
    const { poller, lag } = setup(source);
    await tickFor(poller, source, 1);
    expect(await lag()).toBeUndefined();
  });
});
