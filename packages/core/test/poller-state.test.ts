import { afterEach, describe, expect, it } from 'vitest';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  firstConnectionView,
  parsePollerState,
  PollerStateError,
  serializePollerState,
  type AgentBatch,
  type AgentFirstConnection,
  type AgentQuery,
  type DiscoveryMode,
  type FirstConnectionPollerOptions,
  type FirstConnectionSource,
  type PollerState,
} from '../src/index.js';
import { agent, createTestMetrics, type TestMetrics } from './helpers.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { samples } from '@agentconn/test-support/exposition-parser';

/** An in-memory agent table with its own clock, honouring connectedSince like a database. */
class TableSource implements FirstConnectionSource {
  agents: AgentFirstConnection[] = [];
  clockMs = Date.parse('2026-11-25T12:00:00Z');

  async listAgents(query: AgentQuery): Promise<AgentBatch> {
    const since = query.connectedSince?.getTime();
    const agents = this.agents.filter(
      (a) => a.firstConnectedAt !== null && (since === undefined || new Date(a.firstConnectedAt).getTime() >= since),
    );
    return { agents, sourceTime: new Date(this.clockMs) };
  }
}

const running: TestMetrics[] = [];
afterEach(async () => {
  for (const m of running.splice(0)) await m.shutdown();
});

/** One exporter process: its own metrics, recorder and poller over the shared table. */
function run(source: TableSource, options: Partial<FirstConnectionPollerOptions> = {}) {
  const metrics = createTestMetrics([firstConnectionView()]);
  running.push(metrics);
  const logger = createMemoryLogger();
  const recorder = new FirstConnectionRecorder({ meterProvider: metrics.meterProvider, logger });
  // This process's clock runs 7 s behind the source's: the saved bound must not depend on it.
  const poller = new FirstConnectionPoller({
    source,
    recorder,
    logger,
    meterProvider: metrics.meterProvider,
    overlapMs: 120_000,
    now: () => source.clockMs - 7_000,
    ...options,
  });
  const count = async () => [...samples(await metrics.text(), 'coderd_agents_first_connection_seconds_count').values()].reduce((a, b) => a + b, 0);
  return { poller, recorder, logger, count };
}

function connectedAt(iso: string): AgentFirstConnection {
  const connected = new Date(iso);
  return agent({ createdAt: new Date(connected.getTime() - 30_000), firstConnectedAt: connected });
}

describe('poller state: serialize and parse', () => {
  const state: PollerState = {
    version: 1,
    watermarkMs: Date.parse('2026-11-25T12:05:00Z'),
    clockOffsetMs: -1234.5,
    countFromMs: Date.parse('2026-11-25T12:03:00Z'),
    handled: [
      { agentId: 'a1', firstConnectedMicros: Date.parse('2026-11-25T12:04:00Z') * 1000 + 7 },
      { agentId: 'a2', firstConnectedMicros: null },
    ],
  };

  it('round-trips every field, µs and unreadable first connections included', () => {
    expect(parsePollerState(serializePollerState(state))).toEqual(state);
  });

  it('round-trips the whole start samples handled', () => {
    const withStarts: PollerState = { ...state, starts: [{ key: 'b1/queued', micros: 1_764_000_000_000_001 }, { key: 's1/17', micros: 2 }] };
    expect(parsePollerState(serializePollerState(withStarts))).toEqual(withStarts);
    expect(() => parsePollerState(serializePollerState(state).replace('}', ',"starts":[["",1]]}'))).toThrow('starts[0] has no key');
  });

  it.each([
    ['', /^not JSON/],
    ['{"version":1', /^not JSON/],
    ['[1,2]', /^not a JSON object$/],
    ['{"version":2}', /^version is 2, expected 1$/],
    ['{"handled":[]}', /^version is missing, expected 1$/],
    ['{"version":1,"handled":{}}', /^handled is not a list$/],
    ['{"version":1,"handled":[["a"]]}', /^handled\[0\] is not \[agent_id, first_connected_us\]$/],
    ['{"version":1,"handled":[["",1]]}', /^handled\[0\] has no agent id$/],
    ['{"version":1,"handled":[["a","x"]]}', /^handled\[0\] first connection is neither/],
    ['{"version":1,"handled":[],"watermark_ms":"soon","clock_offset_ms":0,"count_from_ms":0}', /^watermark_ms is not a number/],
    ['{"version":1,"handled":[],"watermark_ms":1e300,"clock_offset_ms":0,"count_from_ms":0}', /^watermark_ms is not a number of milliseconds within the Date range$/],
    ['{"version":1,"handled":[],"watermark_ms":0,"clock_offset_ms":0}', /^count_from_ms is not/],
  ])('rejects %j with a PollerStateError naming the problem', (text, message) => {
    expect(() => parsePollerState(text)).toThrow(PollerStateError);
    expect(() => parsePollerState(text)).toThrow(message);
  });
});

