import { hostname } from 'node:os';
import type { Meter } from '@opentelemetry/api';
import { SELF_METRICS, type Leadership, type Logger } from '@agentconn/core';
import { describeLabels, describeLeader, describePublishedPoll, type LeaderInfo } from './leader-identity.js';
import { withIsLeader } from './leadership-wrap.js';

/** What the watch reads of the lock: who else leads, and this process's instance. */
export interface WatchedLock {
  readonly leader: LeaderInfo | undefined;
  readonly instance: string;
}

export interface LeaderWatchOptions {
  readonly lock: WatchedLock;
  readonly logger: Logger;
  /** This replica's labels, to compare with the leader's. */
  readonly labels: readonly string[];
  /** This replica's poll interval: a leader's published poll older than a few of its own intervals is stale. */
  readonly intervalMs: number;
  /** For `agentconn_leader_info`. */
  readonly meter: Meter;
  readonly now?: () => number;
}

/** A published poll this many of the leader's intervals old means the leader stopped polling. */
const STALE_INTERVALS = 3;

/**
 * Makes leadership visible: a follower logs who leads (host, pid, application_name, labels, last
 * published poll) at start and whenever the leader changes, warns when the leader's labels differ
 * from its own or its published poll is stale, and `agentconn_leader_info` names the leader.
 */
export class LeaderWatch {
  readonly #options: LeaderWatchOptions;
  #following: string | undefined;
  #leading = false;
  #warned = new Set<string>();
  #firstSeenMs = 0;

  constructor(options: LeaderWatchOptions) {
    this.#options = options;
    const { name, description, unit } = SELF_METRICS.leaderInfo;
    const gauge = options.meter.createObservableGauge(name, { description, unit });
    gauge.addCallback((result) => {
      const leader = this.#options.lock.leader;
      if (this.#leading) {
        result.observe(1, { leader_instance: options.lock.instance, leader_host: hostname(), leader_pid: String(process.pid) });
      } else if (leader !== undefined) {
        result.observe(1, {
          leader_instance: leader.instance ?? '',
          leader_host: leader.identity?.host ?? leader.clientAddr ?? '',
          leader_pid: leader.identity === undefined ? '' : String(leader.identity.pid),
        });
      }
    });
  }

  /** Who leads, for `/` and `/readyz`: `this process`, the leader's description, or undefined before any check. */
  describe(): string | undefined {
    if (this.#leading) return 'this process';
    const leader = this.#options.lock.leader;
    return leader === undefined ? undefined : describeLeader(leader);
  }

  /** The leadership, observed after each check. */
  wrap(leadership: Leadership): Leadership {
    return withIsLeader(leadership, async (signal) => {
      const leader = await leadership.isLeader(signal);
      this.#observe(leader);
      return leader;
    });
  }

  #observe(leading: boolean): void {
    this.#leading = leading;
    if (leading) {
      this.#following = undefined;
      return;
    }
    const leader = this.#options.lock.leader;
    if (leader === undefined) return;
    const { logger, labels, intervalMs } = this.#options;
    const now = (this.#options.now ?? Date.now)();
    const key = `${leader.instance ?? ''}/${leader.backendPid}`;
    const fields = {
      leader_host: leader.identity?.host ?? null,
      leader_pid: leader.identity?.pid ?? null,
      leader_application_name: leader.applicationName,
      leader_backend_pid: leader.backendPid,
      leader_client_addr: leader.clientAddr,
      leader_labels: leader.identity?.labels.join(',') ?? null,
      leader_version: leader.identity?.version ?? null,
      last_published_poll: leader.publishedPollMs === undefined ? null : new Date(leader.publishedPollMs).toISOString(),
    };
    if (key !== this.#following) {
      this.#following = key;
      this.#warned.clear();
      this.#firstSeenMs = now;
      logger.info(
        `following; leader is ${describeLeader(leader)}, labels ${describeLabels(leader)}, last published poll ${describePublishedPoll(leader)}`,
        fields,
      );
    }
    const warnOnce = (kind: string, message: string, extra: Record<string, unknown>): void => {
      if (this.#warned.has(kind)) return;
      this.#warned.add(kind);
      logger.warn(message, { ...fields, ...extra });
    };
    if (leader.instance === undefined) {
      warnOnce('foreign', `the leader lock is held by a session that is no agentconn exporter (${describeLeader(leader)})`, {
        fix: 'another program uses the same advisory lock key: end that session, or give this exporter its own database',
      });
      return;
    }
    const theirs = leader.identity?.labels;
    if (theirs !== undefined && [...theirs].sort().join(',') !== [...labels].sort().join(',')) {
      warnOnce('labels', `the leader exports the labels ${theirs.join(',')} and this replica ${labels.join(',')}: on failover the series change labels`, {
        labels: labels.join(','),
        fix: 'give every replica the same --labels',
      });
    }
    const leaderInterval = leader.identity?.intervalMs ?? intervalMs;
    const staleAfterMs = STALE_INTERVALS * leaderInterval;
    const stale =
      leader.publishedPollAgeMs !== undefined ? leader.publishedPollAgeMs > staleAfterMs : now - this.#firstSeenMs > staleAfterMs;
    if (stale) {
      warnOnce('stale', `the leader holds the lock but its last published poll is ${describePublishedPoll(leader)}: it is not polling`, {
        fix: `look at the leader's /readyz and log (${describeLeader(leader)}); stopping it hands the lock to a replica that polls`,
      });
    } else {
      this.#warned.delete('stale');
    }
  }
}
