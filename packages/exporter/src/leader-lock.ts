import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { errorMessage, settleOrAbort, type Leadership, type Logger, type Takeover } from '@agentconn/core';
import { connectionAdvice, databaseEndpoint, withoutNodeHints } from '@agentconn/kysely';
import { namingEndpoint, postgresTlsConfig } from '@agentconn/kysely/postgres';
import { identityComment, parseIdentity, type LeaderIdentity, type LeaderInfo } from './leader-identity.js';

/** Default advisory lock key: the first 8 bytes of sha256("agentconn:first-connection-leader"), as int8. */
export const DEFAULT_LEADER_LOCK_KEY = '-8203292330991340775';

/** The lock session's `application_name`: `agentconn-leader <instance>[ <watermark epoch ms>]`. */
const APPLICATION_NAME_PREFIX = 'agentconn-leader';
const APPLICATION_NAME = /^agentconn-leader ([0-9a-f]{12})(?: (\d{1,16}))?$/;
/** A session-level placeholder setting naming the process whose session this is (pooler detection). */
const OWNER_SETTING = 'agentconn.leader_instance';

export interface AdvisoryLockLeadershipOptions {
  readonly connectionString: string;
  readonly logger: Logger;
  /** Replicas that should elect one leader share the key. */
  readonly lockKey?: string;
  readonly connectTimeoutMs?: number;
  /**
   * Each round trip on the lock's connection must answer within this, or the connection is taken for
   * dead (e.g. silent behind a dead NAT) and a new one decides. Default 5000 ms.
   */
  readonly queryTimeoutMs?: number;
  /** What followers see of this process while it leads (host, pid, labels…). Default: nothing beyond its instance. */
  readonly identity?: LeaderIdentity;
}

/**
 * The lock's connection does not keep session state between statements (e.g. PgBouncer in transaction
 * mode): a session-level advisory lock elects nobody there. Permanent: every later check says so.
 */
export class LeaderSessionError extends Error {
  override readonly name = 'LeaderSessionError';
}

interface SessionRow {
  readonly pid: number;
  readonly owner: string | null;
}

/** The lock holder's session, as `pg_stat_activity` shows it to this role. */
interface HolderRow {
  readonly pid: number;
  readonly application_name: string | null;
  /** Its last statement; `<insufficient privilege>` for another role's session. */
  readonly query: string | null;
  readonly client_addr: string | null;
  /** The database's clock. */
  readonly now_ms: number;
}

/**
 * Leader election with a PostgreSQL session-level advisory lock held on a dedicated connection. When
 * the leader's process dies or its session ends, PostgreSQL releases the lock; a follower's next
 * `pg_try_advisory_lock` takes it. Works with a SELECT-only role:
 *
 * - the lock session's `application_name` (visible to every role in `pg_stat_activity`) carries this
 *   process's identity and, after each poll, its watermark; followers read it, so a takeover resumes
 *   where the previous leader's last published poll ended;
 * - a process that finds the lock held by a session of its own identity (its old connection went
 *   silent without closing) ends that session with `pg_terminate_backend` (allowed for the same role)
 *   instead of locking itself out;
 * - a connection whose backend or session setting changes between statements (a transaction pooler)
 *   is refused with a `LeaderSessionError` rather than electing several leaders.
 */
export class AdvisoryLockLeadership implements Leadership {
  readonly #options: AdvisoryLockLeadershipOptions;
  readonly #instance = randomBytes(6).toString('hex');
  readonly #lockKey: string;
  readonly #lockClassId: string;
  readonly #lockObjId: string;
  readonly #queryTimeoutMs: number;
  #client: pg.Client | undefined;
  /** Backend pid of `#client`'s session. */
  #pid: number | undefined;
  #held = false;
  #refused: LeaderSessionError | undefined;
  /** The last leader this process knows of: itself, or another one with its last published watermark. */
  #lastLeader: 'self' | { readonly progressMs: number | undefined } | undefined;
  #takeover: Takeover = { kind: 'unknown' };
  /** The other process that holds the lock, as of the last check that found one. */
  #leader: LeaderInfo | undefined;
  readonly #comment: string;

