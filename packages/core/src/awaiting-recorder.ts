import { metrics, type Attributes, type Counter, type Meter, type MeterProvider, type ObservableGauge } from '@opentelemetry/api';
import { diagLogger, type Logger } from './logger.js';
import {
  AWAITING_METRICS,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  OVERFLOW_ATTRIBUTE,
  instrumentOptions,
  type LabelKey,
} from './metric.js';
import { validateMetricOptions, type FirstConnectionMetricOptions } from './metric-options.js';
import { AwaitingAgentSet } from './awaiting-set.js';
import type { AgentBatch, AgentFirstConnectionTimeout, AwaitingAgent, AwaitingAgentGroup } from './first-connection-source.js';
import { toEpochMicros } from './timestamp.js';
import type { CountedTimeout } from './poller/poller-state.js';

export interface AwaitingAgentsRecorderOptions extends FirstConnectionMetricOptions {
  readonly meter?: Meter;
  /** Default: the global provider. */
  readonly meterProvider?: MeterProvider;
  readonly logger?: Logger;
  /**
   * Where the gauges' values come from at each collection. Default: the waiting agents held from a
   * poller's batches; the in-service tracker computes them from the agents it holds.
   */
  readonly collect?: () => readonly AwaitingAgentGroup[] | undefined;
  /** Upper bound on the agent ids remembered for count-once timeouts; the oldest are forgotten first. */
  readonly maxTrackedAgents?: number;
  /**
   * A poller's full reconciliation of the waiting agents (deleted or superseded ones drop out) comes at
   * most this long after the previous one; in between each tick reads only what changed. Default 600 000.
   */
  readonly reconcileIntervalMs?: number;
  /** The clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

/** What a poller asks its source for, from `nextQuery()`. */
export interface AwaitingQuery {
  readonly full: boolean;
  readonly timeoutCandidates: readonly string[];
}

/** The poller's bookkeeping for one batch: the count-from bound and the query's lower bound (epoch ms, source clock). */
export interface AwaitingBatchWindow {
  readonly countFromMs: number | undefined;
  readonly sinceMs: number | undefined;
  /** The source's clock minus this process's, as the poller measured it (for the oldest wait at collection). */
  readonly clockOffsetMs?: number;
}

export type TimeoutOutcome = 'counted' | 'duplicate' | 'before_backfill' | 'invalid';

const DEFAULT_MAX_TRACKED_TIMEOUTS = 1_000_000;
const DEFAULT_RECONCILE_INTERVAL_MS = 600_000;
/** Most timeout candidates checked per tick; the rest wait for the next one. */
const MAX_CANDIDATES = 10_000;

/**
 * `coderd_agents_awaiting_first_connection`, `…_oldest_seconds` and
 * `coderd_agents_first_connection_timeouts_total`, with the histogram's labels. A timeout is counted
 * once per agent id, as the histogram observes once. Never throws into the caller.
 *
 * A label set that had waiting agents keeps reporting 0 when none waits any more (so a sum over it
 * drops to 0 instead of disappearing), up to the cardinality limit; past it, the overflow series.
 * Polled (`nextQuery()` / `recordBatch()`), it holds the waiting agents between full reconciliations:
 * a tick reads the agents created since the last one, drops those that connected, and checks only the
 * agents whose timeout came due (they may have been deleted meanwhile), so its cost follows what
 * changed, not how many wait. Memory: one small entry per waiting agent.
 *
 * After `clearAwaiting()` (a follower) every known label set reports 0: the SDK keeps reporting a
 * cumulative gauge's last value for a label set it saw, so 0 is what keeps `sum()` and `max()` over
 * replicas right. Before any snapshot the gauges report nothing.
 */
export class AwaitingAgentsRecorder {
  readonly #labels: readonly LabelKey[];
  readonly #labelSetCapacity: number;
  readonly #maxTracked: number;
  readonly #logger: Logger;
  readonly #collect: (() => readonly AwaitingAgentGroup[] | undefined) | undefined;
  readonly #timeouts: Counter;
  readonly #awaitingGauge: ObservableGauge;
  readonly #oldestGauge: ObservableGauge;
  /** Label sets ever reported (key → attributes), so they report 0 once empty. */
  readonly #labelSets = new Map<string, Attributes>();
  /** agent id → epoch µs of its timeout, for count-once. */
  readonly #counted = new Map<string, number>();
  readonly #set = new AwaitingAgentSet();
  readonly #reconcileIntervalMs: number;
  readonly #now: () => number;
  /** Undefined until a batch or a collect() source says what waits; [] while following. */
  #active: 'none' | 'polled' | 'following' = 'none';
  #lastFullMs: number | undefined;
  #pendingCandidates: string[] = [];
  #clockOffsetMs = 0;
  #overflowLogged = false;

