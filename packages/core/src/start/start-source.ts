import type { Instant } from '../timestamp.js';
import type { ProvisionerJobStages, StartupScriptRun, WorkspaceStartBuild } from './start-recorder.js';

export interface StartQuery {
  /**
   * Only what happened at or after this instant is needed: builds whose job started or completed, whose
   * agents connected, became ready or passed their connection timeout since; jobs completed since; script
   * runs ended since. Undefined: everything.
   */
  readonly since?: Date;
  /**
   * What the poller already handled that `since` would return again (the overlap): builds whose start ended
   * (or that were dropped), jobs whose stages were observed, script runs observed. A source may leave them
   * out so that a tick reads about what is new; returning them is correct too. Only with `since`.
   */
  readonly exclude?: StartExclusions;
  /**
   * The builds in progress at the last read. With them a source may find the builds in progress by key (those,
   * the unfinished jobs and the builds that changed) instead of reading every agent not ready; undefined: a
   * full reconciliation (a first read, a new leader).
   */
  readonly inProgressBuildIds?: readonly string[];
  /**
   * Also read every agent not ready (the reconciliation), besides `inProgressBuildIds`; implied when those
   * are undefined. Builds of `inProgressBuildIds` are returned in `inProgress` even when they ended (unless
   * superseded or deleted), so a poller observes what a late write ended.
   */
  readonly reconcile?: boolean;
  /**
   * Agents the poller saw become ready since `since`. With them a source may read the start scripts' runs
   * through those agents and the changed builds' agents (start scripts end before `ready_at`) instead of
   * scanning every run; undefined: read every run that ended since.
   */
  readonly readyAgentIds?: readonly string[];
  readonly signal: AbortSignal;
}

/** Handled samples a read may leave out, at most `MAX_EXCLUDED_AGENT_IDS` of each kind. */
export interface StartExclusions {
  readonly buildIds: readonly string[];
  readonly jobIds: readonly string[];
  /** A script run is keyed by Coder's UNIQUE (script_id, started_at). */
  readonly scriptRuns: readonly { readonly scriptId: string; readonly startedMicros: number }[];
}

export interface StartBatch {
  /** Start builds with something new since `query.since`, each with all its agents. */
  readonly builds: readonly WorkspaceStartBuild[];
  /** The stage timings of the start builds' jobs that completed since `query.since`. */
  readonly jobs: readonly ProvisionerJobStages[];
  /** Runs of agent scripts at start (`stage = 'start'`) that ended since `query.since`. */
  readonly scripts: readonly StartupScriptRun[];
  /**
   * The latest start build of every non-deleted workspace that has no outcome yet (by the phase model at
   * `now`): what the in-progress gauges show. A build that is superseded or whose workspace is deleted is
   * not here, so it leaves the gauges without an observation.
   */
  readonly inProgress: readonly WorkspaceStartBuild[];
  /** The source's clock at the read, at µs precision: timeouts are judged on it. */
  readonly now: Instant;
  /** The same clock as a Date, for the poller's watermark; undefined when the source read nothing (a family turned off). */
  readonly sourceTime?: Date | undefined;
  /** Rows the source read. */
  readonly rowsRead: number;
}

/**
 * What the start stream of a poller reads. The core owns this interface; `@agentconn/kysely` implements it
 * over Coder's database (`createCoderStartSource`).
 */
export interface WorkspaceStartSource {
  listStarts(query: StartQuery): Promise<StartBatch>;
}
