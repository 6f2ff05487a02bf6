import type { AgentBatch, FirstConnectionSource, Leadership } from '@agentconn/core';
import { errorMessage } from '@agentconn/core';
import { withIsLeader } from './leadership-wrap.js';

/** Intervals without a successful poll (or follower lock check) after which the process is not ready. */
export const READY_WITHIN_INTERVALS = 3;

export interface ReadinessState {
  readonly ready: boolean;
  /** One line: why not ready, or what the last success was. */
  readonly reason: string;
  /** Unix ms of the last successful poll or follower lock check. */
  readonly lastOkMs: number | undefined;
  /** The last failure's message, while the process is failing. */
  readonly lastError: string | undefined;
}

/**
 * Ready once a poll succeeded within the last few intervals; a follower's successful lock check counts as such
 * (it polls nothing on purpose). Fed by wrapping the source and the leadership, so the poller stays as it is.
 */
export class Readiness {
  readonly #windowMs: number;
  readonly #now: () => number;
  #lastOkMs: number | undefined;
  #lastError: string | undefined;
  /** Whether the last success was a follower's lock check rather than a poll. */
  #following = false;
  #leader: () => string | undefined = () => undefined;

  readonly #scrub: (text: string) => string;
  readonly #waitingFor: () => string | undefined;

  /**
   * `scrub` cleans an error message before it is shown (on `/readyz` and `/`), e.g. of a password it echoed.
   * `waitingFor` says, while not ready, what the process waits for (e.g. `the database at db:5432`).
   */
  constructor(
    intervalMs: number,
    now: () => number = Date.now,
    scrub: (text: string) => string = (text) => text,
    waitingFor: () => string | undefined = () => undefined,
  ) {
    this.#windowMs = intervalMs * READY_WITHIN_INTERVALS;
    this.#now = now;
    this.#scrub = scrub;
    this.#waitingFor = waitingFor;
  }

  ok(): void {
    this.#lastOkMs = this.#now();
    this.#lastError = undefined;
    this.#following = false;
  }

  /** Who leads while this process follows, for the ready reason (e.g. `host exporter-0 pid 7 (…)`). */
  describeLeaderWith(describe: () => string | undefined): void {
    this.#leader = describe;
  }

  failed(error: unknown): void {
    this.#lastError = this.#scrub(errorMessage(error));
  }

  state(): ReadinessState {
    const lastOkMs = this.#lastOkMs;
    const lastError = this.#lastError;
    const cause = lastError === undefined ? '' : `: ${lastError}`;
    const waiting = (): string => {
      const what = this.#waitingFor();
      return what === undefined ? '' : ` (waiting for ${what})`;
    };
    if (lastOkMs === undefined) {
      return { ready: false, reason: `no successful poll yet${cause}${waiting()}`, lastOkMs, lastError };
    }
    const ageMs = this.#now() - lastOkMs;
    if (ageMs > this.#windowMs) {
      return { ready: false, reason: `no successful poll for ${(ageMs / 1000).toFixed(0)} s${cause}${waiting()}`, lastOkMs, lastError };
    }
    if (this.#following) {
      const leader = this.#leader() ?? 'another process';
      return { ready: true, reason: `following; leader is ${leader}; leader lock checked ${(ageMs / 1000).toFixed(1)} s ago`, lastOkMs, lastError };
    }
    return { ready: true, reason: `last successful poll ${(ageMs / 1000).toFixed(1)} s ago`, lastOkMs, lastError };
  }

  /** The source, reporting its successes and failures here. */
  watchSource(source: FirstConnectionSource): FirstConnectionSource {
    return {
      listAgents: async (query): Promise<AgentBatch> => {
        try {
          const batch = await source.listAgents(query);
          this.ok();
          return batch;
        } catch (error) {
          this.failed(error);
          throw error;
        }
      },
    };
  }

  /** The leadership, counting a follower's successful lock check as healthy. */
  watchLeadership(leadership: Leadership): Leadership {
    const isLeader = async (signal: AbortSignal): Promise<boolean> => {
      try {
        const leader = await leadership.isLeader(signal);
        if (!leader) {
          this.ok();
          this.#following = true;
        }
        return leader;
      } catch (error) {
        this.failed(error);
        throw error;
      }
    };
    return withIsLeader(leadership, isLeader);
  }
}
