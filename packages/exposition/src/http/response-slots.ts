import type { ServerResponse } from 'node:http';
import { DrainMeter } from './drain-meter.js';

/** Why a response was cut before its end. */
export type CutReason = 'slot' | 'memory' | 'drain' | 'deadline';

/** A `/metrics` response in flight: it holds a slot until it closes. */
export class InFlightResponse {
  readonly response: ServerResponse;
  readonly meter: DrainMeter;
  readonly startedAt: number;
  #cut: CutReason | undefined;

  constructor(response: ServerResponse, now: number) {
    this.response = response;
    this.meter = new DrainMeter(now);
    this.startedAt = now;
  }

  /** Why it was cut, if it was. */
  get cutReason(): CutReason | undefined {
    return this.#cut;
  }

  /** Marks it cut (once); true the first time. */
  markCut(reason: CutReason): boolean {
    if (this.#cut !== undefined) return false;
    this.#cut = reason;
    return true;
  }
}

export interface ResponseSlotsOptions {
  readonly max: number;
  /** A response whose socket takes nothing this long while bytes wait is cut. */
  readonly drainTimeoutMillis: number;
  /** Cuts a response (resets its connection); called once per response. */
  readonly cut: (entry: InFlightResponse, reason: CutReason) => void;
  /** Called on every tick while responses are in flight. */
  readonly onTick?: () => void;
}

/**
 * The `/metrics` responses in flight, at most `max`. A regular tick measures how fast each one's socket takes its
 * bytes and cuts those that took nothing for the drain timeout. When every slot is taken, a new scrape takes the
 * slot of the slowest response that drains below the minimum rate (see `DrainMeter`), so readers too slow to ever
 * finish cannot lock the scraper out; when none is slow, it may wait a moment (a response just started shows its
 * rate within a second), and is refused after that.
 */
export class ResponseSlots {
  readonly #max: number;
  readonly #drainTimeoutMillis: number;
  readonly #cut: (entry: InFlightResponse, reason: CutReason) => void;
  readonly #onTick: (() => void) | undefined;
  readonly #inFlight = new Set<InFlightResponse>();
  /** New scrapes waiting a moment for a slot (to free, or to be taken from a response found slow). */
  #waiting: Array<{ readonly response: ServerResponse; readonly until: number; readonly resolve: (entry: InFlightResponse | undefined) => void }> = [];
  readonly #tickMillis: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: ResponseSlotsOptions) {
    if (!Number.isSafeInteger(options.max) || options.max < 1) {
      throw new RangeError(`maxConcurrentScrapes must be an integer of at least 1, got ${options.max}`);
    }
    this.#max = options.max;
    this.#drainTimeoutMillis = options.drainTimeoutMillis;
    this.#cut = options.cut;
    this.#onTick = options.onTick;
    this.#tickMillis = Math.max(25, Math.min(250, Math.floor(options.drainTimeoutMillis / 4)));
  }

  /** Responses in flight. */
  get active(): number {
    return this.#inFlight.size;
  }

  /**
   * A slot for `response`: a free one, or the slot of the slowest slow response in flight (which is cut). Undefined
   * when every slot is taken by a response that drains fast enough. The caller releases it once (`release`).
   */
  acquire(response: ServerResponse, now = Date.now()): InFlightResponse | undefined {
    if (this.#inFlight.size >= this.#max) {
      let slowest: InFlightResponse | undefined;
      for (const entry of this.#inFlight) {
        if (!entry.meter.slow || entry.cutReason !== undefined) continue;
        if (slowest === undefined || (entry.meter.rate ?? 0) < (slowest.meter.rate ?? 0)) slowest = entry;
      }
      if (slowest === undefined) return undefined;
      this.#inFlight.delete(slowest);
      this.#cutOnce(slowest, 'slot');
    }
    const entry = new InFlightResponse(response, now);
    this.#inFlight.add(entry);
    this.#timer ??= this.#startTicking();
    return entry;
  }

  /**
   * As `acquire`, but when no slot can be had now the scrape waits up to `waitMillis` for one: a response in flight
   * may end, or show within its first second that it drains too slowly. Resolves undefined if none came.
   */
  acquireWithin(response: ServerResponse, waitMillis: number, now = Date.now()): InFlightResponse | Promise<InFlightResponse | undefined> | undefined {
    const entry = this.acquire(response, now);
    if (entry !== undefined || waitMillis <= 0) return entry;
    return new Promise((resolve) => this.#waiting.push({ response, until: now + waitMillis, resolve }));
  }

  release(entry: InFlightResponse): void {
    if (!this.#inFlight.delete(entry)) return;
    this.#serveWaiting(Date.now());
    if (this.#inFlight.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Gives the waiting scrapes, first come first, the slots that can be had now; refuses those that waited enough. */
  #serveWaiting(now: number): void {
    while (this.#waiting.length > 0) {
      const first = this.#waiting[0];
      if (first === undefined) break;
      if (first.response.destroyed) {
        this.#waiting.shift();
        first.resolve(undefined);
        continue;
      }
      const entry = this.acquire(first.response, now);
      if (entry === undefined) break;
      this.#waiting.shift();
      first.resolve(entry);
    }
    const still = [];
    for (const waiter of this.#waiting) {
      if (waiter.until <= now) waiter.resolve(undefined);
      else still.push(waiter);
    }
    this.#waiting = still;
  }

  #startTicking(): NodeJS.Timeout {
    const timer = setInterval(() => this.#tick(Date.now()), this.#tickMillis);
    timer.unref();
    return timer;
  }

  #tick(now: number): void {
    for (const entry of this.#inFlight) {
      const response = entry.response;
      entry.meter.sample(now, !response.destroyed && response.writableLength > 0);
      if (entry.meter.stalledFor(now) >= this.#drainTimeoutMillis) this.#cutOnce(entry, 'drain');
    }
    this.#serveWaiting(now);
    this.#onTick?.();
  }

  #cutOnce(entry: InFlightResponse, reason: CutReason): void {
    if (entry.markCut(reason)) this.#cut(entry, reason);
  }

  /** Cuts `entry` for `reason` (the memory budget's choice); it keeps its slot until it closes. */
  cut(entry: InFlightResponse, reason: CutReason): void {
    this.#cutOnce(entry, reason);
  }
}
