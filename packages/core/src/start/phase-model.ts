/**
 * The whole start of a workspace as a pure function of a build's instants: what happened (an outcome, or
 * the phase it is in now) and how long each phase took. No clock, no I/O: the exporter's database path and a
 * service that holds the same instants in memory compute the same numbers. Durations are exact to the
 * microsecond (integer µs), so for a build that ended, its phases add up exactly to its start.
 *
 * The reference definitions are Coder's: `GetWorkspaceBuildMetricsByResourceID` (build `created_at` →
 * `MAX(ready_at)` of the build's agents, sub-agents left out, worst status error > timeout > success) and the
 * generated `provisioner_jobs.job_status` (a non-empty `error` fails a job, a `canceled_at` cancels it). A
 * connection timeout is Coder's rule: an agent with `connection_timeout_seconds > 0` that did not connect by
 * `created_at + timeout`, strictly.
 */
import { START_OUTCOME_VALUES, START_PHASE_VALUES, type DropReason } from '../metric.js';
import { formatEpochMicros, toEpochMicros, type Instant } from '../timestamp.js';

/** How a start ended. */
export const START_OUTCOMES = START_OUTCOME_VALUES;
export type StartOutcome = (typeof START_OUTCOMES)[number];

/** The phases of a start, in order. */
export const START_PHASES = START_PHASE_VALUES;
export type StartPhase = (typeof START_PHASES)[number];

/** The provisioner job of the build (`provisioner_jobs`). */
export interface StartJobInstants {
  readonly startedAt: Instant | null;
  readonly completedAt: Instant | null;
  readonly canceledAt: Instant | null;
  /** Non-empty: the job failed. */
  readonly error: string | null;
  /** `provisioner_jobs.type` when known; anything but `workspace_build` makes the build invalid. */
  readonly type?: string;
}

/** One agent of the build (`workspace_agents`). */
export interface StartAgentInstants {
  /** The agent's id, when the source knows it (the model does not use it). */
  readonly agentId?: string;
  /** Set for a sub-agent (a dev container): left out, as in Coder's query. */
  readonly parentId?: string | null;
  readonly createdAt: Instant;
  readonly firstConnectedAt: Instant | null;
  readonly readyAt: Instant | null;
  /** `lifecycle_state`: `start_error` and `start_timeout` decide the worst status. */
  readonly lifecycleState: string;
  /** 0: never times out (Coder's rule). */
  readonly connectionTimeoutSeconds: number;
}

export interface WorkspaceStartInstants {
  /** `workspace_builds.created_at`: the start begins here. */
  readonly buildCreatedAt: Instant;
  readonly job: StartJobInstants;
  /** Every agent of the build's resources; sub-agents are left out here. */
  readonly agents: readonly StartAgentInstants[];
  /** The clock the timeouts are judged on (the database's, for a poller). */
  readonly now: Instant;
}

/** A phase that ended: from `startMicros` to `endMicros` (epoch µs); `seconds` is negative under clock skew. */
export interface StartPhaseSpan {
  readonly phase: StartPhase;
  readonly startMicros: number;
  readonly endMicros: number;
  readonly seconds: number;
}