  constructor(options: AdvisoryLockLeadershipOptions) {
    this.#options = options;
    this.#lockKey = options.lockKey ?? DEFAULT_LEADER_LOCK_KEY;
    // pg_locks shows an int8 advisory key as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
    const key = BigInt.asUintN(64, BigInt(this.#lockKey));
    this.#lockClassId = String(key >> 32n);
    this.#lockObjId = String(key & 0xffffffffn);
    this.#queryTimeoutMs = options.queryTimeoutMs ?? 5000;
    this.#comment = options.identity === undefined ? '' : identityComment(options.identity);
  }

  /** The other process that leads, as the last lock check found it; undefined while this one leads or none was seen. */
  get leader(): LeaderInfo | undefined {
    return this.#held ? undefined : this.#leader;
  }

  /** This process's identity in its lock session's `application_name`. */
  get instance(): string {
    return this.#instance;
  }

  /** False as soon as the lock is known lost, even between checks (the lock's connection dropped). */
  get held(): boolean {
    return this.#held;
  }

  takeover(): Takeover {
    return this.#takeover;
  }

  async isLeader(signal: AbortSignal): Promise<boolean> {
    if (this.#refused !== undefined) throw this.#refused;
    const reused = this.#client !== undefined;
    try {
      return await this.#check(signal);
    } catch (error) {
      this.#dropClient();
      if (error instanceof LeaderSessionError) {
        this.#refused = error;
        throw error;
      }
      if (!reused || signal.aborted) throw new Error(`leader lock check failed: ${errorMessage(error)}`, { cause: error });
      // The connection we held may be the dead one (silent, no FIN): a new connection decides.
      this.#options.logger.warn('leader lock connection did not answer; checking on a new one', { error: errorMessage(error) });
      try {
        return await this.#check(signal);
      } catch (retryError) {
        this.#dropClient();
        if (retryError instanceof LeaderSessionError) this.#refused = retryError;
        throw retryError instanceof LeaderSessionError
          ? retryError
          : new Error(`leader lock check failed: ${errorMessage(retryError)}`, { cause: retryError });
      }
    }
  }

  /**
   * Publishes the watermark of a poll in the lock session's `application_name` and proves in the same
   * round trip that the session (and so the lock) is still this process's. The poller records a poll's
   * rows only after this resolved, so a successor never resumes before what this process counted.
   */
  async publishProgress(watermarkMs: number, signal: AbortSignal): Promise<void> {
    const client = this.#client;
    if (!this.#held || client === undefined) throw new Error('leader lock lost before the poll could be published');
    try {
      const row = await this.#query<SessionRow & { holds: boolean }>(
        client,
        `SELECT set_config('application_name', $1, false), pg_backend_pid() AS pid, current_setting('${OWNER_SETTING}', true) AS owner,
                ${this.#holdsSql('pg_backend_pid()')} AS holds`,
        [`${APPLICATION_NAME_PREFIX} ${this.#instance} ${Math.trunc(watermarkMs)}`],
        signal,
      );
      this.#verifySession(row);
      if (!row.holds) throw new Error('the lock session no longer holds the advisory lock');
    } catch (error) {
      this.#dropClient();
      if (error instanceof LeaderSessionError) this.#refused = error;
      throw error instanceof LeaderSessionError ? error : new Error(`publishing leader progress failed: ${errorMessage(error)}`, { cause: error });
    }
  }

  /**
   * Who holds the lock now, without trying to take it (for `agentconn-exporter check`): undefined when
   * nobody does. Opens the lock's connection and closes it again.
   */
  async whoLeads(signal: AbortSignal): Promise<LeaderInfo | undefined> {
    try {
      const holder = await this.#holder(await this.#connection(signal), signal);
      return holder === undefined ? undefined : leaderInfo(holder);
    } finally {
      await this.release();
    }
  }

  /** Releases the lock (by ending the session) so a follower takes over at once. */
  async release(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#held = false;
    if (client !== undefined) await endClient(client);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  async #check(signal: AbortSignal): Promise<boolean> {
    const client = await this.#connection(signal);
    if (this.#held) {
      const row = await this.#query<SessionRow & { holds: boolean }>(
        client,
        `SELECT pg_backend_pid() AS pid, current_setting('${OWNER_SETTING}', true) AS owner, ${this.#holdsSql('pg_backend_pid()')} AS holds`,
        [],
        signal,
      );
      this.#verifySession(row);
      if (row.holds) return true;
      this.#held = false;
      throw new LeaderSessionError(
        `the leader lock vanished from this process's session (backend pid ${row.pid}): something else released it on a shared connection; ${POOLER_ADVICE}`,
      );
    }
    if (await this.#tryLock(client, signal)) return true;

    const holder = await this.#holder(client, signal);
    const name = holder === undefined ? undefined : APPLICATION_NAME.exec(holder.application_name ?? '');
    if (holder !== undefined && name?.[1] === this.#instance && holder.pid !== this.#pid) {
      // Our own earlier session: its connection went silent while the session lives on.
      this.#options.logger.warn("ending this process's stale leader lock session", { backend_pid: holder.pid });
      await this.#query(client, 'SELECT pg_terminate_backend($1::int4)', [holder.pid], signal);
      for (let attempt = 0; attempt < 20; attempt++) {
        if (await this.#tryLock(client, signal)) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    }
    if (holder !== undefined && name?.[1] !== this.#instance) {
      // A leader that has not published yet resumed from its predecessor's progress: keep that one.
      // One that never publishes (not ours, or an older version) leaves the takeover point unknown.
      const published = name?.[2] === undefined ? undefined : Number(name[2]);
      const previous = name !== null && name !== undefined && typeof this.#lastLeader === 'object' ? this.#lastLeader.progressMs : undefined;
      this.#lastLeader = { progressMs: published ?? previous };
      this.#leader = leaderInfo(holder);
    }
    if (holder === undefined) this.#leader = undefined;
    return false;
  }

  async #tryLock(client: pg.Client, signal: AbortSignal): Promise<boolean> {
    const row = await this.#query<SessionRow & { acquired: boolean | null }>(
      client,
      `SELECT pg_backend_pid() AS pid, current_setting('${OWNER_SETTING}', true) AS owner,
              CASE WHEN current_setting('${OWNER_SETTING}', true) = $2 THEN pg_try_advisory_lock($1::int8) END AS acquired`,
      [this.#lockKey, this.#instance],
      signal,
    );
    this.#verifySession(row);
    if (row.acquired !== true) return false;
    this.#held = true;
    const last = this.#lastLeader;
    this.#takeover =
      last === 'self'
        ? { kind: 'continue' }
        : last?.progressMs !== undefined
          ? { kind: 'resume', fromMs: last.progressMs }
          : { kind: 'unknown' };
    this.#lastLeader = 'self';
    return true;
  }

  async #holder(client: pg.Client, signal: AbortSignal): Promise<HolderRow | undefined> {
    const result = await this.#rows<SessionRow & { holder_pid: number } & Omit<HolderRow, 'pid'>>(
      client,
      `SELECT pg_backend_pid() AS pid, current_setting('${OWNER_SETTING}', true) AS owner, l.pid AS holder_pid, a.application_name,
              a.query, a.client_addr::text AS client_addr, (extract(epoch FROM now()) * 1000)::float8 AS now_ms
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE ${this.#lockSql('l')} AND l.granted
        LIMIT 1`,
      [],
      signal,
    );
    const row = result[0];
    if (row === undefined) return undefined;
    this.#verifySession(row);
    return { pid: row.holder_pid, application_name: row.application_name, query: row.query, client_addr: row.client_addr, now_ms: row.now_ms };
  }

  #lockSql(alias: string): string {
    return `${alias}.locktype = 'advisory' AND ${alias}.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND ${alias}.classid = ${this.#lockClassId}::oid AND ${alias}.objid = ${this.#lockObjId}::oid AND ${alias}.objsubid = 1`;
  }

  #holdsSql(pid: string): string {
    return `EXISTS (SELECT 1 FROM pg_locks k WHERE ${this.#lockSql('k')} AND k.granted AND k.pid = ${pid})`;
  }

  #verifySession(row: SessionRow): void {
    if (row.pid === this.#pid && row.owner === this.#instance) return;
    const what =
      row.pid !== this.#pid
        ? `answered from backend pid ${row.pid} after ${String(this.#pid)}`
        : `is a session another process set up (${OWNER_SETTING} = ${String(row.owner)})`;
    throw new LeaderSessionError(`leader election needs a database session that persists between statements, but the lock's connection ${what}; ${POOLER_ADVICE}`);
  }

  async #connection(signal: AbortSignal): Promise<pg.Client> {
    if (this.#client !== undefined) return this.#client;
    const connectTimeoutMs = this.#options.connectTimeoutMs ?? 10_000;
    let tls;
    try {
      tls = postgresTlsConfig(this.#options.connectionString);
    } catch (error) {
      throw new Error(`leader lock connection failed: ${errorMessage(error)}`, { cause: error });
    }
    const client = new pg.Client({
      connectionString: tls.connectionString,
      ssl: tls.ssl,
      ...(tls.stream !== undefined && { stream: tls.stream }),
      application_name: `${APPLICATION_NAME_PREFIX} ${this.#instance}`,
      connectionTimeoutMillis: connectTimeoutMs,
      keepAlive: true,
    });
    client.on('error', (error) => {
      if (this.#client === client && this.#held) {
        this.#options.logger.warn('leader lock connection lost; leadership released', { error: error.message });
      }
      this.#dropClient(client);
    });
    try {
      await settleOrAbort(client.connect(), signal);
    } catch (error) {
      void endClient(client);
      const named = namingEndpoint(error, databaseEndpoint(this.#options.connectionString), connectTimeoutMs);
      const advice = connectionAdvice(error);
      throw new Error(`leader lock connection failed: ${withoutNodeHints(errorMessage(named))}${advice === undefined ? '' : `; ${advice}`}`, { cause: named });
    }
    try {
      // Marks the session as this process's, unless a pooler handed us one another process set up.
      const rows = await this.#rows<{ pid: number; previous: string | null }>(
        client,
        `SELECT pg_backend_pid() AS pid, prev.owner AS previous,
                set_config('${OWNER_SETTING}', CASE WHEN coalesce(prev.owner, '') IN ('', $1) THEN $1 ELSE prev.owner END, false)
           FROM (SELECT current_setting('${OWNER_SETTING}', true) AS owner OFFSET 0) prev`,
        [this.#instance],
        signal,
      );
      const row = rows[0];
      if (row === undefined) throw new Error('no answer to the session setup');
      this.#pid = row.pid;
      if (row.previous !== null && row.previous !== '' && row.previous !== this.#instance) {
        throw new LeaderSessionError(
          `leader election needs a database session of its own, but the lock's connection is a session another process set up (${OWNER_SETTING} = ${row.previous}); ${POOLER_ADVICE}`,
        );
      }
    } catch (error) {
      void endClient(client);
      throw error;
    }
    this.#client = client;
    this.#held = false;
    return client;
  }

  async #query<R extends object>(client: pg.Client, text: string, values: unknown[], signal: AbortSignal): Promise<R> {
    const rows = await this.#rows<R>(client, text, values, signal);
    const row = rows[0];
    if (row === undefined) throw new Error('no row returned');
    return row;
  }

  async #rows<R extends object>(client: pg.Client, text: string, values: unknown[], signal: AbortSignal): Promise<R[]> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new Error(`no answer within ${this.#queryTimeoutMs} ms`)), this.#queryTimeoutMs);
    timer.unref();
    try {
      const result = await settleOrAbort(client.query<R>(this.#comment + text, values), AbortSignal.any([signal, timeout.signal]));
      return result.rows;
    } finally {
      clearTimeout(timer);
    }
  }

  #dropClient(client: pg.Client | undefined = this.#client): void {
    if (client === undefined) return;
    if (this.#client === client) {
      this.#client = undefined;
      this.#pid = undefined;
      this.#held = false;
    }
    void endClient(client);
  }
}

function leaderInfo(holder: HolderRow): LeaderInfo {
  const name = APPLICATION_NAME.exec(holder.application_name ?? '');
  const published = name?.[2] === undefined ? undefined : Number(name[2]);
  return {
    instance: name?.[1],
    applicationName: holder.application_name,
    backendPid: holder.pid,
    clientAddr: holder.client_addr,
    identity: parseIdentity(holder.query),
    publishedPollMs: published,
    publishedPollAgeMs: published === undefined ? undefined : holder.now_ms - published,
  };
}

const POOLER_ADVICE =
  'a transaction-mode pooler (e.g. PgBouncer pool_mode = transaction) cannot hold a session advisory lock; not observing. Point --leader-database-url at the server directly or at a session-mode pool';

/** Ends a client; a connection that went silent never answers the goodbye, so its socket is destroyed after a second. */
async function endClient(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = client.end().catch(() => undefined);
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      client.connection.stream.destroy();
      resolve();
    }, 1000);
    timer.unref();
  });
  await Promise.race([ended, late]);
  clearTimeout(timer);
}
