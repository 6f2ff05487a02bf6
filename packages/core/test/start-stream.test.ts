import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { samples } from '@agentconn/test-support/exposition-parser';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  firstConnectionView,
  toEpochMicros,
  workspaceStart,
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
  /** Per read: whether it had a lower bound. */
  readonly bounded: boolean[] = [];
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
    this.reconciled.push(query.reconcile === true);
    this.readyAgents.push(query.readyAgentIds);
    this.bounded.push(query.since !== undefined);
    const since = query.since === undefined ? undefined : query.since.getTime() * 1000;
    const now = this.clockMs * 1000;
    // As changedStartBuildsQuery: the whole build when any one of its instants (or a passed timeout) is since.
    const instants = (b: WorkspaceStartBuild): number[] => {
      const { job, agents } = b.instants;
      const all = [job.startedAt, job.completedAt, ...agents.flatMap((a) => [a.firstConnectedAt, a.readyAt])]
        .filter((i): i is string => i !== null)
        .map((i) => toEpochMicros(i)!);
      for (const a of agents) {
        const deadline = toEpochMicros(a.createdAt)! + a.connectionTimeoutSeconds * 1e6;
        if (a.firstConnectedAt === null && a.connectionTimeoutSeconds > 0 && deadline < now) all.push(deadline);
      }
      return all.filter((m) => m <= now);
    };
    const builds = this.builds.filter((b) => since === undefined || instants(b).some((m) => m >= since));
    // As startsInProgressQuery: the known builds (ended or not) and, reconciling, every build still going.
    const known = new Set([...(query.inProgressBuildIds ?? []), ...builds.map((b) => b.buildId)]);
    const going = (b: WorkspaceStartBuild) => workspaceStart({ ...b.instants, now: text(this.clockMs) }).state === 'in_progress';
    const inProgress = this.builds.filter((b) => known.has(b.buildId) || (query.reconcile === true && going(b)));
    return { builds, jobs: [], scripts: [], inProgress, now: text(this.clockMs), sourceTime: new Date(this.clockMs), rowsRead: builds.length };
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
    // Incremental in either mode: a full read of every start build each tick would keep the whole history.
    expect(table.bounded).toEqual([true, true, true, true, true, true, true]);
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

/** A build that moves through its phases across ticks 15 s apart, with the default 5 min overlap. */
async function progress(move: (build: MovingBuild, startMs: number, nowMs: number) => void, options: { overlapMs?: number; ticks?: number } = {}) {
  const table = new StartTable();
  const metrics = createTestMetrics([firstConnectionView(), ...workspaceStartViews()]);
  running.push(metrics);
  const logger = createMemoryLogger();
  const poller = new FirstConnectionPoller({
    source: emptyAgents(table),
    recorder: new FirstConnectionRecorder({ meterProvider: metrics.meterProvider, logger }),
    starts: { source: table, recorder: new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger }) },
    meterProvider: metrics.meterProvider,
    logger,
    now: () => table.clockMs,
    ...(options.overlapMs !== undefined && { overlapMs: options.overlapMs }),
  });
  await poller.tick();
  const startMs = table.clockMs + 1000;
  const build: MovingBuild = {
    job: { startedAt: null, completedAt: null, canceledAt: null, error: null },
    agent: { agentId: 'a1', createdAt: text(startMs), firstConnectedAt: null, readyAt: null, lifecycleState: 'created', connectionTimeoutSeconds: 0 },
    agents: [],
  };
  table.builds.push({ buildId: 'moving', labels: LABELS, instants: { buildCreatedAt: text(startMs), job: build.job, agents: build.agents } });
  for (let tick = 0; tick < (options.ticks ?? 80); tick++) {
    table.clockMs += 15_000;
    move(build, startMs, table.clockMs);
    if (build.job.completedAt !== null && build.agents.length === 0) build.agents.push(build.agent);
    await poller.tick();
  }
  await poller.stop();
  const out = await metrics.text();
  return {
    starts: [...samples(out, 'agentconn_workspace_start_seconds_count').values()],
    phases: [...samples(out, 'agentconn_workspace_start_phase_seconds_count').values()],
    logger,
  };
}