describe.each(['incremental', 'full-scan'] as DiscoveryMode[])('poller state: a restart in %s mode', (mode) => {
  it('counts every connection of the downtime once and none that the first run counted or ruled out', async () => {
    const source = new TableSource();
    const beforeStart = connectedAt('2026-11-25T11:59:00Z');
    source.agents.push(beforeStart);
    const first = run(source, { mode });
    await first.poller.tick();
    const counted = [connectedAt('2026-11-25T12:00:20Z'), connectedAt('2026-11-25T12:00:40Z')];
    source.agents.push(...counted);
    source.clockMs += 60_000;
    await first.poller.tick();
    expect(await first.count()).toBe(2);
    const saved = parsePollerState(serializePollerState(first.poller.exportState()!));
    expect(saved.watermarkMs).toBe(Date.parse('2026-11-25T12:01:00Z'));
    expect(saved.clockOffsetMs).toBe(7_000);

    // Down for 10 minutes (the process is gone, kill -9): three agents connect meanwhile.
    const downtime = [connectedAt('2026-11-25T12:01:30Z'), connectedAt('2026-11-25T12:05:00Z'), connectedAt('2026-11-25T12:10:59Z')];
    source.agents.push(...downtime);
    source.clockMs += 10 * 60_000;

    // Without the saved state the default backfill (none) leaves a hole: the downtime is never counted.
    const withoutState = run(source, { mode });
    await withoutState.poller.tick();
    await withoutState.poller.tick();
    expect(await withoutState.count()).toBe(0);

    const second = run(source, { mode, resumeFrom: saved });
    for (let i = 0; i < 3; i++) {
      expect((await second.poller.tick()).outcome).toBe('success');
      source.clockMs += 60_000;
    }
    expect(await second.count()).toBe(downtime.length);
  });
});

describe('poller state: saving', () => {
  it('hands the state to saveState after each successful tick; a failing save is a warning, not a failed tick', async () => {
    const source = new TableSource();
    const saves: PollerState[] = [];
    let fail = false;
    const { poller, logger } = run(source, {
      saveState: (state) => {
        if (fail) throw new Error('disk full');
        saves.push(state);
      },
    });
    expect(poller.exportState()).toBeUndefined();
    await poller.tick();
    source.agents.push(connectedAt('2026-11-25T12:00:30Z'));
    source.clockMs += 60_000;
    await poller.tick();
    expect(saves.map((s) => s.watermarkMs)).toEqual([Date.parse('2026-11-25T12:00:00Z'), Date.parse('2026-11-25T12:01:00Z')]);
    expect(saves[1]!.handled.map((h) => h.agentId)).toEqual([source.agents[0]!.agentId]);
    fail = true;
    expect((await poller.tick()).outcome).toBe('success');
    expect(logger.records.filter((r) => r.level === 'warn')).toEqual([
      { level: 'warn', message: 'saving the poller state failed', fields: { error: 'disk full' } },
    ]);
  });
});
