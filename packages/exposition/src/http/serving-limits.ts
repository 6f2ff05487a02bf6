import type { ServerResponse } from 'node:http';

/** Defaults of the serving bounds (the reader's and the server's options). */
export const DEFAULT_MAX_CONCURRENT_SCRAPES = 10;
export const DEFAULT_RESPONSE_TIMEOUT_MILLIS = 60_000;
export const DEFAULT_RENDER_SHARE_MILLIS = 5_000;
export const DEFAULT_HEADERS_TIMEOUT_MILLIS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MILLIS = 30_000;
/** Seconds a scraper refused for too many concurrent scrapes is told to wait. */
export const RETRY_AFTER_SECONDS = 1;

/** A count of responses in flight, refused beyond `max`. */
export class ConcurrencyLimit {
  readonly #max: number;
  #active = 0;

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`maxConcurrentScrapes must be an integer of at least 1, got ${max}`);
    this.#max = max;
  }

  get active(): number {
    return this.#active;
  }

  /** Takes a slot if one is free; the caller gives it back with the returned function (once). */
  tryAcquire(): (() => void) | undefined {
    if (this.#active >= this.#max) return undefined;
    this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
    };
  }
}

/** Validates a timeout option: a positive integer of milliseconds within Node's timer range. */
export function timeoutOption(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > 2_147_483_647) {
    throw new RangeError(`${name} must be an integer from 1 to 2147483647 ms, got ${value}`);
  }
  return value;
}

/**
 * Cuts the response's connection if it has not finished within `millis` (a reader too slow to take the body):
 * the scraper sees a failed scrape. Returns a function that cancels the deadline; it is cancelled on close too.
 */
export function responseDeadline(response: ServerResponse, millis: number, onExpire: () => void): () => void {
  const timer = setTimeout(() => {
    onExpire();
    response.destroy();
  }, millis);
  timer.unref();
  const cancel = (): void => clearTimeout(timer);
  response.once('close', cancel);
  return cancel;
}
