import { errorMessage, type Logger } from '../logger.js';

/**
 * One error line per outage, not per tick, and one line when the source answers again; counts the
 * failed ticks in a row (the schedule backs off by them). The count goes on in
 * `agentconn_polls_total{outcome="error"}`.
 */
export class OutageLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #failingSinceMs: number | undefined;
  #failedTicks = 0;

  constructor(logger: Logger, intervalMs: number, now: () => number) {
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** Failed ticks since the last one that succeeded (0 while none failed). */
  get failedTicks(): number {
    return this.#failedTicks;
  }

  /** The source answered (a follower's leadership check counts too): an outage, if any, is over. */
  recovered(): void {
    if (this.#failingSinceMs !== undefined) {
      this.#logger.info('agent source recovered', {
        failed_ticks: this.#failedTicks,
        outage_s: (this.#now() - this.#failingSinceMs) / 1000,
      });
    }
    this.#failingSinceMs = undefined;
    this.#failedTicks = 0;
  }

  failed(error: Error): void {
    this.#failedTicks++;
    if (this.#failingSinceMs === undefined) {
      this.#failingSinceMs = this.#now();
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
