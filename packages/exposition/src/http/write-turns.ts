/**
 * How long the writers of all responses together render and write in one turn of the event loop. With a fast
 * reader every socket write completes at once, so a writer that never waited would send a whole body before a
 * health check or a new scrape is even read.
 */
export const WRITE_TURN_MILLIS = 1;

/**
 * What the writers of all responses share in one turn of the event loop. Node accepts one new connection per turn
 * (libuv accepts once per readiness of the listening socket), so what a turn costs is what a connection queued
 * behind a burst of new ones waits, once for every connection ahead of it. Two things make a turn's cost:
 *
 * - the writers' own steps (rendering a chunk, writing it). A budget per writer would not bound it: with 50
 *   writers each taking its own millisecond, a turn costs 50 ms. A writer asks `spent()` before each step; once
 *   the writers of this turn have used `budgetMillis`, it awaits `next()`, which resolves in the next turn's check
 *   phase (`setImmediate`), after that turn's I/O callbacks (accepts, requests, health checks) ran. The budget
 *   starts when the waiting writers are resumed, in the order they began to wait: a writer that found the budget
 *   spent waits ahead of those that used it, so each gets its share. A writer woken by I/O (a socket's `drain`)
 *   before the check phase finds the budget spent unless the last check phase left some, and waits with the others.
 * - the bytes the writers left in their streams' buffers: libuv copies them into the sockets in the poll phase, as
 *   much as each socket takes, so a turn copies up to everything held. Each writer holds its `share()` of one
 *   write-ahead: n writers at once hold what one alone would.
 */
export class WriteTurns {
  readonly #budgetMillis: number;
  readonly #now: () => number;
  /** When this turn's writing began: -Infinity before any turn, so that a first step waits for one. */
  #turnStart = Number.NEGATIVE_INFINITY;
  #waiting: Array<() => void> = [];
  #scheduled = false;
  #writers = 0;

  constructor(budgetMillis = WRITE_TURN_MILLIS, now: () => number = () => performance.now()) {
    this.#budgetMillis = budgetMillis;
    this.#now = now;
  }

  /** A writer begins; it calls the function returned once it is done (writing or not). */
  startWriting(): () => void {
    this.#writers++;
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      this.#writers--;
    };
  }

  /** Writers between `startWriting` and its stop. */
  get writers(): number {
    return this.#writers;
  }

  /** A writer's part of `writeAheadBytes` held by all writers together. */
  share(writeAheadBytes: number): number {
    return Math.floor(writeAheadBytes / Math.max(1, this.#writers));
  }

  /** True once the writers of this turn have written for the budget: the caller awaits `next()` before its step. */
  spent(): boolean {
    return this.#now() - this.#turnStart >= this.#budgetMillis;
  }

  /** Resolves in the next turn of the event loop, after the waiters ahead of this one. */
  next(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#turn);
      }
    });
  }

  readonly #turn = (): void => {
    this.#scheduled = false;
    this.#turnStart = this.#now();
    const waiting = this.#waiting;
    this.#waiting = [];
    // Each resumes at its next microtask, in this order; those finding the budget spent queue for the next turn.
    for (const resume of waiting) resume();
  };
}

/** The budget every response of the process shares (one event loop, one budget). */
export const PROCESS_WRITE_TURNS = new WriteTurns();
