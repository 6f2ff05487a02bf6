import { describe, expect, it } from 'vitest';
import { toEpochMicros, workspaceStart, type StartAgentInstants, type WorkspaceStartInstants } from '../src/index.js';

const T0 = '2026-12-01T10:00:00.000000Z';

/** mulberry32: a seeded PRNG, so a failing case can be replayed. */
function createRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
/** `T0` plus `seconds` (whole µs), as µs text. */
function at(seconds: number): string {
  const micros = toEpochMicros(T0)! + Math.round(seconds * 1e6);
  const ms = Math.floor(micros / 1000);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(micros - ms * 1000).padStart(3, '0')}Z`;
}

function agent(overrides: Partial<StartAgentInstants> = {}): StartAgentInstants {
  return { createdAt: at(20), firstConnectedAt: at(25), readyAt: at(40), lifecycleState: 'ready', connectionTimeoutSeconds: 0, ...overrides };
}

function build(overrides: Partial<WorkspaceStartInstants> = {}, job: Partial<WorkspaceStartInstants['job']> = {}): WorkspaceStartInstants {
  return {
    buildCreatedAt: at(0),
    job: { startedAt: at(0.25), completedAt: at(20), canceledAt: null, error: null, type: 'workspace_build', ...job },
    agents: [agent()],
    now: at(3600),
    ...overrides,
  };
}

describe('workspaceStart', () => {
  it('a ready start: created → job started → completed → last connection → last ready_at', () => {
    const result = workspaceStart(build({ agents: [agent(), agent({ firstConnectedAt: at(30), readyAt: at(35) })] }));
    expect(result).toMatchObject({ state: 'ended', outcome: 'ready', seconds: 40 });
    if (result.state !== 'ended') throw new Error('not ended');
    expect(result.phases.map((p) => [p.phase, p.seconds])).toEqual([
      ['queued', 0.25],
      ['provisioning', 19.75],
      ['connecting', 10],
      ['starting', 10],
    ]);
  });

  it('worst status as Coder: error over timeout over success', () => {
    const states = (a: string, b: string) => workspaceStart(build({ agents: [agent({ lifecycleState: a }), agent({ lifecycleState: b })] }));
    expect(states('start_timeout', 'start_error')).toMatchObject({ outcome: 'start_error' });
    expect(states('ready', 'start_timeout')).toMatchObject({ outcome: 'start_timeout' });
    expect(states('ready', 'ready')).toMatchObject({ outcome: 'ready' });
  });

  it('a build without agents is ready when its job completes, after two phases', () => {
    const result = workspaceStart(build({ agents: [] }));
    expect(result).toMatchObject({ state: 'ended', outcome: 'ready', seconds: 20 });
    if (result.state === 'ended') expect(result.phases.map((p) => p.phase)).toEqual(['queued', 'provisioning']);
  });

  it('sub-agents neither delay nor fail their build (Coder leaves them out)', () => {
    const result = workspaceStart(build({ agents: [agent(), agent({ parentId: 'p', firstConnectedAt: null, readyAt: null, lifecycleState: 'start_error' })] }));
    expect(result).toMatchObject({ state: 'ended', outcome: 'ready', seconds: 40 });
  });

  it('a failed job is build_failed, a canceled one canceled, at completed_at; error wins as in job_status', () => {
    expect(workspaceStart(build({}, { error: 'terraform apply failed' }))).toMatchObject({ outcome: 'build_failed', seconds: 20 });
    expect(workspaceStart(build({}, { canceledAt: at(10) }))).toMatchObject({ outcome: 'canceled', seconds: 20 });
    expect(workspaceStart(build({}, { canceledAt: at(10), error: 'canceled' }))).toMatchObject({ outcome: 'build_failed' });
    const beforeStart = workspaceStart(build({}, { startedAt: null, canceledAt: at(3), completedAt: at(3) }));
    expect(beforeStart).toMatchObject({ outcome: 'canceled', seconds: 3, phases: [] });
    // An empty error is no error (Coder's `error <> ''`).
    expect(workspaceStart(build({}, { error: '' }))).toMatchObject({ outcome: 'ready' });
  });

  it('in progress: queued, provisioning (also while canceling), connecting, starting, each since its start', () => {
    expect(workspaceStart(build({}, { startedAt: null, completedAt: null }))).toMatchObject({ state: 'in_progress', phase: 'queued', sinceMicros: toEpochMicros(at(0)) });
    expect(workspaceStart(build({}, { completedAt: null, canceledAt: at(5) }))).toMatchObject({ phase: 'provisioning', sinceMicros: toEpochMicros(at(0.25)) });
    expect(workspaceStart(build({ agents: [agent(), agent({ firstConnectedAt: null, readyAt: null })] }))).toMatchObject({
      phase: 'connecting',
      sinceMicros: toEpochMicros(at(20)),
    });
    expect(workspaceStart(build({ agents: [agent({ readyAt: null })] }))).toMatchObject({ phase: 'starting', sinceMicros: toEpochMicros(at(25)) });
  });

  it('connect_timeout: strictly after created_at + connection_timeout_seconds, at that instant; 0 never times out', () => {
    const waiting = agent({ createdAt: at(20), firstConnectedAt: null, readyAt: null, connectionTimeoutSeconds: 120 });
    expect(workspaceStart(build({ agents: [waiting], now: at(140) }))).toMatchObject({ state: 'in_progress', phase: 'connecting' });
    expect(workspaceStart(build({ agents: [waiting], now: at(140.000001) }))).toMatchObject({ outcome: 'connect_timeout', seconds: 140 });
    // A late connection timed out first, whatever happened after.
    const late = agent({ createdAt: at(20), firstConnectedAt: at(141), readyAt: at(150), connectionTimeoutSeconds: 120 });
    expect(workspaceStart(build({ agents: [late] }))).toMatchObject({ outcome: 'connect_timeout', seconds: 140 });
    const onTime = agent({ createdAt: at(20), firstConnectedAt: at(140), readyAt: at(150), connectionTimeoutSeconds: 120 });
    expect(workspaceStart(build({ agents: [onTime] }))).toMatchObject({ outcome: 'ready', seconds: 150 });
    const never = agent({ firstConnectedAt: null, readyAt: null, connectionTimeoutSeconds: 0 });
    expect(workspaceStart(build({ agents: [never], now: at(10 * 86400) }))).toMatchObject({ state: 'in_progress', phase: 'connecting' });
  });

  it('rows Coder would not write make the build invalid, naming why', () => {
    const problem = (instants: WorkspaceStartInstants) => {
      const result = workspaceStart(instants);
      return result.state === 'invalid' ? [result.problem.reason, result.problem.message] : result.state;
    };
    expect(problem(build({ agents: [agent({ firstConnectedAt: null })] }))).toEqual(['invalid', 'agent has a ready_at without a first_connected_at']);
    expect(problem(build({}, { type: 'template_version_import' }))).toEqual(['invalid', "the build's job is not a workspace build job"]);
    expect(problem(build({}, { startedAt: null }))).toEqual(['invalid', 'job succeeded without a started_at']);
    expect(problem(build({ buildCreatedAt: 'not a time' }))[0]).toBe('invalid');
  });

  it('clock skew makes only the negative span negative: the start and the other phases stand', () => {
    const spans = (instants: WorkspaceStartInstants) => {
      const result = workspaceStart(instants);
      if (result.state !== 'ended') throw new Error(result.state);
      return [result.outcome, result.seconds, Object.fromEntries(result.phases.map((p) => [p.phase, p.seconds]))];
    };
    // The agent's clock writes ready_at 10 ms before coderd's first connection: only `starting` is negative.
    expect(spans(build({ agents: [agent({ firstConnectedAt: at(25), readyAt: at(24.99) })] }))).toEqual([
      'ready',
      24.99,
      { queued: 0.25, provisioning: 19.75, connecting: 5, starting: -0.01 },
    ]);
    expect(spans(build({}, { startedAt: at(10), completedAt: at(5) }))[2]).toMatchObject({ provisioning: -5 });
    expect(spans(build({}, { startedAt: at(-1) }))[2]).toMatchObject({ queued: -1 });
    expect(spans(build({ agents: [agent({ firstConnectedAt: at(19), readyAt: at(30) })] }))[2]).toMatchObject({ connecting: -1 });
  });

  it('property: for every ready start the four phases add up exactly (in µs) to the start', () => {
    const random = createRandom(26);
    for (let i = 0; i < 2000; i++) {
      const micro = () => Math.floor(random() * 600_000_000) / 1e6;
      const started = micro();
      const completed = started + micro();
      const agents = Array.from({ length: 1 + Math.floor(random() * 3) }, () => {
        const connected = completed + micro();
        return agent({ createdAt: at(completed), firstConnectedAt: at(connected), readyAt: at(connected + micro()) });
      });
      const result = workspaceStart(build({ agents, now: at(1e6) }, { startedAt: at(started), completedAt: at(completed) }));
      if (result.state !== 'ended' || result.outcome !== 'ready') throw new Error(`build ${i} did not end ready`);
      const phaseMicros = result.phases.reduce((sum, p) => sum + (p.endMicros - p.startMicros), 0);
      expect(result.phases).toHaveLength(4);
      expect(phaseMicros).toBe(result.atMicros - result.createdMicros);
      expect(Math.round(result.phases.reduce((sum, p) => sum + p.seconds, 0) * 1e6)).toBe(Math.round(result.seconds * 1e6));
    }
  });
});
