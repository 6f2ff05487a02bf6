import { metrics, type Counter, type Histogram, type Meter, type MeterProvider, type ObservableGauge } from '@opentelemetry/api';
import { diagLogger, errorMessage, type Logger } from '../logger.js';
import {
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  POLL_DURATION_BUCKET_BOUNDARIES,
  SELF_METRICS,
  instrumentOptions,
} from '../metric.js';
import type { AwaitingAgentsRecorder } from '../awaiting-recorder.js';
import type { FirstConnectionRecorder } from '../first-connection-recorder.js';
import { MAX_EXCLUDED_AGENT_IDS, type AgentBatch, type AgentQuery, type FirstConnectionSource } from '../first-connection-source.js';
import { toEpochMicros } from '../timestamp.js';
import { abortReason } from '../abort.js';
import { CountWindow } from './count-window.js';
import { POLLER_STATE_VERSION, type PollerState } from './poller-state.js';
import { ReplayLagMonitor } from './replay-lag.js';

/**
 * `incremental`: each tick asks only for agents that connected since the last tick minus an overlap
 * window; the observe-once state holds only that window. `full-scan`: Coder PR #24179's rule, every current
 * agent each tick, state pruned to the current ids (kept as the benchmark's baseline).
 */
export type DiscoveryMode = 'incremental' | 'full-scan';

/** Which connections that happened before the poller started are counted. */
export type BackfillPolicy = 'all' | { readonly sinceMs: number };

/** Where observation resumes when this process becomes leader. */
export type Takeover =
  /** No other process led since this one last did: carry on from this process's own window. */
  | { readonly kind: 'continue' }
  /** The previous leader published that it observed everything before `fromMs` (epoch ms, source clock). */
  | { readonly kind: 'resume'; readonly fromMs: number }
  /** Not known: count from one interval before this process's last follower tick. */
  | { readonly kind: 'unknown' };

/** Decides whether this process observes (e.g. a PostgreSQL advisory lock). */
export interface Leadership {
  /**
   * Resolves true while this process holds leadership, false while another one does; rejects when it
   * cannot tell (e.g. the database is unreachable), which makes the tick an error and stops observing.
   */
  isLeader(signal: AbortSignal): Promise<boolean>;
  /** False as soon as leadership is known lost between checks (the leader gauge follows it). */
  readonly held?: boolean;
  /** Asked when this process becomes leader. Default `unknown`. */
  takeover?(): Takeover;
  /**
   * Called after each successful query as leader, before its rows are recorded, with the watermark
   * a successor should resume from. Rejecting makes the tick an error (nothing recorded) and stops
   * observing, so a leader records only what it proved it still led for.
   */
  publishProgress?(watermarkMs: number, signal: AbortSignal): Promise<void>;
}

export interface FirstConnectionPollerOptions {
  readonly source: FirstConnectionSource;
  readonly recorder: FirstConnectionRecorder;
  /** Where the poller's self-metrics go. Default: the global provider. */
  readonly meterProvider?: MeterProvider;
  readonly meter?: Meter;
  readonly logger?: Logger;
  /** Time between tick starts. Default 60 000 ms, Coder PR #24179's. */
  readonly intervalMs?: number;
  /** A tick's query is aborted after this long. Default: the interval, at most 30 000 ms. */
  readonly timeoutMs?: number;
  /** Default `incremental`. */
  readonly mode?: DiscoveryMode;
  /**
   * Incremental mode: how far behind the last tick each query reaches, for rows committed late and
   * for clocks of coderd replicas that differ. Default 300 000 ms (5 minutes).
   */
  readonly overlapMs?: number;
  /**
   * Default `{ sinceMs: 0 }`: agents that first connected before the poller started are not counted,
   * so a restart never re-counts them. `'all'` counts every current agent once (Coder PR #24179's behaviour).
   */
  readonly backfill?: BackfillPolicy;
  /**
   * Continue from the state an earlier run saved (`saveState`, `exportState()`): count from its bound,
   * with its handled agents, instead of by `backfill`, so a restart neither loses nor re-counts.
   */
  readonly resumeFrom?: PollerState;
  /**
   * Called after each successful tick with the state to resume from, and awaited within the tick, so
   * two saves never overlap. A rejection is logged as a warning; the tick still succeeded.
   */
  readonly saveState?: (state: PollerState) => Promise<void> | void;
  /**
   * When set, each tick also asks the source for the agents still waiting and the timeouts, and records
   * them: timeouts count once per agent under the same window as first connections (backfill, overlap,
   * takeover). A follower's awaiting gauges report 0.
   */
  readonly awaiting?: AwaitingAgentsRecorder;
  /** When set, ticks are skipped unless this process is the leader. */
  readonly leadership?: Leadership;
  /**
   * After a failed tick the next one comes sooner: this delay, doubled per failure, capped at the
   * interval. Default 1 000 ms.
   */
  readonly retryBaseMs?: number;
  /** The clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

export const TICK_OUTCOMES = ['success', 'error', 'skipped_not_leader'] as const;
export type TickOutcome = (typeof TICK_OUTCOMES)[number];

export interface TickResult {
  readonly outcome: TickOutcome;
  readonly rowsRead: number;
  readonly observed: number;
  readonly dropped: number;
  readonly durationMs: number;
  /** Timeouts counted by this tick (only with the `awaiting` option). */
  readonly timeouts?: number;
  readonly error?: Error;
}

