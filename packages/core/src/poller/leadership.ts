import type { Logger } from '../logger.js';
import { abortReason } from '../abort.js';
import type { CountWindow } from './count-window.js';

/** Where observation resumes when this process becomes leader. */
export type Takeover =
  /** No other process led since this one last did: carry on from this process's own window. */
  | { readonly kind: 'continue' }
  /** The previous leader published that it observed everything before `fromMs` (epoch ms, source clock). */
  | { readonly kind: 'resume'; readonly fromMs: number }
  /** Not known: count from one interval before this process's last follower tick. */
  | { readonly kind: 'unknown' };

/** Decides whether this process observes (e.g. a PostgreSQL advisory lock). */
export interface Leadership {
  /**
   * Resolves true while this process holds leadership, false while another one does; rejects when it
   * cannot tell (e.g. the database is unreachable), which makes the tick an error and stops observing.
   */
  isLeader(signal: AbortSignal): Promise<boolean>;
  /** False as soon as leadership is known lost between checks (the leader gauge follows it). */
  readonly held?: boolean;
  /** Asked when this process becomes leader. Default `unknown`. */
  takeover?(): Takeover;
  /**
   * Called after each successful query as leader, before its rows are recorded, with the watermark
   * a successor should resume from. Rejecting makes the tick an error (nothing recorded) and stops
   * observing, so a leader records only what it proved it still led for.
   */
  publishProgress?(watermarkMs: number, signal: AbortSignal): Promise<void>;
}

/**
 * A poller's side of leadership: whether this process observes now, and what becoming leader or
 * follower does to the window. A check or a publish that fails stops observing before the tick fails.
 */
export class LeaderTracking {
  readonly #leadership: Leadership;
  readonly #logger: Logger;
  #isLeader = false;

  constructor(leadership: Leadership, logger: Logger) {
    this.#leadership = leadership;
    this.#logger = logger;
  }

  /** Leader by the last check, and the lock not known lost since. */
  get observing(): boolean {
    return this.#isLeader && this.#leadership.held !== false;
  }

  /**
   * Whether this process leads now, and the window to go on with: a follower tick is marked on it, and
   * becoming leader moves it as the takeover says. `onFollow` runs at every follower tick.
   */
  async check(signal: AbortSignal, nowMs: number, window: CountWindow, onFollow: () => void): Promise<{ leader: boolean; window: CountWindow }> {
    const leader = await this.#leadership.isLeader(signal).catch((error: unknown) => {
      this.#lose();
      throw error;
    });
    if (signal.aborted) throw abortReason(signal);
    let next = window;
    if (!leader) {
      next = window.followerTick(nowMs);
      onFollow();
    }
    if (leader === this.#isLeader) return { leader, window: next };
    this.#isLeader = leader;
    this.#logger.info(leader ? 'became leader; observing first connections' : 'another process is leader; not observing', {
      leader,
    });
    if (leader) next = this.#takeover(window);
    return { leader, window: next };
  }

  /** Before a leader records a poll, a successor must be able to resume after it. */
  async publish(window: CountWindow, signal: AbortSignal): Promise<void> {
    const publish = this.#leadership.publishProgress?.bind(this.#leadership);
    if (publish === undefined || window.watermarkMs === undefined) return;
    await publish(window.watermarkMs, signal).catch((error: unknown) => {
      this.#lose();
      throw error;
    });
    if (signal.aborted) throw abortReason(signal);
  }

  #takeover(window: CountWindow): CountWindow {
    const takeover = this.#leadership.takeover?.() ?? { kind: 'unknown' };
    if (takeover.kind === 'continue') return window;
    if (takeover.kind === 'resume') {
      this.#logger.info('resuming from the previous leader\'s last published poll', {
        resume_from: new Date(takeover.fromMs).toISOString(),
      });
      return window.resumeFrom(takeover.fromMs);
    }
    return window.takeover();
  }

  /** The check or publish failed: this process cannot prove it leads, so it stops observing now. */
  #lose(): void {
    if (!this.#isLeader) return;
    this.#isLeader = false;
    this.#logger.warn('leadership not confirmed; not observing until it is', { leader: false });
  }
}
