import { metrics, type Meter, type MeterProvider } from '@opentelemetry/api';
import { diagLogger, type Logger } from '../logger.js';
import { INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION } from '../metric.js';
import type { AwaitingAgentsRecorder } from '../awaiting-recorder.js';
import type { FirstConnectionRecorder } from '../first-connection-recorder.js';
import type { FirstConnectionSource } from '../first-connection-source.js';
import { CountWindow } from './count-window.js';
import { FirstConnectionStream } from './first-connection-stream.js';
import { WorkspaceStartStream } from './start-stream.js';
import type { WorkspaceStartSource } from '../start/start-source.js';
import type { WorkspaceStartRecorder } from '../start/start-recorder.js';
import { LeaderTracking, type Leadership } from './leadership.js';
import { OutageLog } from './outage-log.js';
import type { DiscoveryMode, PollStream, StreamCounts, StreamRead } from './poll-stream.js';
import { POLLER_STATE_VERSION, type PollerState } from './poller-state.js';
import { ReplayLagMonitor } from './replay-lag.js';
import { PollerSelfMetrics, type TickOutcome } from './self-metrics.js';
import { nextTickDelayMs, TickSchedule } from './tick-schedule.js';

export type { DiscoveryMode } from './poll-stream.js';
export type { Leadership, Takeover } from './leadership.js';
export { TICK_OUTCOMES, type TickOutcome } from './self-metrics.js';

/** Which connections that happened before the poller started are counted. */
export type BackfillPolicy = 'all' | { readonly sinceMs: number };

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
  /**
   * `incremental` (default): each tick asks only for agents that connected since the last tick minus an
   * overlap window; the observe-once state holds only that window. `full-scan`: Coder PR #24179's rule,
   * every current agent each tick, state pruned to the current ids (kept as the benchmark's baseline).
   */
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
  /**
   * The whole start (`--phases`): each tick also reads the source's start builds, stages, script runs and
   * builds in progress, under the same window, leadership and saved state as the first connections.
   */
  readonly starts?: { readonly source: WorkspaceStartSource; readonly recorder: WorkspaceStartRecorder };
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

/**
 * Drives a source every interval and feeds the recorder. Ticks never overlap; timers never keep the
 * process alive. A tick: check leadership, read every stream from the window's lower bound, settle the
 * window on what the reads saw, publish progress, record, prune, save the state.
 */
export class FirstConnectionPoller {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #mode: DiscoveryMode;
  readonly #overlapMs: number;
  readonly #backfill: BackfillPolicy;
  readonly #leader: LeaderTracking | undefined;
  readonly #now: () => number;
  readonly #retryBaseMs: number;
  readonly #resumeFrom: PollerState | undefined;
  readonly #saveState: ((state: PollerState) => Promise<void> | void) | undefined;
  readonly #streams: readonly PollStream[];
  readonly #selfMetrics: PollerSelfMetrics;
  readonly #replayLag: ReplayLagMonitor;
  readonly #outage: OutageLog;
  readonly #schedule: TickSchedule;

  #inFlight: Promise<TickResult> | undefined;
  #abort: AbortController | undefined;
  /** Which connections count and where the next query starts; set when the poller starts. */
  #window: CountWindow | undefined;

  constructor(options: FirstConnectionPollerOptions) {
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
    this.#leader = options.leadership === undefined ? undefined : new LeaderTracking(options.leadership, this.#logger);
    this.#now = options.now ?? Date.now;
    this.#retryBaseMs = positive('retryBaseMs', options.retryBaseMs ?? 1000);
    this.#resumeFrom = options.resumeFrom;
    this.#saveState = options.saveState;
    this.#streams = [
      new FirstConnectionStream(options.source, options.recorder, options.awaiting),
      ...(options.starts === undefined ? [] : [new WorkspaceStartStream(options.starts.source, options.starts.recorder)]),
    ];

    const meter =
      options.meter ??
      (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION);
    const recorder = options.recorder;
    this.#selfMetrics = new PollerSelfMetrics(meter, { leaderElection: this.#leader !== undefined, trackedAgents: () => recorder.trackedAgents });
    this.#replayLag = new ReplayLagMonitor(meter, this.#logger, this.#overlapMs);
    if (this.#leader !== undefined) this.#selfMetrics.watchLeader(meter, () => this.#leader?.observing === true);
    this.#outage = new OutageLog(this.#logger, this.#intervalMs, this.#now);
    this.#schedule = new TickSchedule(async () => {
      const result = await this.tick();
      return result.outcome === 'error' ? nextTickDelayMs(this.#outage.failedTicks, this.#intervalMs, this.#retryBaseMs) : this.#intervalMs;
    }, this.#now);
  }

  get intervalMs(): number {
    return this.#intervalMs;
  }

  get mode(): DiscoveryMode {
    return this.#mode;
  }

  /** Unix ms of the last successful tick, if any. */
  get lastSuccessMs(): number | undefined {
    return this.#selfMetrics.lastSuccessMs;
  }

  get isLeader(): boolean {
    return this.#leader === undefined || this.#leader.observing;
  }

  /** Starts ticking: one tick now, then one every interval. Idempotent. */
  start(): void {
    this.#markStarted();
    this.#schedule.start();
  }

