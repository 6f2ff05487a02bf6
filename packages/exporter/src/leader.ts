import pg from 'pg';
import { errorMessage, settleOrAbort, type Leadership, type Logger } from '@agentconn/core';

/** Default advisory lock key: the first 8 bytes of sha256("agentconn:first-connection-leader"), as int8. */
export const DEFAULT_LEADER_LOCK_KEY = '-8203292330991340775';

export interface AdvisoryLockLeadershipOptions {
  readonly connectionString: string;
  readonly logger: Logger;
  /** Replicas that should elect one leader share the key. */
  readonly lockKey?: string;
  readonly connectTimeoutMs?: number;
}

/**
 * Leader election with a PostgreSQL session-level advisory lock held on a dedicated connection. When
 * the leader's process dies or its connection drops, PostgreSQL ends the session and releases the lock;
 * a follower's next `pg_try_advisory_lock` takes it. Works with a SELECT-only role.
 */
export class AdvisoryLockLeadership implements Leadership {
  readonly #options: AdvisoryLockLeadershipOptions;
  #client: pg.Client | undefined;
  #held = false;

  constructor(options: AdvisoryLockLeadershipOptions) {
    this.#options = options;
  }

  get held(): boolean {
    return this.#held;
  }

  async isLeader(signal: AbortSignal): Promise<boolean> {
    const client = await this.#connection(signal);
    try {
      if (this.#held) {
        // The lock lives as long as the session: a round trip proves the session is still ours.
        await settleOrAbort(client.query('SELECT 1'), signal);
        return true;
      }
      const result = await settleOrAbort(
        client.query<{ acquired: boolean }>('SELECT pg_try_advisory_lock($1::int8) AS acquired', [
          this.#options.lockKey ?? DEFAULT_LEADER_LOCK_KEY,
        ]),
        signal,
      );
      this.#held = result.rows[0]?.acquired === true;
      return this.#held;
    } catch (error) {
      this.#drop(client);
      throw new Error(`leader lock check failed: ${errorMessage(error)}`, { cause: error });
    }
  }

  /** Releases the lock (by ending the session) so a follower takes over at once. */
  async release(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#held = false;
    if (client !== undefined) await client.end().catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  async #connection(signal: AbortSignal): Promise<pg.Client> {
    if (this.#client !== undefined) return this.#client;
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      application_name: 'agentconn-leader',
      connectionTimeoutMillis: this.#options.connectTimeoutMs ?? 10_000,
      keepAlive: true,
    });
    client.on('error', (error) => {
      if (this.#held) this.#options.logger.warn('leader lock connection lost; leadership released', { error: error.message });
      this.#drop(client);
    });
    try {
      await settleOrAbort(client.connect(), signal);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw new Error(`leader lock connection failed: ${errorMessage(error)}`, { cause: error });
    }
    this.#client = client;
    this.#held = false;
    return client;
  }

  #drop(client: pg.Client): void {
    if (this.#client === client) {
      this.#client = undefined;
      this.#held = false;
    }
    void client.end().catch(() => undefined);
  }
}
