/**
 * The poller's time bookkeeping: which first connections count and where the next incremental query
 * starts. Immutable and free of I/O and clocks: every transition takes the instants it needs and
 * returns a new window, so the rules can be tested without a poller, a source or a timer.
 *
 * Two clocks meet here. The bounds a process sets itself (at start, at a takeover) are in its own
 * clock; connections and the watermark are in the source's. A bound set in the local clock is moved
 * onto the source's clock with the offset measured by the next query, so a skewed local clock neither
 * drops nor re-counts.
 */
export interface CountWindowState {
  /** Connections before this instant (epoch ms) are not counted; undefined: all are. */
  readonly countFromMs: number | undefined;
  /** The clock `countFromMs` is in: this process's until a query measured the offset, then the source's. */
  readonly countFromClock: 'local' | 'source';
  /** Source clock minus this process's clock, from the last query that reported the source's time. */
  readonly clockOffsetMs: number;
  /** Epoch ms of the source's clock at the last successful query (this process's if it reported none). */
  readonly watermarkMs: number | undefined;
  /** Epoch ms (this process's clock) of the last tick at which another process was leader. */
  readonly lastFollowerTickMs: number | undefined;
}

export interface CountWindowOptions {
  /** How far behind the watermark each incremental query reaches. */
  readonly overlapMs: number;
  /** Time between ticks: how long before our last follower tick the old leader may have last ticked. */
  readonly intervalMs: number;
}

export class CountWindow implements CountWindowState {
  readonly countFromMs: number | undefined;
  readonly countFromClock: 'local' | 'source';
  readonly clockOffsetMs: number;
  readonly watermarkMs: number | undefined;
  readonly lastFollowerTickMs: number | undefined;
  readonly #options: CountWindowOptions;

  private constructor(options: CountWindowOptions, state: CountWindowState) {
    this.#options = options;
    this.countFromMs = state.countFromMs;
    this.countFromClock = state.countFromClock;
    this.clockOffsetMs = state.clockOffsetMs;
    this.watermarkMs = state.watermarkMs;
    this.lastFollowerTickMs = state.lastFollowerTickMs;
  }

  /** A window that counts connections from `countFromLocalMs` (this process's clock), or all when undefined. */
  static start(options: CountWindowOptions, countFromLocalMs: number | undefined): CountWindow {
    return new CountWindow(options, {
      countFromMs: countFromLocalMs,
      countFromClock: countFromLocalMs === undefined ? 'source' : 'local',
      clockOffsetMs: 0,
      watermarkMs: undefined,
      lastFollowerTickMs: undefined,
    });
  }

  /**
   * A window that continues a saved one (see `PollerState`): counting from its bound and watermark,
   * both on the source's clock, as if the process had never stopped.
   */
  static resume(options: CountWindowOptions, saved: { countFromMs: number; watermarkMs: number; clockOffsetMs: number }): CountWindow {
    return new CountWindow(options, {
      countFromMs: saved.countFromMs,
      countFromClock: 'source',
      clockOffsetMs: saved.clockOffsetMs,
      watermarkMs: saved.watermarkMs,
      lastFollowerTickMs: undefined,
    });
  }

  /** The lower bound of the next incremental query (epoch ms), or undefined for every connection. */
  get querySinceMs(): number | undefined {
    const { overlapMs } = this.#options;
    // Not yet on the source's clock: reach back by the overlap too, then filter once the offset is known.
    if (this.countFromClock === 'local' && this.countFromMs !== undefined) return this.countFromMs - overlapMs;
    const fromWatermark = this.watermarkMs === undefined ? undefined : this.watermarkMs - overlapMs;
    if (fromWatermark === undefined) return this.countFromMs;
    if (this.countFromMs === undefined) return fromWatermark;
    return Math.max(fromWatermark, this.countFromMs);
  }

  /**
   * After a successful query that started at `tickStartedMs` (this process's clock) and saw the
   * source's clock at `sourceMs` (undefined or not finite: the source did not say): the offset is
   * measured, the count-from bound is on the source's clock, and the watermark moves, but never past
   * `visibleUntilMs` (a replica's replayed point; `null`: nothing known replayed, it stays).
   */
  afterQuery(sourceMs: number | undefined, tickStartedMs: number, visibleUntilMs?: number | null): CountWindow {
    const known = sourceMs !== undefined && Number.isFinite(sourceMs);
    const clockOffsetMs = known ? sourceMs - tickStartedMs : this.clockOffsetMs;
    const countFromMs =
      this.countFromClock === 'local' && this.countFromMs !== undefined ? this.countFromMs + clockOffsetMs : this.countFromMs;
    return this.#with({
      countFromMs,
      countFromClock: 'source',
      clockOffsetMs,
      watermarkMs: boundedWatermark(known ? sourceMs : tickStartedMs, visibleUntilMs, this.watermarkMs),
    });
  }

  /** Another process was leader at `nowMs` (this process's clock). */
  followerTick(nowMs: number): CountWindow {
    return this.#with({ lastFollowerTickMs: nowMs });
  }

  /**
   * This process just became leader. The old leader held the lock at our last follower tick, and it
   * ticked at most one interval before that: counting from there misses nothing the old leader had not
   * observed; what it observed in that last interval may be counted again (the documented failover
   * bound). Without a follower tick (leader from the start) nothing changes.
   */
  takeover(): CountWindow {
    if (this.lastFollowerTickMs === undefined) return this;
    const takeoverFromMs = this.lastFollowerTickMs - this.#options.intervalMs;
    const currentLocalMs =
      this.countFromMs === undefined || this.countFromClock === 'local' ? this.countFromMs : this.countFromMs - this.clockOffsetMs;
    return this.#with({
      countFromMs: currentLocalMs === undefined ? takeoverFromMs : Math.max(currentLocalMs, takeoverFromMs),
      countFromClock: 'local',
      watermarkMs: undefined,
    });
  }

  /**
   * This process just became leader and the previous one published that it had observed everything
   * before `progressMs` (its watermark, source clock): count from exactly there, whatever this
   * process's own start bound, so nothing it left is lost and nothing it counted is counted again.
   */
  resumeFrom(progressMs: number): CountWindow {
    return this.#with({ countFromMs: progressMs, countFromClock: 'source', watermarkMs: progressMs });
  }

  /** Whether a connection at `connectedMicros` (epoch µs, source clock) is before the count-from bound. */
  isBeforeCountFrom(connectedMicros: number): boolean {
    return this.countFromMs !== undefined && connectedMicros < this.countFromMs * 1000;
  }

  #with(change: Partial<CountWindowState>): CountWindow {
    return new CountWindow(this.#options, { ...this, ...change });
  }
}

function boundedWatermark(clockMs: number, visibleUntilMs: number | null | undefined, previousMs: number | undefined): number | undefined {
  if (visibleUntilMs === null || (visibleUntilMs !== undefined && !Number.isFinite(visibleUntilMs))) return previousMs;
  return visibleUntilMs === undefined ? clockMs : Math.min(clockMs, visibleUntilMs);
}
