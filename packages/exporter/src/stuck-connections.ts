import type pg from 'pg';
import type { Logger } from '@agentconn/core';

/** How long an aborted poll's connections get to answer the cancel before they are taken for dead. */
const GRACE_MS = 2000;

export interface StuckConnections {
  /**
   * A poll was just aborted: connections checked out now (its query, the cancel sent for it) that are
   * still out after a grace period went silent without closing, so they are ended instead of holding
   * their pool slots until TCP gives up (hours).
   */
  endStuckAfterAbort(): void;
  /**
   * Resolves once no client is checked out (an aborted poll's cancel has reached the server and its
   * query ended), or after `timeoutMs`, ending those still out: the pool can then close at once.
   */
  drained(timeoutMs: number): Promise<void>;
}

/** Tracks which clients of `pool` are checked out since when, to end those an aborted poll left stuck. */
export function watchStuckConnections(pool: pg.Pool, logger: Logger): StuckConnections {
  const checkedOut = new Map<pg.PoolClient, number>();
  const waiters = new Set<() => void>();
  const returned = (client: pg.PoolClient) => {
    checkedOut.delete(client);
    if (checkedOut.size === 0) for (const wake of waiters) wake();
  };
  pool.on('acquire', (client) => checkedOut.set(client, performance.now()));
  pool.on('release', (_error, client) => returned(client));
  pool.on('remove', (client) => returned(client as pg.PoolClient));
  return {
    endStuckAfterAbort() {
      // The cancel is checked out right after the abort; a later poll's query comes after a retry delay.
      const abortedAt = performance.now() + 100;
      const timer = setTimeout(() => {
        for (const [client, since] of checkedOut) {
          if (since > abortedAt) continue;
          checkedOut.delete(client);
          logger.warn('ending a database connection that did not answer after its poll was aborted', {});
          // With a query in flight, end() destroys the socket; the pool then drops the client.
          void client.end().catch(() => undefined);
        }
      }, GRACE_MS);
      timer.unref();
    },
    async drained(timeoutMs) {
      if (checkedOut.size === 0) return;
      let wake: () => void = () => undefined;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        waiters.add(wake);
        timer = setTimeout(resolve, timeoutMs);
      });
      waiters.delete(wake);
      clearTimeout(timer);
      for (const client of checkedOut.keys()) void client.end().catch(() => undefined);
    },
  };
}