  /** Stops ticking, aborts a tick in flight and waits for it to settle. */
  async stop(): Promise<void> {
    this.#schedule.stop();
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
    let state: PollerState = {
      version: POLLER_STATE_VERSION,
      watermarkMs: window.watermarkMs,
      clockOffsetMs: window.clockOffsetMs,
      countFromMs,
      handled: [],
    };
    for (const stream of this.#streams) state = { ...state, ...stream.save(countFromMs) };
    return state;
  }

  #markStarted(): CountWindow {
    if (this.#window !== undefined) return this.#window;
    const options = { overlapMs: this.#overlapMs, intervalMs: this.#intervalMs };
    if (this.#resumeFrom !== undefined) {
      for (const stream of this.#streams) stream.restore(this.#resumeFrom);
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
      this.#logger.warn('saving the poller state failed', { error: error instanceof Error ? error.message : String(error) });
    }
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
      if (this.#leader !== undefined) {
        const { leader, window } = await this.#leader.check(abort.signal, startedMs, this.#markStarted(), () => {
          for (const stream of this.#streams) stream.follow();
        });
        this.#window = window;
        if (!leader) {
          this.#selfMetrics.skipped();
          this.#outage.recovered(); // the database answered: an outage, if any, is over
          return { outcome: 'skipped_not_leader', rowsRead: 0, observed: 0, dropped: 0, durationMs: performance.now() - startedHr };
        }
      }
      const tick = { signal: abort.signal, window: this.#markStarted(), startedMs, mode: this.#mode };
      const reads: StreamRead[] = [];
      for (const stream of this.#streams) reads.push(await stream.read(tick));
      const seen = combine(reads);
      const window = tick.window.afterQuery(seen.sourceTime?.getTime(), startedMs, seen.visibleUntilMs);
      this.#replayLag.update(seen.replayLagMs, this.#now());
      await this.#leader?.publish(window, abort.signal);
      const counts = addCounts(this.#streams.map((stream, i) => stream.record(reads[i]!, window)));
      this.#window = window;
      this.#streams.forEach((stream, i) => {
        stream.prune(reads[i]!, window);
      });
      const durationMs = performance.now() - startedHr;
      this.#selfMetrics.succeeded(durationMs, seen.rowsRead, this.#now());
      this.#outage.recovered();
      await this.#save();
      return {
        outcome: 'success',
        rowsRead: seen.rowsRead,
        observed: counts.observed,
        dropped: counts.dropped,
        durationMs,
        ...(counts.timeouts !== undefined && { timeouts: counts.timeouts }),
      };
    } catch (caught) {
      const error = caught instanceof Error ? caught : new Error(String(caught));
      const durationMs = performance.now() - startedHr;
      if (abort.signal.reason === STOPPED) {
        // Stopping is not a failure: nothing to count or report, the poll is simply not done.
        this.#logger.debug('poll aborted by stop', {});
        return { outcome: 'error', rowsRead: 0, observed: 0, dropped: 0, durationMs, error };
      }
      this.#selfMetrics.failed(durationMs);
      this.#outage.failed(error);
      return { outcome: 'error', rowsRead: 0, observed: 0, dropped: 0, durationMs, error };
    } finally {
      clearTimeout(timeout);
      if (this.#abort === abort) this.#abort = undefined;
    }
  }
}

/**
 * What the reads of one tick saw together: the earliest source clock (every read saw what was committed
 * before it), the least replayed point of a replica, the largest replay lag, and all rows.
 */
function combine(reads: readonly StreamRead[]): {
  sourceTime: Date | undefined;
  visibleUntilMs: number | null | undefined;
  replayLagMs: number | undefined;
  rowsRead: number;
} {
  let sourceTime: Date | undefined;
  let visibleUntilMs: number | null | undefined;
  let replayLagMs: number | undefined;
  let rowsRead = 0;
  for (const read of reads) {
    rowsRead += read.rowsRead;
    if (read.sourceTime !== undefined && (sourceTime === undefined || read.sourceTime.getTime() < sourceTime.getTime())) sourceTime = read.sourceTime;
    if (read.visibleUntil === null) visibleUntilMs = null;
    else if (read.visibleUntil !== undefined && visibleUntilMs !== null) {
      const ms = read.visibleUntil.getTime();
      visibleUntilMs = visibleUntilMs === undefined ? ms : Math.min(visibleUntilMs, ms);
    }
    if (read.replayLagMs !== undefined) replayLagMs = Math.max(replayLagMs ?? 0, read.replayLagMs);
  }
  return { sourceTime, visibleUntilMs, replayLagMs, rowsRead };
}

/** The streams' counts added up; `timeouts` only when a stream counts them. */
function addCounts(all: readonly StreamCounts[]): { observed: number; dropped: number; timeouts: number | undefined } {
  let observed = 0;
  let dropped = 0;
  let timeouts: number | undefined;
  for (const counts of all) {
    observed += counts.observed ?? 0;
    dropped += counts.dropped ?? 0;
    if (counts.timeouts !== undefined) timeouts = (timeouts ?? 0) + counts.timeouts;
  }
  return { observed, dropped, timeouts };
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(value)}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${String(value)}`);
  return value;
}
