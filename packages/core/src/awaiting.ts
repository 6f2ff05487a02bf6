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
import { validateMetricOptions, type FirstConnectionMetricOptions } from './options.js';
import type { AgentBatch, AgentFirstConnectionTimeout, AwaitingAgentGroup } from './source.js';
import { toEpochMicros } from './timestamp.js';

export interface AwaitingAgentsRecorderOptions extends FirstConnectionMetricOptions {
  readonly meter?: Meter;
  /** Default: the global provider. */
  readonly meterProvider?: MeterProvider;
  readonly logger?: Logger;
  /**
   * Where the gauges' values come from at each collection. Default: the last `setAwaiting()` snapshot
   * (a poller's); the in-service tracker computes them from the agents it holds.
   */
  readonly collect?: () => readonly AwaitingAgentGroup[] | undefined;
  /** Upper bound on the agent ids remembered for count-once timeouts; the oldest are forgotten first. */
  readonly maxTrackedAgents?: number;
}

export type TimeoutOutcome = 'counted' | 'duplicate' | 'before_backfill' | 'invalid';

const DEFAULT_MAX_TRACKED_TIMEOUTS = 1_000_000;

/**
 * `coderd_agents_awaiting_first_connection`, `…_oldest_seconds` and
 * `coderd_agents_first_connection_timeouts_total`, with the histogram's labels. A timeout is counted
 * once per agent id, as the histogram observes once. Never throws into the caller.
 *
 * A label set that had waiting agents keeps reporting 0 when none waits any more (so a sum over it
 * drops to 0 instead of disappearing), up to the cardinality limit; past it, the overflow series.
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
  #snapshot: readonly AwaitingAgentGroup[] | undefined;
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
    const meter =
      options.meter ??
      (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION);
    this.#timeouts = meter.createCounter(AWAITING_METRICS.timeouts.name, instrumentOptions(AWAITING_METRICS.timeouts));
    this.#awaitingGauge = meter.createObservableGauge(AWAITING_METRICS.awaiting.name, instrumentOptions(AWAITING_METRICS.awaiting));
    this.#oldestGauge = meter.createObservableGauge(AWAITING_METRICS.oldestWait.name, instrumentOptions(AWAITING_METRICS.oldestWait));
    meter.addBatchObservableCallback((result) => {
      let groups: readonly AwaitingAgentGroup[] | undefined;
      try {
        groups = this.#collect === undefined ? this.#snapshot : this.#collect();
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

  /** Replace the gauges' values with a source's groups (they may carry more labels; they are folded). */
  setAwaiting(groups: readonly AwaitingAgentGroup[]): void {
    this.#snapshot = groups;
  }

  /** Every known label set reports 0 until the next `setAwaiting()` (this process does not observe). */
  clearAwaiting(): void {
    this.#snapshot = [];
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
   * A poller's batch: the timeouts (counted once, those before `countFromMs` skipped) and the awaiting
   * groups. Returns how many timeouts were counted.
   */
  recordBatch(batch: AgentBatch, countFromMs: number | undefined): number {
    if (batch.awaiting !== undefined) this.setAwaiting(batch.awaiting);
    let counted = 0;
    const countFromMicros = countFromMs === undefined ? undefined : countFromMs * 1000;
    for (const timeout of batch.timeouts ?? []) {
      if (this.recordTimeout(timeout, countFromMicros) === 'counted') counted++;
    }
    return counted;
  }

  /** Incremental pruning: a source queried from `instant` on never returns earlier timeouts again. */
  forgetTimedOutBefore(instant: Date): void {
    const limit = instant.getTime() * 1000;
    for (const [id, micros] of this.#counted) {
      if (micros < limit) this.#counted.delete(id);
    }
  }

  /** Full-scan pruning: forget every agent id that is not in `currentIds`. */
  retainOnly(currentIds: ReadonlySet<string>): void {
    for (const id of this.#counted.keys()) {
      if (!currentIds.has(id)) this.#counted.delete(id);
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
      this.#logger.warn('cardinality limit of label sets reached; new label sets go to the otel_metric_overflow series', {
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
