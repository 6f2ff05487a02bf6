import { metrics, type Attributes, type Counter, type Meter, type MeterProvider, type ObservableGauge } from '@opentelemetry/api';
import { diagLogger, type Logger } from './logger.js';
import {
  AWAITING_METRICS,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  instrumentOptions,
  type LabelKey,
} from './metric.js';
import { validateMetricOptions, type FirstConnectionMetricOptions } from './metric-options.js';
import { AwaitingAgentSet } from './awaiting-set.js';
import type { AgentBatch, AgentFirstConnectionTimeout, AwaitingAgent, AwaitingAgentGroup } from './first-connection-source.js';
import { toEpochMicros } from './timestamp.js';
import type { CountedTimeout } from './poller/poller-state.js';
import { LabelSetLimit, OVERFLOW_ATTRIBUTES } from './label-set-limit.js';

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
 * The gauges report only the label sets that have waiting agents now: a label set whose last waiting
 * agent connected or left is not observed at the next collection, so the series follow the waiting
 * population, not its history. (A reader must collect observable gauges as deltas for such a series to
 * leave; with cumulative temporality the OpenTelemetry JS SDK keeps reporting its last value.) The
 * cardinality limit is one `LabelSetLimit` for the gauges and one for the timeouts: past it, label sets go
 * to the overflow series, summed (and the longest wait taken), counted and logged once per instrument.
 * Polled (`nextQuery()` / `recordBatch()`), it holds the waiting agents between full reconciliations:
 * a tick reads the agents created since the last one, drops those that connected, and checks only the
 * agents whose timeout came due (they may have been deleted meanwhile), so its cost follows what
 * changed, not how many wait. Memory: one small entry per waiting agent.
 *
 * After `clearAwaiting()` (a follower) the gauges report nothing, so `sum()` and `max()` over replicas
 * count the leader's agents only. Before any snapshot the gauges report nothing.
 */
export class AwaitingAgentsRecorder {
  readonly #labels: readonly LabelKey[];
  readonly #maxTracked: number;
  readonly #logger: Logger;
  readonly #collect: (() => readonly AwaitingAgentGroup[] | undefined) | undefined;
  readonly #timeouts: Counter;
  readonly #awaitingGauge: ObservableGauge;
  readonly #oldestGauge: ObservableGauge;
  readonly #timeoutLimit: LabelSetLimit;
  /** The two gauges always see the same label sets: one limit, counted for each. */
  readonly #gaugeLimit: LabelSetLimit;
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

  constructor(options: AwaitingAgentsRecorderOptions = {}) {
    const { labels, cardinalityLimit } = validateMetricOptions(options);
    this.#labels = labels;
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
    const limit = { cardinalityLimit, meter, logger: this.#logger, logFields: { labels: labels.join(',') } };
    this.#timeoutLimit = new LabelSetLimit({ instrument: AWAITING_METRICS.timeouts.name, ...limit });
    this.#gaugeLimit = new LabelSetLimit({ instrument: [AWAITING_METRICS.awaiting.name, AWAITING_METRICS.oldestWait.name], ...limit });
    meter.addBatchObservableCallback((result) => {
      let groups: readonly AwaitingAgentGroup[] | undefined;
      try {
        groups = this.#collect !== undefined ? this.#collect() : this.#polledGroups();
      } catch (error) {
        this.#logger.warn('computing the awaiting agents failed; gauges skipped this collection', { error: String(error) });
        return;
      }
      if (groups === undefined) return;
      for (const group of this.#fold(groups)) {
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

  /** The gauges report nothing until the next batch (this process does not observe); the next query is full. */
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
    const { key, attributes } = this.#labelSet(timeout.labels);
    this.#timeouts.add(1, this.#timeoutLimit.attributes(key, attributes));
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
    const { key, attributes } = this.#labelSet(agent.labels);
    this.#set.add(agent.agentId, {
      createdMicros,
      timeoutMicros,
      labelKey: key,
      labels: attributes,
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
    for (const [labels, count, oldestMicros] of this.#set.groups()) {
      groups.push({ labels, count, oldestWaitSeconds: Math.max(0, (nowMicros - oldestMicros) / 1e6) });
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

  /**
   * Sums counts and takes the longest wait per configured label set, for the label sets with waiting agents
   * only; those past the cardinality limit are folded into the overflow series the same way.
   */
  #fold(groups: readonly AwaitingAgentGroup[]): GaugeValues[] {
    const byKey = new Map<string, GaugeValues>();
    for (const group of groups) {
      if (!Number.isFinite(group.count) || group.count <= 0) continue;
      const { key, attributes } = this.#labelSet(group.labels);
      const wait = Number.isFinite(group.oldestWaitSeconds) ? Math.max(0, group.oldestWaitSeconds) : 0;
      const entry = byKey.get(key);
      if (entry === undefined) byKey.set(key, { attributes, count: group.count, oldestWaitSeconds: wait });
      else addTo(entry, group.count, wait);
    }
    const values: GaugeValues[] = [];
    let overflow: GaugeValues | undefined;
    let folded = 0;
    for (const [key, entry] of byKey) {
      const own = this.#gaugeLimit.slot(key, entry.attributes);
      if (own !== undefined) {
        values.push(own === entry.attributes ? entry : { ...entry, attributes: own });
        continue;
      }
      folded++;
      if (overflow === undefined) {
        overflow = { attributes: OVERFLOW_ATTRIBUTES, count: 0, oldestWaitSeconds: 0 };
        values.push(overflow);
      }
      addTo(overflow, entry.count, entry.oldestWaitSeconds);
    }
    this.#gaugeLimit.overflowed(folded);
    return values;
  }

  /** The configured labels of a label set ('' for a missing one) and the key that identifies it. */
  #labelSet(labels: Readonly<Partial<Record<LabelKey, string>>> | undefined): { key: string; attributes: Record<string, string> } {
    const attributes: Record<string, string> = {};
    for (const key of this.#labels) {
      const value = labels?.[key];
      attributes[key] = typeof value === 'string' ? value : '';
    }
    return { key: JSON.stringify(attributes), attributes };
  }
}

interface GaugeValues {
  attributes: Attributes;
  count: number;
  oldestWaitSeconds: number;
}

function addTo(values: GaugeValues, count: number, waitSeconds: number): void {
  values.count += count;
  values.oldestWaitSeconds = Math.max(values.oldestWaitSeconds, waitSeconds);
}
