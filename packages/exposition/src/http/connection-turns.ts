import { MAX_WAITING_PER_CONNECTION } from './serving-limits.js';

interface Connection {
  /** A response of this connection is in progress. */
  busy: boolean;
  readonly waiting: Array<(go: boolean) => void>;
}

/**
 * One response in progress per connection. HTTP/1.1 answers a connection's requests in order, so a pipelined
 * request cannot get a byte before the one ahead of it is done; started at once it would only take a slot and
 * hold its bytes in memory meanwhile. Here it waits its turn, holding neither; past a few waiting, it is refused.
 */
export class ConnectionTurns {
  readonly #connections = new WeakMap<object, Connection>();

  /**
   * `true` when `connection` has no response in progress (it is now its turn), a promise when the request must
   * wait (true once its turn comes, false if the connection closes first), `false` when too many wait already.
   * Whoever got a turn calls `done` once its response ended.
   */
  take(connection: NodeJS.EventEmitter): true | false | Promise<boolean> {
    let state = this.#connections.get(connection);
    if (state === undefined) {
      const fresh: Connection = { busy: false, waiting: [] };
      this.#connections.set(connection, fresh);
      connection.once('close', () => {
        this.#connections.delete(connection);
        for (const wake of fresh.waiting.splice(0)) wake(false);
      });
      state = fresh;
    }
    if (!state.busy) {
      state.busy = true;
      return true;
    }
    if (state.waiting.length >= MAX_WAITING_PER_CONNECTION) return false;
    const waiting = state.waiting;
    return new Promise((resolve) => waiting.push(resolve));
  }

  /** The response in progress on `connection` ended: the next waiting request takes its turn. */
  done(connection: NodeJS.EventEmitter): void {
    const state = this.#connections.get(connection);
    if (state === undefined) return;
    if ((connection as { destroyed?: boolean }).destroyed === true) {
      // The connection is going: nothing waiting on it can be answered.
      for (const wake of state.waiting.splice(0)) wake(false);
      return;
    }
    const next = state.waiting.shift();
    if (next !== undefined) next(true);
    else state.busy = false;
  }
}
