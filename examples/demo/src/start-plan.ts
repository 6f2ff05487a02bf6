/**
 * How one simulated workspace start unfolds, drawn up front from a seeded random source: the queue
 * wait, the Terraform stages of its provisioner job, how the job ends, the agent's connection timeout
 * and its startup scripts. Pure: no database, no clock; offsets are milliseconds.
 */
import type {
  ProvisionerJobTimingStage,
  WorkspaceAgentLifecycleState,
  WorkspaceAgentScriptTimingStatus,
} from '@agentconn/kysely';

type Range = readonly [min: number, max: number];

export interface ScriptProfile {
  readonly displayName: string;
  readonly seconds: Range;
  /** The script's `timeout_seconds`: a run that reaches it ends `timed_out`. */
  readonly timeoutSeconds: number;
}

/** What a template's starts look like. */
export interface TemplateProfile {
  readonly applySeconds: Range;
  readonly scripts: readonly ScriptProfile[];
  /** The agents' `connection_timeout_seconds`; 0: Coder never marks them timed out. */
  readonly connectionTimeoutSeconds: number;
}

/** One profile per template, by the template's index: a fast one, a Kubernetes-like, a VM, a flaky network. */
export const TEMPLATE_PROFILES: readonly TemplateProfile[] = [
  {
    applySeconds: [2, 8],
    scripts: [
      { displayName: 'Install tools', seconds: [1, 6], timeoutSeconds: 30 },
      { displayName: 'Clone repository', seconds: [1, 4], timeoutSeconds: 30 },
    ],
    connectionTimeoutSeconds: 0,
  },
  {
    applySeconds: [8, 25],
    scripts: [
      { displayName: 'Install tools', seconds: [2, 10], timeoutSeconds: 30 },
      { displayName: 'dotfiles', seconds: [0.5, 2], timeoutSeconds: 10 },
    ],
    connectionTimeoutSeconds: 0,
  },
  {
    applySeconds: [20, 45],
    scripts: [
      { displayName: 'Install tools', seconds: [5, 20], timeoutSeconds: 60 },
      { displayName: 'Clone repository', seconds: [2, 8], timeoutSeconds: 30 },
      { displayName: 'Warm build cache', seconds: [5, 30], timeoutSeconds: 40 },
    ],
    connectionTimeoutSeconds: 0,
  },
  {
    applySeconds: [4, 12],
    scripts: [{ displayName: 'Install tools', seconds: [1, 6], timeoutSeconds: 30 }],
    // Agents that wait longer than this unconnected end their start as connect_timeout.
    connectionTimeoutSeconds: 120,
  },
];

export interface StagePlan {
  readonly stage: ProvisionerJobTimingStage;
  /** From the job's start. */
  readonly startMs: number;
  readonly endMs: number;
  /** One timing row per resource, as Coder writes them. */
  readonly resources: readonly string[];
}

export interface ScriptPlan {
  readonly displayName: string;
  readonly timeoutSeconds: number;
  /** From the agent's first connection. */
  readonly startMs: number;
  readonly endMs: number;
  readonly status: WorkspaceAgentScriptTimingStatus;
  readonly exitCode: number;
}

export type JobResult = 'succeeded' | 'failed' | 'canceled';

export interface StartPlan {
  /** Build created → job started; for a job canceled in the queue, → canceled. */
  readonly queueMs: number;
  /** Job started → completed (0 for a job canceled in the queue, which never starts). */
  readonly provisionMs: number;
  readonly result: JobResult;
  /** The job never started: canceled while queued. */
  readonly canceledInQueue: boolean;
  readonly stages: readonly StagePlan[];
  readonly error: string | null;
  readonly connectionTimeoutSeconds: number;
  readonly scripts: readonly ScriptPlan[];
}

/** Chances per start and per script run. */
export const FAILURE_CHANCES = {
  buildFailed: 0.05,
  canceled: 0.03,
  scriptExitFailure: 0.04,
  scriptTimedOut: 0.02,
  /** Provisioners busy: the job waits seconds instead of well under one. */
  slowQueue: 0.15,
} as const;