const DEFAULT_INTERVAL_MS = 60_000;
/** The abort reason of a tick cut short by `stop()`. */
const STOPPED = new Error('poller stopped');
const DEFAULT_OVERLAP_MS = 300_000;
const MAX_DEFAULT_TIMEOUT_MS = 30_000;

/** Drives a source every interval and feeds the recorder. Ticks never overlap; timers never keep the process alive. */
export class FirstConnectionPoller {
  readonly #source: FirstConnectionSource;
  readonly #recorder: FirstConnectionRecorder;
  readonly #awaiting: AwaitingAgentsRecorder | undefined;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #mode: DiscoveryMode;
  readonly #overlapMs: number;
  readonly #backfill: BackfillPolicy;
  readonly #leadership: Leadership | undefined;
  readonly #now: () => number;
  readonly #retryBaseMs: number;
  readonly #resumeFrom: PollerState | undefined;
  readonly #saveState: ((state: PollerState) => Promise<void> | void) | undefined;

  readonly #polls: Counter;
  readonly #pollDuration: Histogram;
  readonly #rowsRead: Counter;
  readonly #lastSuccessGauge: ObservableGauge;
  readonly #trackedGauge: ObservableGauge;
  readonly #leaderGauge: ObservableGauge | undefined;
  readonly #replayLag: ReplayLagMonitor;

  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #inFlight: Promise<TickResult> | undefined;
  #abort: AbortController | undefined;
  /** Which connections count and where the next query starts; set when the poller starts. */
  #window: CountWindow | undefined;
  #lastSuccessMs: number | undefined;
  #failingSinceMs: number | undefined;
  #failedTicks = 0;
  #isLeader = false;

