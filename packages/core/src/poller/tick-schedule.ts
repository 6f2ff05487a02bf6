/**
 * When ticks run: one at once, then one every interval measured from tick start to tick start; after
 * a failure sooner, with a delay doubled per failure and capped at the interval. Timers are `unref()`ed,
 * so they never keep the process alive.
 */
export class TickSchedule {
  readonly #run: () => Promise<number>;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  /** `run` runs one tick and resolves with the delay the next one should start after (from this one's start). */
  constructor(run: () => Promise<number>, now: () => number) {
    this.#run = run;
    this.#now = now;
  }

  /** Schedules a tick now. Idempotent; false when already running. */
  start(): boolean {
    if (this.#running) return false;
    this.#running = true;
    this.#schedule(0);
    return true;
  }

  /** No tick starts after this; one in flight is the caller's to abort. */
  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const startedMs = this.#now();
      void this.#run().then((nextDelayMs) => {
        const elapsed = this.#now() - startedMs;
        this.#schedule(Math.max(0, nextDelayMs - elapsed));
      });
    }, delayMs);
    this.#timer.unref();
  }
}

/** The delay before the next tick: the interval, or after `failedTicks` failures in a row the backoff. */
export function nextTickDelayMs(failedTicks: number, intervalMs: number, retryBaseMs: number): number {
  if (failedTicks === 0) return intervalMs;
  const backoff = retryBaseMs * 2 ** Math.min(failedTicks - 1, 30);
  return Math.min(intervalMs, backoff);
}