/** A start's plan; `result` forces how its job ends instead of drawing it. */
export function planStart(random: () => number, profile: TemplateProfile, result: JobResult = drawResult(random)): StartPlan {
  const between = ([min, max]: Range): number => Math.round((min + (max - min) * random()) * 1000);
  const queueMs = random() < FAILURE_CHANCES.slowQueue ? between([3, 25]) : between([0.05, 0.9]);
  const canceledInQueue = result === 'canceled' && random() < 0.5;

  const durations: [ProvisionerJobTimingStage, number, string[]][] = [
    ['init', between([0.5, 3]), ['state']],
    ['plan', between([1, 4]), ['docker_image.main', 'docker_container.workspace[0]', 'coder_agent.main']],
    ['graph', between([0.1, 0.6]), ['state']],
    ['apply', between(profile.applySeconds), ['docker_image.main', 'docker_container.workspace[0]', 'coder_agent.main']],
  ];
  const stages: StagePlan[] = [];
  let at = 0;
  let error: string | null = null;
  if (!canceledInQueue) {
    for (const [stage, ms, resources] of durations) {
      // A failed job stops in apply; a canceled one in plan.
      const cut = (result === 'failed' && stage === 'apply') || (result === 'canceled' && stage === 'plan');
      const length = cut ? Math.round(ms * (0.2 + 0.6 * random())) : ms;
      stages.push({ stage, startMs: at, endMs: at + length, resources: cut ? resources.slice(0, 1) : resources });
      at += length + 50;
      if (cut) break;
    }
    if (result === 'failed') error = 'terraform apply: docker_container.workspace[0]: Unable to pull image: manifest unknown';
  }
  const provisionMs = canceledInQueue ? 0 : at + 300;

  const scripts: ScriptPlan[] = [];
  let scriptStart = 150;
  for (const script of profile.scripts) {
    const draw = random();
    const status: WorkspaceAgentScriptTimingStatus =
      draw < FAILURE_CHANCES.scriptExitFailure
        ? 'exit_failure'
        : draw < FAILURE_CHANCES.scriptExitFailure + FAILURE_CHANCES.scriptTimedOut
          ? 'timed_out'
          : 'ok';
    const length =
      status === 'timed_out' ? script.timeoutSeconds * 1000 : Math.min(between(script.seconds), script.timeoutSeconds * 1000 - 1);
    scripts.push({
      displayName: script.displayName,
      timeoutSeconds: script.timeoutSeconds,
      startMs: scriptStart,
      endMs: scriptStart + (status === 'exit_failure' ? Math.round(length / 3) : length),
      status,
      exitCode: status === 'ok' ? 0 : status === 'exit_failure' ? 1 : 255,
    });
    // Scripts run one after another, as a template's blocking startup scripts.
    scriptStart = scripts.at(-1)!.endMs + 20;
  }
  return {
    queueMs,
    provisionMs,
    result,
    canceledInQueue,
    stages,
    error,
    connectionTimeoutSeconds: profile.connectionTimeoutSeconds,
    scripts,
  };
}

function drawResult(random: () => number): JobResult {
  const draw = random();
  if (draw < FAILURE_CHANCES.buildFailed) return 'failed';
  return draw < FAILURE_CHANCES.buildFailed + FAILURE_CHANCES.canceled ? 'canceled' : 'succeeded';
}

/** The agent's lifecycle state once its scripts ended: a failed script wins over a timed-out one, as Coder orders them. */
export function lifecycleAfterScripts(scripts: readonly ScriptPlan[]): WorkspaceAgentLifecycleState {
  if (scripts.some((s) => s.status === 'exit_failure')) return 'start_error';
  if (scripts.some((s) => s.status === 'timed_out')) return 'start_timeout';
  return 'ready';
}

/** When the last script ends, from the agent's first connection. */
export function scriptsEndMs(scripts: readonly ScriptPlan[]): number {
  return scripts.reduce((end, s) => Math.max(end, s.endMs), 0) + 30;
}
