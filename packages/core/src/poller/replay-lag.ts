import type { Meter } from '@opentelemetry/api';
import type { Logger } from '../logger.js';
import { SELF_METRICS, instrumentOptions } from '../metric.js';

/**
 * Watches a replica source's replay lag: exposes it as `agentconn_source_replay_lag_seconds` and logs
 * one line when it grows beyond the overlap and one when it is back within it. The watermark is bounded
 * by what was replayed either way (nothing is lost); the lines tell that counts arrive late.
 */
export class ReplayLagMonitor {
  readonly #logger: Logger;
  readonly #thresholdMs: number;
  #lagMs: number | undefined;
  #laggingSinceMs: number | undefined;
  #maxLagMs = 0;

  constructor(meter: Meter, logger: Logger, thresholdMs: number) {
    this.#logger = logger;
    this.#thresholdMs = thresholdMs;
    const gauge = meter.createObservableGauge(SELF_METRICS.replayLag.name, instrumentOptions(SELF_METRICS.replayLag));
    gauge.addCallback((result) => {
      if (this.#lagMs !== undefined) result.observe(this.#lagMs / 1000);
    });
  }

  /** The lag a query reported (undefined: the source is not a replica), at `nowMs`. */
  update(lagMs: number | undefined, nowMs: number): void {
    this.#lagMs = lagMs === undefined || !Number.isFinite(lagMs) ? undefined : Math.max(0, lagMs);
    const lagging = this.#lagMs !== undefined && this.#lagMs > this.#thresholdMs;
    if (lagging && this.#laggingSinceMs === undefined) {
      this.#laggingSinceMs = nowMs;
      this.#maxLagMs = this.#lagMs ?? 0;
      this.#logger.warn('the standby replays behind its primary by more than the overlap; first connections are counted once replayed', {
        replay_lag_s: (this.#lagMs ?? 0) / 1000,
        overlap_s: this.#thresholdMs / 1000,
      });
    } else if (lagging) {
      this.#maxLagMs = Math.max(this.#maxLagMs, this.#lagMs ?? 0);
    } else if (this.#laggingSinceMs !== undefined) {
      this.#logger.info('the standby caught up with its primary', {
        replay_lag_s: (this.#lagMs ?? 0) / 1000,
        max_replay_lag_s: this.#maxLagMs / 1000,
        lagging_s: (nowMs - this.#laggingSinceMs) / 1000,
      });
      this.#laggingSinceMs = undefined;
    }
  }
}