interface MovingBuild {
  job: { startedAt: string | null; completedAt: string | null; canceledAt: null; error: null };
  agent: { agentId: string; createdAt: string; firstConnectedAt: string | null; readyAt: string | null; lifecycleState: string; connectionTimeoutSeconds: number };
  agents: MovingBuild['agent'][];
}

describe('a build whose phases outlast the overlap', () => {
  it('observes each phase and the start once, however long each phase takes', async () => {
    const minute = 60_000;
    const { starts, phases } = await progress(({ job, agent }, start, now) => {
      job.startedAt ??= text(start + 2000);
      if (job.completedAt === null && now > start + 8 * minute) {
        job.completedAt = text(start + 8 * minute);
        agent.createdAt = job.completedAt;
      }
      if (agent.firstConnectedAt === null && now > start + 9 * minute) agent.firstConnectedAt = text(start + 9 * minute);
      if (agent.readyAt === null && now > start + 16 * minute) {
        agent.readyAt = text(start + 16 * minute);
        agent.lifecycleState = 'ready';
      }
    });
    expect(starts).toEqual([1]);
    expect(phases).toEqual([1, 1, 1, 1]);
  });

  it('a connect_timeout followed by a late connection is counted once', async () => {
    const minute = 60_000;
    const { starts } = await progress(({ job, agent }, start, now) => {
      if (job.startedAt === null) {
        job.startedAt = text(start + 2000);
        job.completedAt = text(start + 30_000);
        agent.createdAt = job.completedAt;
        agent.connectionTimeoutSeconds = 60;
      }
      if (agent.firstConnectedAt === null && now > start + 12 * minute) agent.firstConnectedAt = text(start + 12 * minute);
      if (agent.readyAt === null && now > start + 13 * minute) {
        agent.readyAt = text(start + 13 * minute);
        agent.lifecycleState = 'ready';
      }
    });
    expect(starts).toEqual([1]);
  });

  it('a ready_at written long after its value (the agent clock, a reconnect) still ends the start, once', async () => {
    const minute = 60_000;
    const { starts, phases } = await progress(({ job, agent }, start, now) => {
      if (job.startedAt === null) {
        job.startedAt = text(start + 2000);
        job.completedAt = text(start + 30_000);
        agent.createdAt = job.completedAt;
        agent.firstConnectedAt = text(start + 40_000);
      }
      // Written 12 minutes late: before every later read's lower bound.
      if (agent.readyAt === null && now > start + 14 * minute) {
        agent.readyAt = text(start + 2 * minute);
        agent.lifecycleState = 'ready';
      }
    });
    expect(starts).toEqual([1]);
    expect(phases).toEqual([1, 1, 1, 1]);
  });

  it('property: whatever the phase lengths, the overlap and a late ready_at, each sample is observed once', async () => {
    let seed = 26;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const minute = 60_000;
    for (let run = 0; run < 30; run++) {
      const queued = random() * 3 * minute;
      const provisioning = random() * 12 * minute;
      const connecting = random() * 8 * minute;
      const starting = random() * 12 * minute;
      const lateBy = random() < 0.5 ? 0 : random() * 15 * minute; // ready_at written this long after its value
      const overlapMs = [10_000, 60_000, 300_000][run % 3]!;
      const { starts, phases } = await progress(
        ({ job, agent }, start, now) => {
          const completed = start + queued + provisioning;
          const connected = completed + connecting;
          const ready = connected + starting;
          if (job.startedAt === null && now >= start + queued) job.startedAt = text(Math.round(start + queued));
          if (job.completedAt === null && now >= completed) {
            job.completedAt = text(Math.round(completed));
            agent.createdAt = job.completedAt;
          }
          if (agent.firstConnectedAt === null && job.completedAt !== null && now >= connected) agent.firstConnectedAt = text(Math.round(connected));
          if (agent.readyAt === null && agent.firstConnectedAt !== null && now >= ready + lateBy) {
            agent.readyAt = text(Math.round(ready));
            agent.lifecycleState = 'ready';
          }
        },
        { overlapMs, ticks: 240 },
      );
      expect({ run, starts, phases }).toEqual({ run, starts: [1], phases: [1, 1, 1, 1] });
    }
  });
});
