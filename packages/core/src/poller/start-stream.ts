import { abortReason } from '../abort.js';
import { MAX_EXCLUDED_AGENT_IDS } from '../first-connection-source.js';
import type { StartBatch, WorkspaceStartSource } from '../start/start-source.js';
import { workspaceStart, type StartPhase } from '../start/phase-model.js';
import type { StartBuildLabels, StartsInProgressGroup, WorkspaceStartRecorder } from '../start/start-recorder.js';
import { toEpochMicros } from '../timestamp.js';
import type { CountWindow } from './count-window.js';
import type { DiscoveryMode, PollStream, StreamCounts, StreamRead, StreamTick } from './poll-stream.js';
import type { PollerState } from './poller-state.js';

/** One read of the start stream. */
export interface StartRead extends StreamRead {
  readonly batch: StartBatch;
  readonly mode: DiscoveryMode;
  /** The read's lower bound (epoch µs); undefined: it read everything. */
  readonly sinceMicros?: number;
}

/**
 * The whole start (`--phases`): every start build, phase, job's stages and start script run observed once,
 * under the same window, leadership and saved state as the first connections; and the builds in progress
 * for the gauges, on the source's clock.
 */
export class WorkspaceStartStream implements PollStream<StartRead> {
  readonly #source: WorkspaceStartSource;
  readonly #recorder: WorkspaceStartRecorder;
  /**
   * The builds in progress at the last read and the phase each was in; undefined until a read (and after
   * leadership is lost): the next read reconciles from every agent not ready.
   */
  #inProgress: Map<string, StartPhase> | undefined;
  /** Agents seen ready (id → epoch µs of ready_at), kept for the overlap: their late script runs are read. */
  readonly #readyAgents = new Map<string, number>();

  constructor(source: WorkspaceStartSource, recorder: WorkspaceStartRecorder) {
    this.#source = source;
    this.#recorder = recorder;
  }

  /**
   * Always incremental, also under `mode: 'full-scan'` (the first connection's rule, not this family's): a full
   * read of every start build each tick would keep the whole history in memory and in every read.
   */
  async read({ signal, window, mode }: StreamTick): Promise<StartRead> {
    const sinceMs = window.querySinceMs;
    // Builds in progress are looked up by key only while the lower bound trails the last read by the overlap:
    // while it is held at the count-from bound (after a start, a restart or a takeover), a build whose last
    // change committed late, before that bound, would be missed, so every agent not ready is read too.
    const clamped = sinceMs === undefined || (window.countFromMs !== undefined && sinceMs <= window.countFromMs);
    const reconcile = this.#inProgress === undefined || clamped;
    const known = this.#inProgress === undefined ? {} : { inProgressBuildIds: [...this.#inProgress.keys()] };
    const query =
      sinceMs === undefined
        ? { signal, ...known, reconcile }
        : {
            signal,
            since: new Date(sinceMs),
            // The overlap costs ids, not rows: what was handled in it is left out, as the first connection's read does.
            exclude: this.#recorder.handledExclusions(sinceMs * 1000, MAX_EXCLUDED_AGENT_IDS),
            ...known,
            reconcile,
            ...(!reconcile && { readyAgentIds: this.#readyAgentsSince(sinceMs * 1000) }),
          };
    const batch = await this.#source.listStarts(query);
    if (signal.aborted) throw abortReason(signal);
    return { batch, mode, rowsRead: batch.rowsRead, sourceTime: batch.sourceTime, ...(sinceMs !== undefined && { sinceMicros: sinceMs * 1000 }) };
  }

  record({ batch, sinceMicros }: StartRead, window: CountWindow): StreamCounts {
    const countFrom = window.countFromMs === undefined ? undefined : window.countFromMs * 1000;
    let observed = 0;
    let dropped = 0;
    const add = (counts: { observed: number; dropped: number }): void => {
      observed += counts.observed;
      dropped += counts.dropped;
    };
    const last = this.#inProgress;
    const seen = new Set<string>();
    // The changed builds, then those in progress at the last read that left it (a late-written instant before
    // the bound): from the phase they were in on, their samples are observed whatever their instants.
    for (const build of [...batch.builds, ...batch.inProgress]) {
      if (seen.has(build.buildId)) continue;
      seen.add(build.buildId);
      const fromPhase = last?.get(build.buildId);
      add(this.#recorder.recordBuild(build, batch.now, { countFrom, since: sinceMicros, fromPhase }));
      for (const agent of build.instants.agents) {
        const ready = agent.readyAt === null ? undefined : toEpochMicros(agent.readyAt);
        if (agent.agentId !== undefined && ready !== undefined) this.#readyAgents.set(agent.agentId, ready);
      }
    }
    for (const job of batch.jobs) add(this.#recorder.recordStages(job, countFrom));
    for (const run of batch.scripts) add(this.#recorder.recordScriptRun(run, countFrom));
    const { groups, phases } = inProgress(batch);
    this.#recorder.setInProgress(groups);
    this.#inProgress = phases;
    return { observed, dropped };
  }

  /** Forgets what the next read cannot return again (before its lower bound). */
  prune(_read: StartRead, window: CountWindow): void {
    const nextSince = window.querySinceMs;
    if (nextSince === undefined) return;
    this.#recorder.forgetBefore(nextSince * 1000);
    for (const [agentId, ready] of this.#readyAgents) if (ready < nextSince * 1000) this.#readyAgents.delete(agentId);
  }

  follow(): void {
    // A follower reads nothing: its in-progress gauges report nothing rather than stale builds, and a
    // leader again reconciles them from every agent not ready.
    this.#recorder.clearInProgress();
    this.#inProgress = undefined;
    this.#readyAgents.clear();
  }

  #readyAgentsSince(micros: number): string[] {
    const ids: string[] = [];
    for (const [agentId, ready] of this.#readyAgents) if (ready >= micros) ids.push(agentId);
    return ids;
  }

  restore(state: PollerState): void {
    this.#recorder.restoreHandled(state.starts ?? []);
  }

  save(countFromMs: number): Pick<PollerState, 'starts'> {
    return { starts: this.#recorder.handledSince(countFromMs * 1000) };
  }
}

/** The builds of the batch still in progress at its clock, counted per label set and phase with the oldest. */
export function inProgressGroups(batch: StartBatch): StartsInProgressGroup[] {
  return inProgress(batch).groups;
}

/** The builds of the batch still in progress: their groups for the gauges and their phases for the next read. */
function inProgress(batch: StartBatch): { groups: StartsInProgressGroup[]; phases: Map<string, StartPhase> } {
  const now = toEpochMicros(batch.now);
  const phases = new Map<string, StartPhase>();
  if (now === undefined) return { groups: [], phases };
  const groups = new Map<string, { labels: StartBuildLabels; phase: StartPhase; count: number; oldestSeconds: number }>();
  for (const build of batch.inProgress) {
    const result = workspaceStart({ ...build.instants, now: batch.now });
    if (result.state !== 'in_progress') continue;
    phases.set(build.buildId, result.phase);
    const key = JSON.stringify([build.labels.template_name, build.labels.username, build.labels.workspace_name, build.labels.is_prebuild, result.phase]);
    const seconds = Math.max(0, (now - result.sinceMicros) / 1e6);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, { labels: build.labels, phase: result.phase, count: 1, oldestSeconds: seconds });
    else {
      group.count++;
      group.oldestSeconds = Math.max(group.oldestSeconds, seconds);
    }
  }
  return { groups: [...groups.values()], phases };
}