  constructor(options: AwaitingAgentsRecorderOptions = {}) {
    const { labels, cardinalityLimit } = validateMetricOptions(options);
    this.#labels = labels;
    this.#labelSetCapacity = cardinalityLimit - 1;
    this.#maxTracked = options.maxTrackedAgents ?? DEFAULT_MAX_TRACKED_TIMEOUTS;
    if (!Number.isSafeInteger(this.#maxTracked) || this.#maxTracked < 1) {
      throw new RangeError(`maxTrackedAgents must be a positive integer, got ${String(options.maxTrackedAgents)}`);
    }
    this.#logger = options.logger ?? diagLogger;
    this.#collect = options.collect;
    this.#reconcileIntervalMs = options.reconcileIntervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS;
    if (!Number.isFinite(this.#reconcileIntervalMs) || this.#reconcileIntervalMs < 0) {
      throw new RangeError(`reconcileIntervalMs must be a non-negative number of milliseconds, got ${String(options.reconcileIntervalMs)}`);
    }
    this.#now = options.now ?? Date.now;
    const meter =
      options.meter ??
      (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION);
    this.#timeouts = meter.createCounter(AWAITING_METRICS.timeouts.name, instrumentOptions(AWAITING_METRICS.timeouts));
    this.#awaitingGauge = meter.createObservableGauge(AWAITING_METRICS.awaiting.name, instrumentOptions(AWAITING_METRICS.awaiting));
    this.#oldestGauge = meter.createObservableGauge(AWAITING_METRICS.oldestWait.name, instrumentOptions(AWAITING_METRICS.oldestWait));
    meter.addBatchObservableCallback((result) => {
      let groups: readonly AwaitingAgentGroup[] | undefined;
      try {
        groups = this.#collect !== undefined ? this.#collect() : this.#polledGroups();
      } catch (error) {
        this.#logger.warn('computing the awaiting agents failed; gauges skipped this collection', { error: String(error) });
        return;
      }
      if (groups === undefined) return;
      for (const group of this.#fold(groups).values()) {
        result.observe(this.#awaitingGauge, group.count, group.attributes);
        result.observe(this.#oldestGauge, group.oldestWaitSeconds, group.attributes);
      }
    }, [this.#awaitingGauge, this.#oldestGauge]);
  }

  get labels(): readonly LabelKey[] {
    return this.#labels;
  }

  /** How many agent ids the count-once state of timeouts holds. */
  get trackedTimeouts(): number {
    return this.#counted.size;
  }

  /** How many waiting agents a poller holds. */
  get awaitingAgents(): number {
    return this.#set.size;
  }

  /** Every known label set reports 0 until the next batch (this process does not observe); the next query is full. */
  clearAwaiting(): void {
    this.#set.clear();
    this.#active = this.#active === 'none' ? 'none' : 'following';
    this.#lastFullMs = undefined;
    this.#pendingCandidates = [];
  }

  /**
   * What the next query asks for: a full reconciliation when due, and the agents whose timeout is due
   * by `sourceNowMs` (this process's estimate of the source's clock). Candidates taken and not
   * answered (a failed tick) are asked for again.
   */
  nextQuery(sourceNowMs: number): AwaitingQuery {
    const full = this.#lastFullMs === undefined || sourceNowMs - this.#lastFullMs >= this.#reconcileIntervalMs;
    const room = Math.max(0, MAX_CANDIDATES - this.#pendingCandidates.length);
    this.#pendingCandidates.push(...this.#set.takeDue((sourceNowMs + 1000) * 1000, room));
    return { full, timeoutCandidates: [...this.#pendingCandidates] };
  }

  hasCountedTimeout(agentId: string): boolean {
    return this.#counted.has(agentId);
  }

  /**
   * Count one agent's timeout, once per agent id. With `countFromMicros`, a timeout before it is
   * remembered but not counted (it happened before this process started, as the backfill policy says).
   */
  recordTimeout(timeout: AgentFirstConnectionTimeout, countFromMicros?: number): TimeoutOutcome {
    if (timeout === null || typeof timeout !== 'object' || typeof timeout.agentId !== 'string' || timeout.agentId.length === 0) {
      this.#logger.warn('agent timeout record has no agentId; not counted', {});
      return 'invalid';
    }
    const { agentId } = timeout;
    if (this.#counted.has(agentId)) return 'duplicate';
    const micros = toEpochMicros(timeout.timedOutAt);
    if (micros === undefined) {
      this.#remember(agentId, Date.now() * 1000);
      this.#logger.warn('agent timeout instant is not a valid timestamp; not counted', { agent_id: agentId, value: String(timeout.timedOutAt) });
      return 'invalid';
    }
    this.#remember(agentId, micros);
    if (countFromMicros !== undefined && micros < countFromMicros) return 'before_backfill';
    this.#timeouts.add(1, this.#attributes(timeout.labels));
    return 'counted';
  }

  /**
   * A poller's batch: the waiting agents (all of them after a reconciliation, else the new ones), the
   * connected agents (they stop waiting; one that connected after its timeout counts that timeout), and
   * the answers for the timeout candidates. Timeouts before `countFromMs` are not counted; a timeout of
   * a connected agent counts only inside the query's window (`sinceMs`), as its first connection.
   * Returns how many timeouts were counted.
   */
  recordBatch(batch: AgentBatch, window: AwaitingBatchWindow): number {
    if (batch.awaitingAgents === undefined) return 0;
    const countFromMicros = window.countFromMs === undefined ? undefined : window.countFromMs * 1000;
    const sinceMicros = window.sinceMs === undefined ? undefined : window.sinceMs * 1000;
    const sourceMs = batch.sourceTime?.getTime();
    if (window.clockOffsetMs !== undefined) this.#clockOffsetMs = window.clockOffsetMs;
    else if (sourceMs !== undefined && Number.isFinite(sourceMs)) this.#clockOffsetMs = sourceMs - this.#now();
    this.#active = 'polled';
    let counted = 0;

    if (batch.awaitingReconcileError !== undefined) {
      this.#logger.warn('reading all waiting agents failed; the awaiting gauges keep what the ticks read, and it is tried again at the next tick', {
        error: batch.awaitingReconcileError,
        ...(this.#lastFullMs === undefined && { gauges: 'not reported until one full read succeeds' }),
      });
    }
    if (batch.awaitingComplete === true) {
      const current = new Set(batch.awaitingAgents.map((a) => a.agentId));
      for (const id of [...this.#set.ids()]) if (!current.has(id)) this.#set.delete(id);
      this.#lastFullMs = sourceMs ?? this.#now();
    }
    for (const agent of batch.awaitingAgents) {
      this.#addWaiting(agent, countFromMicros);
      // Read now and already past its timeout (new since the last tick, or a reconciliation after start).
      const entry = agent.due === true ? this.#set.get(agent.agentId) : undefined;
      if (entry !== undefined && !entry.timeoutHandled && agent.timedOutAt !== null) {
        entry.timeoutHandled = true;
        if (this.recordTimeout({ agentId: agent.agentId, timedOutAt: agent.timedOutAt, labels: agent.labels }, countFromMicros) === 'counted') counted++;
      }
    }

    for (const agent of batch.agents) {
      const entry = this.#set.get(agent.agentId);
      const timedOutAt = agent.timedOutAt;
      if (timedOutAt !== null && timedOutAt !== undefined && entry?.timeoutHandled !== true) {
        const micros = toEpochMicros(timedOutAt);
        const inWindow = micros !== undefined && (sinceMicros === undefined || micros >= sinceMicros);
        if (inWindow && this.recordTimeout({ agentId: agent.agentId, timedOutAt, labels: agent.labels }, countFromMicros) === 'counted') counted++;
      }
      this.#set.delete(agent.agentId);
    }

    const answered = new Set<string>();
    for (const check of batch.timeoutChecks ?? []) {
      answered.add(check.agentId);
      const entry = this.#set.get(check.agentId);
      if (entry === undefined || entry.timeoutHandled) continue;
      if (!check.due) {
        this.#set.putBack(check.agentId);
        continue;
      }
      entry.timeoutHandled = true;
      if (this.recordTimeout(check, countFromMicros) === 'counted') counted++;
    }
    // A candidate the source did not answer for no longer waits: connected, deleted or superseded.
    for (const id of this.#pendingCandidates) if (!answered.has(id)) this.#set.delete(id);
    this.#pendingCandidates = [];
    return counted;
  }

  #addWaiting(agent: AwaitingAgent, countFromMicros: number | undefined): void {
    const createdMicros = toEpochMicros(agent.createdAt);
    if (createdMicros === undefined) return;
    const timeoutMicros = agent.timedOutAt === null ? undefined : toEpochMicros(agent.timedOutAt);
    const held = this.#set.get(agent.agentId);
    if (held !== undefined) {
      if (held.createdMicros === createdMicros && held.timeoutMicros === timeoutMicros) return;
      // Coder never rewrites them, but a row read again with other values replaces what was held.
      this.#set.delete(agent.agentId);
    }
    const attributes = this.#attributes(agent.labels);
    this.#set.add(agent.agentId, {
      createdMicros,
      timeoutMicros,
      labelKey: JSON.stringify(attributes),
      timeoutHandled:
        timeoutMicros === undefined ||
        this.#counted.has(agent.agentId) ||
        (countFromMicros !== undefined && timeoutMicros < countFromMicros),
    });
  }

  #polledGroups(): AwaitingAgentGroup[] | undefined {
    if (this.#active === 'none') return undefined;
    if (this.#active === 'following') return [];
    // Until one full read succeeded the held agents are only the new ones: a partial count is not reported.
    if (this.#lastFullMs === undefined) return undefined;
    const nowMicros = (this.#now() + this.#clockOffsetMs) * 1000;
    const groups: AwaitingAgentGroup[] = [];
    for (const [key, count, oldestMicros] of this.#set.groups()) {
      const attributes = this.#labelSets.get(key);
      if (attributes === undefined) continue;
      groups.push({ labels: attributes as Partial<Record<LabelKey, string>>, count, oldestWaitSeconds: Math.max(0, (nowMicros - oldestMicros) / 1e6) });
    }
    return groups;
  }

  /** The timeouts counted (or ruled out) at or after `micros`, for a poller's saved state. */
  countedSince(micros: number): CountedTimeout[] {
    const result: CountedTimeout[] = [];
    for (const [agentId, timedOutMicros] of this.#counted) if (timedOutMicros >= micros) result.push({ agentId, timedOutMicros });
    return result;
  }

  /** Remembers timeouts a previous run counted (from `countedSince`), so they are not counted again. */
  restoreCounted(timeouts: Iterable<CountedTimeout>): void {
    for (const { agentId, timedOutMicros } of timeouts) this.#remember(agentId, timedOutMicros);
  }

  /** Incremental pruning: a source queried from `instant` on never returns earlier timeouts again. */
  forgetTimedOutBefore(instant: Date): void {
    const limit = instant.getTime() * 1000;
    for (const [id, micros] of this.#counted) {
      if (micros < limit) this.#counted.delete(id);
    }
  }

  /** Full-scan pruning: forget every agent id that is not in `currentIds` (or still waiting). */
  retainOnly(currentIds: ReadonlySet<string>): void {
    for (const id of this.#counted.keys()) {
      if (!currentIds.has(id) && this.#set.get(id) === undefined) this.#counted.delete(id);
    }
  }

  #remember(agentId: string, micros: number): void {
    this.#counted.set(agentId, micros);
    if (this.#counted.size > this.#maxTracked) {
      const oldest = this.#counted.keys().next();
      if (!oldest.done) this.#counted.delete(oldest.value);
    }
  }

  /** Sums counts and takes the longest wait per configured label set; known sets absent now report 0. */
  #fold(groups: readonly AwaitingAgentGroup[]): Map<string, { attributes: Attributes; count: number; oldestWaitSeconds: number }> {
    const folded = new Map<string, { attributes: Attributes; count: number; oldestWaitSeconds: number }>();
    for (const [key, attributes] of this.#labelSets) folded.set(key, { attributes, count: 0, oldestWaitSeconds: 0 });
    for (const group of groups) {
      if (!Number.isFinite(group.count) || group.count <= 0) continue;
      const attributes = this.#attributes(group.labels);
      const key = JSON.stringify(attributes);
      const entry = folded.get(key);
      const wait = Number.isFinite(group.oldestWaitSeconds) ? Math.max(0, group.oldestWaitSeconds) : 0;
      if (entry === undefined) folded.set(key, { attributes, count: group.count, oldestWaitSeconds: wait });
      else {
        entry.count += group.count;
        entry.oldestWaitSeconds = Math.max(entry.oldestWaitSeconds, wait);
      }
    }
    return folded;
  }

  /** The configured labels of a label set, capped at the cardinality limit over the process lifetime. */
  #attributes(labels: Readonly<Partial<Record<LabelKey, string>>> | undefined): Attributes {
    const attributes: Attributes = {};
    for (const key of this.#labels) {
      const value = labels?.[key];
      attributes[key] = typeof value === 'string' ? value : '';
    }
    const key = JSON.stringify(attributes);
    if (this.#labelSets.has(key)) return attributes;
    if (this.#labelSets.size < this.#labelSetCapacity) {
      this.#labelSets.set(key, attributes);
      return attributes;
    }
    if (!this.#overflowLogged) {
      this.#overflowLogged = true;
      this.#logger.warn('awaiting agents: cardinality limit of label sets reached; new label sets of the awaiting gauges and timeouts go to the otel_metric_overflow series', {
        metric: AWAITING_METRICS.awaiting.name,
        cardinality_limit: this.#labelSetCapacity + 1,
      });
    }
    this.#labelSets.set(OVERFLOW_KEY, OVERFLOW_ATTRIBUTES);
    return OVERFLOW_ATTRIBUTES;
  }
}

const OVERFLOW_ATTRIBUTES: Attributes = Object.freeze({ [OVERFLOW_ATTRIBUTE]: true });
const OVERFLOW_KEY = JSON.stringify(OVERFLOW_ATTRIBUTES);
