import type { Counter, Histogram, Meter } from '@opentelemetry/api';
import { POLL_DURATION_BUCKET_BOUNDARIES, SELF_METRICS, instrumentOptions } from '../metric.js';

export const TICK_OUTCOMES = ['success', 'error', 'skipped_not_leader'] as const;
export type TickOutcome = (typeof TICK_OUTCOMES)[number];

/**
 * How the poller is doing, as self-metrics: ticks by outcome, their duration, rows read, the last success
 * and the observe-once state's size; with leader election, whether this process observes.
 */
export class PollerSelfMetrics {
  readonly #polls: Counter;
  readonly #pollDuration: Histogram;
  readonly #rowsRead: Counter;
  #lastSuccessMs: number | undefined;

  constructor(meter: Meter, options: { readonly leaderElection: boolean; readonly trackedAgents: () => number }) {
    this.#polls = meter.createCounter(SELF_METRICS.polls.name, instrumentOptions(SELF_METRICS.polls));
    for (const outcome of TICK_OUTCOMES) {
      if (outcome !== 'skipped_not_leader' || options.leaderElection) this.#polls.add(0, { outcome });
    }
    this.#pollDuration = meter.createHistogram(SELF_METRICS.pollDuration.name, {
      ...instrumentOptions(SELF_METRICS.pollDuration),
      advice: { explicitBucketBoundaries: [...POLL_DURATION_BUCKET_BOUNDARIES] },
    });
    this.#rowsRead = meter.createCounter(SELF_METRICS.rowsRead.name, instrumentOptions(SELF_METRICS.rowsRead));
    const lastSuccess = meter.createObservableGauge(SELF_METRICS.lastSuccess.name, instrumentOptions(SELF_METRICS.lastSuccess));
    lastSuccess.addCallback((result) => {
      if (this.#lastSuccessMs !== undefined) result.observe(this.#lastSuccessMs / 1000);
    });
    const tracked = meter.createObservableGauge(SELF_METRICS.trackedAgents.name, instrumentOptions(SELF_METRICS.trackedAgents));
    tracked.addCallback((result) => result.observe(options.trackedAgents()));
  }

  /** Unix ms of the last successful tick, if any. */
  get lastSuccessMs(): number | undefined {
    return this.#lastSuccessMs;
  }

  /** `agentconn_leader`: 1 while `observing()`, else 0. Created after the others, so it comes last. */
  watchLeader(meter: Meter, observing: () => boolean): void {
    const gauge = meter.createObservableGauge(SELF_METRICS.leader.name, instrumentOptions(SELF_METRICS.leader));
    gauge.addCallback((result) => result.observe(observing() ? 1 : 0));
  }

  skipped(): void {
    this.#polls.add(1, { outcome: 'skipped_not_leader' });
  }

  succeeded(durationMs: number, rowsRead: number, nowMs: number): void {
    this.#rowsRead.add(rowsRead);
    this.#polls.add(1, { outcome: 'success' });
    this.#pollDuration.record(durationMs / 1000);
    this.#lastSuccessMs = nowMs;
  }

  failed(durationMs: number): void {
    this.#polls.add(1, { outcome: 'error' });
    this.#pollDuration.record(durationMs / 1000);
  }
}
