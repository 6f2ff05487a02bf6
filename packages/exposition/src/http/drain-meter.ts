import { MIN_DRAIN_BYTES_PER_SECOND } from './serving-limits.js';

/** How long a rate is measured over: long enough to span a few socket writes, short enough to act on. */
export const DRAIN_WINDOW_MILLIS = 1000;

/**
 * How fast one response's socket takes its bytes. Told each completed write (`taken`) and, on a regular tick,
 * whether bytes are waiting for the socket (`sample`). A rate counts only over a window in which bytes waited at
 * every sample: a response waiting for its own rendering (a collection, the byte budget) is not slow. The window
 * starts when bytes start to wait, so the kernel buffers that fill at once at the start do not count.
 */
export class DrainMeter {
  #taken = 0;
  /** The last completed write, or when bytes started to wait. */
  #progressAt: number;
  #waiting = false;
  #windowAt: number;
  #windowTaken = 0;
  #windowWaited = false;
  #rate: number | undefined;

  constructor(now: number) {
    this.#progressAt = now;
    this.#windowAt = now;
  }

  /** Bytes the socket has taken so far. */
  get taken(): number {
    return this.#taken;
  }

  /** Bytes per second over the last full window in which bytes waited throughout; undefined before one. */
  get rate(): number | undefined {
    return this.#rate;
  }

  /** True when the last full window's rate is below `MIN_DRAIN_BYTES_PER_SECOND`. */
  get slow(): boolean {
    return this.#rate !== undefined && this.#rate < MIN_DRAIN_BYTES_PER_SECOND;
  }

  /** A write of `bytes` completed: the socket took them. */
  took(bytes: number, now: number): void {
    this.#taken += bytes;
    this.#progressAt = now;
  }

  /** Called on every tick with whether bytes wait for the socket now. */
  sample(now: number, waiting: boolean): void {
    if (waiting && !this.#waiting) {
      this.#progressAt = now;
      this.#windowAt = now;
      this.#windowTaken = this.#taken;
      this.#windowWaited = true;
    }
    this.#waiting = waiting;
    if (!waiting) {
      // Nothing waits for this reader: whatever it was, it is not slow now.
      this.#windowWaited = false;
      this.#rate = undefined;
      return;
    }
    if (now - this.#windowAt >= DRAIN_WINDOW_MILLIS) {
      this.#rate = this.#windowWaited ? ((this.#taken - this.#windowTaken) * 1000) / (now - this.#windowAt) : undefined;
      this.#windowAt = now;
      this.#windowTaken = this.#taken;
      this.#windowWaited = true;
    }
  }

  /** How long bytes have waited without the socket taking any (0 while nothing waits). */
  stalledFor(now: number): number {
    return this.#waiting ? now - this.#progressAt : 0;
  }
}
