import type { CountWindow } from './count-window.js';
import type { PollerState } from './poller-state.js';

/** Which rows a stream reads: what changed since the window's lower bound, or everything current. */
export type DiscoveryMode = 'incremental' | 'full-scan';

/** What a stream is told when a tick reads. */
export interface StreamTick {
  readonly signal: AbortSignal;
  /** The window before this tick's reads: its lower bound, its clock offset, its count-from bound. */
  readonly window: CountWindow;
  /** This process's clock when the tick started (epoch ms). */
  readonly startedMs: number;
  readonly mode: DiscoveryMode;
}

/** What every stream's read reports besides its rows: the source's clock and how far it has replayed. */
export interface StreamRead {
  /** Rows the source returned. */
  readonly rowsRead: number;
  /** The source's clock at the read; undefined: not reported. */
  readonly sourceTime?: Date | undefined;
  /** A replica's replayed point (see `AgentBatch.visibleUntil`). */
  readonly visibleUntil?: Date | null | undefined;
  /** A replica's replay lag in ms. */
  readonly replayLagMs?: number | undefined;
}

/** Counts a stream's recording adds to the tick's result. */
export interface StreamCounts {
  readonly observed?: number;
  readonly dropped?: number;
  readonly timeouts?: number;
}

/**
 * One kind of event a poller reads each tick, under the tick's window, leadership and saved state: the
 * poller reads every stream, settles the window on what the reads saw, publishes progress, then has
 * each stream record and prune. A stream never sees a timer, a lock or a file.
 */
export interface PollStream<Read extends StreamRead = StreamRead> {
  /** Reads what changed since `tick.window`'s lower bound (or everything, in `full-scan`). */
  read(tick: StreamTick): Promise<Read>;
  /** Records a read under the window the tick settled on. Never throws. */
  record(read: Read, window: CountWindow): StreamCounts;
  /** Keeps only the observe-once state that the next read can return again. */
  prune(read: Read, window: CountWindow): void;
  /** This process does not lead: gauges report nothing stale, the next read starts afresh. */
  follow(): void;
  /** Continues from a saved state: what it handled is not counted again. */
  restore(state: PollerState): void;
  /** This stream's part of the state to save: what it handled from `countFromMs` (epoch ms, source clock) on. */
  save(countFromMs: number): Partial<PollerState>;
}
