import type { AwaitingAgentsRecorder } from '../awaiting-recorder.js';
import type { FirstConnectionRecorder } from '../first-connection-recorder.js';
import { MAX_EXCLUDED_AGENT_IDS, type AgentBatch, type AgentQuery, type FirstConnectionSource } from '../first-connection-source.js';
import { toEpochMicros } from '../timestamp.js';
import { abortReason } from '../abort.js';
import type { CountWindow } from './count-window.js';
import type { DiscoveryMode, PollStream, StreamCounts, StreamRead, StreamTick } from './poll-stream.js';
import type { PollerState } from './poller-state.js';

/** One read of the first-connection stream: the source's batch and the query's lower bound. */
export interface FirstConnectionRead extends StreamRead {
  readonly batch: AgentBatch;
  readonly query: AgentQuery;
  readonly mode: DiscoveryMode;
}

/**
 * First connections (and, with the awaiting recorder, the agents still waiting and their timeouts):
 * each agent observed once into the histogram, under the tick's window.
 */
export class FirstConnectionStream implements PollStream<FirstConnectionRead> {
  readonly #source: FirstConnectionSource;
  readonly #recorder: FirstConnectionRecorder;
  readonly #awaiting: AwaitingAgentsRecorder | undefined;

  constructor(source: FirstConnectionSource, recorder: FirstConnectionRecorder, awaiting: AwaitingAgentsRecorder | undefined) {
    this.#source = source;
    this.#recorder = recorder;
    this.#awaiting = awaiting;
  }

  async read(tick: StreamTick): Promise<FirstConnectionRead> {
    const query = this.#query(tick);
    const batch = await this.#source.listAgents(query);
    if (tick.signal.aborted) throw abortReason(tick.signal);
    return {
      batch,
      query,
      mode: tick.mode,
      rowsRead: batch.agents.length,
      sourceTime: batch.sourceTime,
      visibleUntil: batch.visibleUntil,
      replayLagMs: batch.replayLagMs,
    };
  }

  /**
   * Incremental: from the window's lower bound, without the agents already handled in it (the
   * overlap), so a steady tick reads about what is new while a row committed late is still returned.
   */
  #query({ signal, window, startedMs, mode }: StreamTick): AgentQuery {
    const since = mode === 'incremental' ? window.querySinceMs : undefined;
    const awaiting = this.#awaiting?.nextQuery(startedMs + window.clockOffsetMs);
    const withAwaiting = awaiting === undefined ? {} : { awaiting };
    if (since === undefined) return { signal, ...withAwaiting };
    const excludeAgentIds = this.#recorder.handledIdsSince(since * 1000, MAX_EXCLUDED_AGENT_IDS);
    return { connectedSince: new Date(since), signal, ...(excludeAgentIds.length > 0 && { excludeAgentIds }), ...withAwaiting };
  }

  record({ batch, query }: FirstConnectionRead, window: CountWindow): StreamCounts {
    let observed = 0;
    let dropped = 0;
    for (const agent of batch.agents) {
      if (window.countFromMs !== undefined && agent.firstConnectedAt !== null && !this.#recorder.hasHandled(agent.agentId)) {
        const connected = toEpochMicros(agent.firstConnectedAt);
        if (connected !== undefined && window.isBeforeCountFrom(connected)) {
          // Connected before this process started and outside the backfill: counted by an earlier run.
          this.#recorder.markHandled(agent.agentId, agent.firstConnectedAt);
          continue;
        }
      }
      const outcome = this.#recorder.record(agent);
      if (outcome === 'observed') observed++;
      else if (outcome === 'negative_duration' || outcome === 'invalid') dropped++;
    }
    const timeouts = this.#awaiting?.recordBatch(batch, {
      countFromMs: window.countFromMs,
      sinceMs: query.connectedSince?.getTime(),
      clockOffsetMs: window.clockOffsetMs,
    });
    return { observed, dropped, ...(timeouts !== undefined && { timeouts }) };
  }

  /** Keeps the observe-once state to what the next query can return again. */
  prune({ batch, mode }: FirstConnectionRead, window: CountWindow): void {
    if (mode === 'full-scan') {
      this.#recorder.retainOnly(new Set(batch.agents.map((a) => a.agentId)));
      this.#awaiting?.retainOnly(new Set(batch.agents.filter((a) => a.timedOutAt != null).map((a) => a.agentId)));
      return;
    }
    const nextSince = window.querySinceMs;
    if (nextSince !== undefined) this.#recorder.forgetConnectedBefore(new Date(nextSince));
    if (nextSince !== undefined) this.#awaiting?.forgetTimedOutBefore(new Date(nextSince));
  }

  follow(): void {
    // A follower does not query: its awaiting gauges report 0 rather than stale values.
    this.#awaiting?.clearAwaiting();
  }

  restore(state: PollerState): void {
    this.#recorder.restoreHandled(state.handled);
    this.#awaiting?.restoreCounted(state.timeouts ?? []);
  }

  save(countFromMs: number): Pick<PollerState, 'handled' | 'timeouts'> {
    return {
      handled: this.#recorder.handledSince(countFromMs * 1000),
      ...(this.#awaiting !== undefined && { timeouts: this.#awaiting.countedSince(countFromMs * 1000) }),
    };
  }
}