/** Why a build's instants cannot be measured; nothing of it is observed. */
export interface StartProblem {
  readonly reason: DropReason;
  readonly message: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

export type WorkspaceStart =
  | {
      readonly state: 'ended';
      readonly outcome: StartOutcome;
      readonly atMicros: number;
      /** `atMicros - buildCreatedAt`, in seconds. */
      readonly seconds: number;
      /** The phases that ended by the outcome, in order. For `ready` they add up exactly to `seconds`. */
      readonly phases: readonly StartPhaseSpan[];
      /** The build's start, epoch µs. */
      readonly createdMicros: number;
    }
  | {
      readonly state: 'in_progress';
      readonly phase: StartPhase;
      /** When the current phase began, epoch µs. */
      readonly sinceMicros: number;
      readonly phases: readonly StartPhaseSpan[];
      readonly createdMicros: number;
    }
  | { readonly state: 'invalid'; readonly problem: StartProblem };

const MICROS_PER_SECOND = 1_000_000;

function invalid(reason: DropReason, message: string, fields: Record<string, unknown>): WorkspaceStart {
  return { state: 'invalid', problem: { reason, message, fields } };
}

function span(phase: StartPhase, startMicros: number, endMicros: number): StartPhaseSpan {
  return { phase, startMicros, endMicros, seconds: (endMicros - startMicros) / MICROS_PER_SECOND };
}

/** Reads an instant; `undefined` for a missing one, `null` for text that is no time. */
function micros(value: Instant | null | undefined): number | undefined | null {
  if (value === null || value === undefined) return undefined;
  return toEpochMicros(value) ?? null;
}

/**
 * What a build's instants say about its start. A row Coder would not write (a job of another type, a
 * `ready_at` without a first connection, a job that succeeded without starting) makes the whole build
 * `invalid`. A negative span (clock skew between coderd replicas, or the agent's clock that writes `ready_at`)
 * is kept with its negative `seconds`: the recorder drops and counts that one phase (or the start, when its
 * own span is negative) and observes the rest, so a few ms of skew on a fast start do not drop the start.
 */
export function workspaceStart(instants: WorkspaceStartInstants): WorkspaceStart {
  const { job } = instants;
  const created = micros(instants.buildCreatedAt);
  const now = micros(instants.now);
  const started = micros(job.startedAt);
  const completed = micros(job.completedAt);
  if (created == null) return invalid('invalid', 'build created_at is not a valid timestamp', { field: 'created_at' });
  if (now == null) return invalid('invalid', 'the clock to judge timeouts on is not a valid timestamp', { field: 'now' });
  if (started === null || completed === null || micros(job.canceledAt) === null) {
    return invalid('invalid', 'job timestamp is not a valid timestamp', { field: 'provisioner_jobs' });
  }
  if (job.type !== undefined && job.type !== 'workspace_build') {
    return invalid('invalid', 'the build\'s job is not a workspace build job', { job_type: job.type });
  }
  const phases: StartPhaseSpan[] = [];
  if (started !== undefined) phases.push(span('queued', created, started));

  if (completed === undefined) {
    // Running, pending or being canceled: a canceled job ends only when it completes.
    return started === undefined
      ? { state: 'in_progress', phase: 'queued', sinceMicros: created, phases, createdMicros: created }
      : { state: 'in_progress', phase: 'provisioning', sinceMicros: started, phases, createdMicros: created };
  }
  const ended = (outcome: StartOutcome, at: number, done: readonly StartPhaseSpan[]): WorkspaceStart => ({
    state: 'ended',
    outcome,
    atMicros: at,
    seconds: (at - created) / MICROS_PER_SECOND,
    phases: done,
    createdMicros: created,
  });
  // Coder's job_status: an error fails the job before a cancel cancels it.
  if (job.error !== null && job.error !== '') return ended('build_failed', completed, phases);
  if (job.canceledAt !== null) return ended('canceled', completed, phases);
  if (started === undefined) return invalid('invalid', 'job succeeded without a started_at', { completed_at: formatEpochMicros(completed) });
  phases.push(span('provisioning', started, completed));

  const agents = instants.agents.filter((agent) => agent.parentId === null || agent.parentId === undefined);
  if (agents.length === 0) return ended('ready', completed, phases);

  let allConnected = true;
  let allReady = true;
  let lastConnected = Number.NEGATIVE_INFINITY;
  let lastReady = Number.NEGATIVE_INFINITY;
  let timedOutAt: number | undefined;
  let worst: StartOutcome = 'ready';
  for (const agent of agents) {
    const agentCreated = micros(agent.createdAt);
    const connected = micros(agent.firstConnectedAt);
    const ready = micros(agent.readyAt);
    if (agentCreated == null || connected === null || ready === null) {
      return invalid('invalid', 'agent timestamp is not a valid timestamp', { field: 'workspace_agents' });
    }
    if (ready !== undefined && connected === undefined) {
      return invalid('invalid', 'agent has a ready_at without a first_connected_at', { ready_at: formatEpochMicros(ready) });
    }
    const timeout = agent.connectionTimeoutSeconds;
    if (Number.isSafeInteger(timeout) && timeout > 0) {
      const deadline = agentCreated + timeout * MICROS_PER_SECOND;
      // Strictly later, as Coder's rule: connecting exactly at the deadline is in time.
      const passed = connected === undefined ? now > deadline : connected > deadline;
      if (passed && (timedOutAt === undefined || deadline < timedOutAt)) timedOutAt = deadline;
    }
    if (connected === undefined) allConnected = false;
    else if (connected > lastConnected) lastConnected = connected;
    if (ready === undefined) allReady = false;
    else if (ready > lastReady) lastReady = ready;
    if (agent.lifecycleState === 'start_error') worst = 'start_error';
    else if (agent.lifecycleState === 'start_timeout' && worst !== 'start_error') worst = 'start_timeout';
  }
  // A timeout is the first thing that happened to such a build: every ready_at is after the late connection.
  if (timedOutAt !== undefined) return ended('connect_timeout', Math.max(timedOutAt, completed), phases);
  if (!allConnected) return { state: 'in_progress', phase: 'connecting', sinceMicros: completed, phases, createdMicros: created };
  phases.push(span('connecting', completed, lastConnected));
  if (!allReady) return { state: 'in_progress', phase: 'starting', sinceMicros: lastConnected, phases, createdMicros: created };
  phases.push(span('starting', lastConnected, lastReady));
  return ended(worst, lastReady, phases);
}

/**
 * The latest readable instant of a build's rows (epoch µs): where a build that cannot be measured is counted
 * as dropped, by the exporter's recorder and the report alike.
 */
export function latestStartInstantMicros(instants: Omit<WorkspaceStartInstants, 'now'>): number | undefined {
  const all: (Instant | null)[] = [instants.buildCreatedAt, instants.job.startedAt, instants.job.completedAt, instants.job.canceledAt];
  for (const agent of instants.agents) all.push(agent.createdAt, agent.firstConnectedAt, agent.readyAt);
  let latest: number | undefined;
  for (const value of all) {
    const micros = value === null ? undefined : toEpochMicros(value);
    if (micros !== undefined && (latest === undefined || micros > latest)) latest = micros;
  }
  return latest;
}
