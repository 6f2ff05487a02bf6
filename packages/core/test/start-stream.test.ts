import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { samples } from '@agentconn/test-support/exposition-parser';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  firstConnectionView,
  toEpochMicros,
  WorkspaceStartRecorder,
  workspaceStartViews,
  type AgentBatch,
  type DiscoveryMode,
  type StartBatch,
  type StartQuery,
  type WorkspaceStartBuild,
  type WorkspaceStartSource,
} from '../src/index.js';
import { createTestMetrics, type TestMetrics } from './helpers.js';

const LABELS = { template_name: 'docker', username: 'alice', workspace_name: 'dev', is_prebuild: false };

/** µs text of epoch ms. */
const text = (ms: number): string => new Date(ms).toISOString().replace('Z', '000Z');

/** Start builds with their own clock, returning those with an instant at or after `since`, as a database would. */
class StartTable implements WorkspaceStartSource {
  builds: WorkspaceStartBuild[] = [];
  /** Per read: whether it was a reconciliation (no builds in progress known). */
  readonly reconciled: boolean[] = [];
  /** Per read: the agents passed as ready since the bound. */
  readonly readyAgents: (readonly string[] | undefined)[] = [];
  clockMs = Date.parse('2026-12-01T12:00:00Z');

  /** A build that ran `seconds` and ended ready `endedAgoMs` before the clock. */
  addReady(buildId: string, seconds: number, endedAgoMs = 0): void {
    const end = this.clockMs - endedAgoMs;
    const start = end - seconds * 1000;
    this.builds.push({
      buildId,
      labels: LABELS,
      instants: {
        buildCreatedAt: text(start),
        job: { startedAt: text(start + 100), completedAt: text(start + seconds * 500), canceledAt: null, error: null },
        agents: [{ agentId: `agent-of-${buildId}`, createdAt: text(start + seconds * 500), firstConnectedAt: text(end - 1000), readyAt: text(end), lifecycleState: 'ready', connectionTimeoutSeconds: 0 }],
      },
    });
  }

  async listStarts(query: StartQuery): Promise<StartBatch> {
    this.reconciled.push(query.inProgressBuildIds === undefined);
    this.readyAgents.push(query.readyAgentIds);
    const since = query.since === undefined ? undefined : query.since.getTime() * 1000;
    const latest = (b: WorkspaceStartBuild): number => {
      const { job, agents } = b.instants;
      const all = [job.startedAt, job.completedAt, ...agents.flatMap((a) => [a.firstConnectedAt, a.readyAt])];
      return Math.max(...all.map((i) => (i === null ? 0 : toEpochMicros(i)!)));
    };
    const builds = this.builds.filter((b) => since === undefined || latest(b) >= since);
    return { builds, jobs: [], scripts: [], inProgress: [], now: text(this.clockMs), sourceTime: new Date(this.clockMs), rowsRead: builds.length };
  }
}

/** No agents, on the table's clock. */
const emptyAgents = (table: StartTable) => ({ listAgents: async (): Promise<AgentBatch> => ({ agents: [], sourceTime: new Date(table.clockMs) }) });

const running: TestMetrics[] = [];
afterEach(async () => {
  for (const m of running.splice(0)) await m.shutdown();
});

function run(table: StartTable, mode: DiscoveryMode, leader: () => boolean = () => true) {
  const metrics = createTestMetrics([firstConnectionView(), ...workspaceStartViews()]);
  running.push(metrics);
  const logger = createMemoryLogger();
  const starts = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger });
  const poller = new FirstConnectionPoller({
    source: emptyAgents(table),
    recorder: new FirstConnectionRecorder({ meterProvider: metrics.meterProvider, logger }),
    starts: { source: table, recorder: starts },
    meterProvider: metrics.meterProvider,
    logger,
    mode,
    overlapMs: 60_000,
    backfill: { sinceMs: 0 },
    leadership: { isLeader: async () => leader() },
    now: () => table.clockMs,
  });
  const count = async () => [...samples(await metrics.text(), 'agentconn_workspace_start_seconds_count').values()].reduce((a, b) => a + b, 0);
  return { poller, starts, count, metrics };
}

describe.each(['incremental', 'full-scan'] as DiscoveryMode[])('the start stream in %s mode', (mode) => {
  it('observes each start once across ticks, long after its overlap window, and none from before the start', async () => {
    const table = new StartTable();
    table.addReady('before', 30, 5_000);
    const { poller, count } = run(table, mode);
    await poller.tick();
    expect(await count()).toBe(0);
    table.clockMs += 10_000;
    table.addReady('b1', 40);
    await poller.tick();
    expect(await count()).toBe(1);
    for (let i = 0; i < 5; i++) {
      table.clockMs += 30_000; // past the 60 s overlap after two ticks
      await poller.tick();
    }
    expect(await count()).toBe(1);
    await poller.stop();
  });
});

describe('the start stream and leadership', () => {
  it('a follower observes nothing and reports no starts in progress', async () => {
    const table = new StartTable();
    let leading = true;
    const { poller, starts, count, metrics } = run(table, 'incremental', () => leading);
    starts.setInProgress([{ labels: LABELS, phase: 'connecting', count: 1, oldestSeconds: 5 }]);
    await poller.tick();
    leading = false;
    table.clockMs += 1_000;
    table.addReady('b1', 40);
    starts.setInProgress([{ labels: LABELS, phase: 'connecting', count: 1, oldestSeconds: 5 }]);
    await poller.tick();
    expect(await count()).toBe(0);
    expect(await metrics.text()).not.toContain('agentconn_workspace_starts_in_progress{');
    await poller.stop();
  });

  it('reconciles the builds in progress while the bound is held at the start, then looks them up by key', async () => {
    const table = new StartTable();
    const { poller } = run(table, 'incremental');
    for (let i = 0; i < 5; i++) {
      if (i === 3) table.addReady('late', 20);
      await poller.tick();
      table.clockMs += 30_000;
    }
    // The bound is the last read's clock less the 60 s overlap: past the start from the fifth read on.
    expect(table.reconciled).toEqual([true, true, true, true, false]);
    // Then the agents seen ready within the overlap are passed, for their script runs.
    expect(table.readyAgents).toEqual([undefined, undefined, undefined, undefined, ['agent-of-late']]);
    await poller.stop();
  });
});