  constructor(options: FirstConnectionPollerOptions) {
    this.#source = options.source;
    this.#recorder = options.recorder;
    this.#awaiting = options.awaiting;
    this.#logger = options.logger ?? diagLogger;
    this.#intervalMs = positive('intervalMs', options.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.#timeoutMs = positive('timeoutMs', options.timeoutMs ?? Math.min(this.#intervalMs, MAX_DEFAULT_TIMEOUT_MS));
    this.#mode = options.mode ?? 'incremental';
    if (this.#mode !== 'incremental' && this.#mode !== 'full-scan') {
      throw new RangeError(`mode must be "incremental" or "full-scan", got "${String(this.#mode)}"`);
    }
    this.#overlapMs = nonNegative('overlapMs', options.overlapMs ?? DEFAULT_OVERLAP_MS);
    this.#backfill = options.backfill ?? { sinceMs: 0 };
    if (this.#backfill !== 'all') nonNegative('backfill.sinceMs', this.#backfill.sinceMs);
    this.#leadership = options.leadership;
    this.#now = options.now ?? Date.now;
    this.#retryBaseMs = positive('retryBaseMs', options.retryBaseMs ?? 1000);
    this.#resumeFrom = options.resumeFrom;
    this.#saveState = options.saveState;

    const meter =
      options.meter ??
      (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION);
    this.#polls = meter.createCounter(SELF_METRICS.polls.name, instrumentOptions(SELF_METRICS.polls));
    for (const outcome of TICK_OUTCOMES) {
      if (outcome !== 'skipped_not_leader' || options.leadership !== undefined) this.#polls.add(0, { outcome });
    }
    this.#pollDuration = meter.createHistogram(SELF_METRICS.pollDuration.name, {
      ...instrumentOptions(SELF_METRICS.pollDuration),
      advice: { explicitBucketBoundaries: [...POLL_DURATION_BUCKET_BOUNDARIES] },
    });
    this.#rowsRead = meter.createCounter(SELF_METRICS.rowsRead.name, instrumentOptions(SELF_METRICS.rowsRead));
    this.#lastSuccessGauge = meter.createObservableGauge(SELF_METRICS.lastSuccess.name, instrumentOptions(SELF_METRICS.lastSuccess));
    this.#lastSuccessGauge.addCallback((result) => {
      if (this.#lastSuccessMs !== undefined) result.observe(this.#lastSuccessMs / 1000);
    });
    this.#trackedGauge = meter.createObservableGauge(SELF_METRICS.trackedAgents.name, instrumentOptions(SELF_METRICS.trackedAgents));
    this.#trackedGauge.addCallback((result) => result.observe(this.#recorder.trackedAgents));
    this.#replayLag = new ReplayLagMonitor(meter, this.#logger, this.#overlapMs);
    if (this.#leadership !== undefined) {
      this.#leaderGauge = meter.createObservableGauge(SELF_METRICS.leader.name, instrumentOptions(SELF_METRICS.leader));
      this.#leaderGauge.addCallback((result) => result.observe(this.#observing ? 1 : 0));
    }
  }

  get intervalMs(): number {
    return this.#intervalMs;
  }

  get mode(): DiscoveryMode {
    return this.#mode;
  }

  /** Unix ms of the last successful tick, if any. */
  get lastSuccessMs(): number | undefined {
    return this.#lastSuccessMs;
  }

  get isLeader(): boolean {
    return this.#leadership === undefined || this.#observing;
  }

  get #observing(): boolean {
    return this.#isLeader && this.#leadership?.held !== false;
  }

  /** Starts ticking: one tick now, then one every interval. Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#markStarted();
    this.#schedule(0);
  }

  /** Stops ticking, aborts a tick in flight and waits for it to settle. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort(STOPPED);
    if (this.#inFlight !== undefined) await this.#inFlight;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Runs one tick now; if one is in flight, returns that one instead of starting another. */
  tick(): Promise<TickResult> {
    this.#markStarted();
    if (this.#inFlight !== undefined) return this.#inFlight;
    const run = this.#runTick().finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = run;
    return run;
  }

  /**
   * The state to resume from after a restart, or undefined before the first successful tick (and
   * right after a takeover, until the next one).
   */
  exportState(): PollerState | undefined {
    const window = this.#window;
    const countFromMs = window?.querySinceMs;
    if (window?.watermarkMs === undefined || countFromMs === undefined || window.countFromClock !== 'source') return undefined;
    return {
      version: POLLER_STATE_VERSION,
      watermarkMs: window.watermarkMs,
      clockOffsetMs: window.clockOffsetMs,
      countFromMs,
      handled: this.#recorder.handledSince(countFromMs * 1000),
      ...(this.#awaiting !== undefined && { timeouts: this.#awaiting.countedSince(countFromMs * 1000) }),
    };
  }

  #markStarted(): CountWindow {
    if (this.#window !== undefined) return this.#window;
    const options = { overlapMs: this.#overlapMs, intervalMs: this.#intervalMs };
    if (this.#resumeFrom !== undefined) {
      this.#recorder.restoreHandled(this.#resumeFrom.handled);
      this.#awaiting?.restoreCounted(this.#resumeFrom.timeouts ?? []);
      this.#window = CountWindow.resume(options, this.#resumeFrom);
    } else {
      this.#window = CountWindow.start(options, this.#backfill === 'all' ? undefined : this.#now() - this.#backfill.sinceMs);
    }
    return this.#window;
  }

  async #save(): Promise<void> {
    const state = this.#saveState === undefined ? undefined : this.exportState();
    if (state === undefined) return;
    try {
      await this.#saveState?.(state);
    } catch (error) {
      this.#logger.warn('saving the poller state failed', { error: errorMessage(error) });
    }
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const startedMs = this.#now();
      void this.tick().then((result) => {
        const elapsed = this.#now() - startedMs;
        this.#schedule(Math.max(0, this.#nextDelayMs(result) - elapsed));
      });
    }, delayMs);
    this.#timer.unref();
  }

  #nextDelayMs(result: TickResult): number {
    if (result.outcome !== 'error') return this.#intervalMs;
    const backoff = this.#retryBaseMs * 2 ** Math.min(this.#failedTicks - 1, 30);
    return Math.min(this.#intervalMs, backoff);
  }

  async #runTick(): Promise<TickResult> {
    const startedMs = this.#now();
    const startedHr = performance.now();
    const abort = new AbortController();
    this.#abort = abort;
    const timeout = setTimeout(
      () => abort.abort(new Error(`poll timed out after ${this.#timeoutMs} ms`)),
      this.#timeoutMs,
    );
    timeout.unref();
    try {
      if (this.#leadership !== undefined && !(await this.#checkLeadership(this.#leadership, abort.signal, startedMs))) {
        this.#polls.add(1, { outcome: 'skipped_not_leader' });
        this.#onSuccess(); // the database answered: an outage, if any, is over
        return { outcome: 'skipped_not_leader', rowsRead: 0, observed: 0, dropped: 0, durationMs: performance.now() - startedHr };
      }
      const query = this.#query(abort.signal, startedMs);
      const batch: AgentBatch = await this.#source.listAgents(query);
      if (abort.signal.aborted) throw abortReason(abort.signal);
      const visibleUntilMs = batch.visibleUntil === null ? null : batch.visibleUntil?.getTime();
      const window = this.#markStarted().afterQuery(batch.sourceTime?.getTime(), startedMs, visibleUntilMs);
      this.#replayLag.update(batch.replayLagMs, this.#now());
      await this.#publishProgress(window, abort.signal);
      const counts = this.#recordBatch(batch, window);
      const timeouts = this.#awaiting?.recordBatch(batch, { countFromMs: window.countFromMs, sinceMs: query.connectedSince?.getTime(), clockOffsetMs: window.clockOffsetMs });
      this.#window = window;
      this.#prune(batch, window);
      const durationMs = performance.now() - startedHr;
      this.#rowsRead.add(batch.agents.length);
      this.#polls.add(1, { outcome: 'success' });
      this.#pollDuration.record(durationMs / 1000);
      this.#lastSuccessMs = this.#now();
      this.#onSuccess();
      await this.#save();
      return { outcome: 'success', rowsRead: batch.agents.length, ...counts, durationMs, ...(timeouts !== undefined && { timeouts }) };
    } catch (caught) {
      const error = caught instanceof Error ? caught : new Error(String(caught));
      const durationMs = performance.now() - startedHr;
      if (abort.signal.reason === STOPPED) {
        // Stopping is not a failure: nothing to count or report, the poll is simply not done.
        this.#logger.debug('poll aborted by stop', {});
        return { outcome: 'error', rowsRead: 0, observed: 0, dropped: 0, durationMs, error };
      }
      this.#polls.add(1, { outcome: 'error' });
      this.#pollDuration.record(durationMs / 1000);
      this.#onFailure(error);
      return { outcome: 'error', rowsRead: 0, observed: 0, dropped: 0, durationMs, error };
    } finally {
      clearTimeout(timeout);
      if (this.#abort === abort) this.#abort = undefined;
    }
  }

  /**
   * Incremental: from the window's lower bound, without the agents already handled in it (the
   * overlap), so a steady tick reads about what is new while a row committed late is still returned.
   */
  #query(signal: AbortSignal, startedMs: number): AgentQuery {
    const since = this.#mode === 'incremental' ? this.#markStarted().querySinceMs : undefined;
    const awaiting = this.#awaiting?.nextQuery(startedMs + this.#markStarted().clockOffsetMs);
    const withAwaiting = awaiting === undefined ? {} : { awaiting };
    if (since === undefined) return { signal, ...withAwaiting };
    const excludeAgentIds = this.#recorder.handledIdsSince(since * 1000, MAX_EXCLUDED_AGENT_IDS);
    return { connectedSince: new Date(since), signal, ...(excludeAgentIds.length > 0 && { excludeAgentIds }), ...withAwaiting };
  }

  /** Whether this process leads now; a check that fails stops observing before the tick fails. */
  async #checkLeadership(leadership: Leadership, signal: AbortSignal, nowMs: number): Promise<boolean> {
    const leader = await leadership.isLeader(signal).catch((error: unknown) => {
      this.#loseLeadership();
      throw error;
    });
    if (signal.aborted) throw abortReason(signal);
    this.#onLeadership(leader, nowMs);
    return leader;
  }

  /** Before a leader records a poll, a successor must be able to resume after it. */
  async #publishProgress(window: CountWindow, signal: AbortSignal): Promise<void> {
    const publish = this.#leadership?.publishProgress?.bind(this.#leadership);
    if (publish === undefined || window.watermarkMs === undefined) return;
    await publish(window.watermarkMs, signal).catch((error: unknown) => {
      this.#loseLeadership();
      throw error;
    });
    if (signal.aborted) throw abortReason(signal);
  }

  #recordBatch(batch: AgentBatch, window: CountWindow): { observed: number; dropped: number } {
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
    return { observed, dropped };
  }

  /** Keeps the observe-once state to what the next query can return again. */
  #prune(batch: AgentBatch, window: CountWindow): void {
    if (this.#mode === 'full-scan') {
      this.#recorder.retainOnly(new Set(batch.agents.map((a) => a.agentId)));
      this.#awaiting?.retainOnly(new Set(batch.agents.filter((a) => a.timedOutAt != null).map((a) => a.agentId)));
      return;
    }
    const nextSince = window.querySinceMs;
    if (nextSince !== undefined) this.#recorder.forgetConnectedBefore(new Date(nextSince));
    if (nextSince !== undefined) this.#awaiting?.forgetTimedOutBefore(new Date(nextSince));
  }

  #onLeadership(leader: boolean, nowMs: number): void {
    const window = this.#markStarted();
    if (!leader) this.#window = window.followerTick(nowMs);
    // A follower does not query: its awaiting gauges report 0 rather than stale values.
    if (!leader) this.#awaiting?.clearAwaiting();
    if (leader === this.#isLeader) return;
    this.#isLeader = leader;
    this.#logger.info(leader ? 'became leader; observing first connections' : 'another process is leader; not observing', {
      leader,
    });
    if (leader) this.#window = this.#takeover(window);
  }

  #takeover(window: CountWindow): CountWindow {
    const takeover = this.#leadership?.takeover?.() ?? { kind: 'unknown' };
    if (takeover.kind === 'continue') return window;
    if (takeover.kind === 'resume') {
      this.#logger.info('resuming from the previous leader\'s last published poll', {
        resume_from: new Date(takeover.fromMs).toISOString(),
      });
      return window.resumeFrom(takeover.fromMs);
    }
    return window.takeover();
  }

  /** The leadership check or publish failed: this process cannot prove it leads, so it stops observing now. */
  #loseLeadership(): void {
    if (!this.#isLeader) return;
    this.#isLeader = false;
    this.#logger.warn('leadership not confirmed; not observing until it is', { leader: false });
  }

  #onSuccess(): void {
    if (this.#failingSinceMs !== undefined) {
      this.#logger.info('agent source recovered', {
        failed_ticks: this.#failedTicks,
        outage_s: (this.#now() - this.#failingSinceMs) / 1000,
      });
    }
    this.#failingSinceMs = undefined;
    this.#failedTicks = 0;
  }

  #onFailure(error: Error): void {
    this.#failedTicks++;
    if (this.#failingSinceMs === undefined) {
      this.#failingSinceMs = this.#now();
      // One line per outage, not per tick; the count goes on in agentconn_polls_total{outcome="error"}.
      // `err`: the Error itself, so that a structured logger can keep its code, cause and stack.
      this.#logger.error('polling the agent source failed; retrying every interval', {
        error: errorMessage(error),
        err: error,
        interval_s: this.#intervalMs / 1000,
      });
    } else {
      this.#logger.debug('polling the agent source failed again', { error: errorMessage(error), err: error, failed_ticks: this.#failedTicks });
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(value)}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${String(value)}`);
  return value;
}
