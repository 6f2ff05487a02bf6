/**
 * `@agentconn/kysely/postgres`: a Kysely over a PostgreSQL server through `pg`. The only module of this
 * package that imports `pg`; users of PGlite alone never load it.
 */
import { Kysely, PostgresDialect, type PostgresPool } from 'kysely';
import pg from 'pg';
import { namingEndpoint } from './connect-failure.js';
import { databaseEndpoint } from './database-url.js';
import { postgresTlsConfig } from './postgres-tls.js';
import type { CoderDatabase } from './schema.js';

export { ConnectFailure, namingEndpoint } from './connect-failure.js';
export { postgresTlsConfig, type PostgresTlsConfig, type PostgresTlsOptions } from './postgres-tls.js';

export interface PostgresDbOptions {
  /**
   * Called when an idle pooled connection fails (e.g. the server restarted). `pg` would otherwise crash
   * the process with an unhandled 'error' event; the next query reports the outage anyway.
   * Default: ignore.
   */
  readonly onIdleClientError?: (error: Error) => void;
  /** Called once with the new pool, e.g. to watch its `acquire`/`release` events. */
  readonly onPool?: (pool: pg.Pool) => void;
}

/** Defaults this package sets unless the config sets them. */
export const POSTGRES_POOL_DEFAULTS = {
  /** `pg` waits forever for a connection by default; a poller needs to hear about an outage. */
  connectionTimeoutMillis: 10_000,
  /**
   * A poller runs one query at a time; one more connection leaves room to cancel it. Raise it when
   * something else holds a connection of the same pool (e.g. a session-level advisory lock).
   */
  max: 2,
  application_name: 'agentconn',
  /** TCP keepalive, so a connection to a vanished server (no FIN, e.g. behind a dead NAT) ends. */
  keepAlive: true,
} as const satisfies pg.PoolConfig;

/**
 * A `Kysely<CoderDatabase>` with Kysely's `PostgresDialect` over a new `pg.Pool`. `connection` is a
 * connection string (`postgres://user@host:5432/db`) or a `pg.PoolConfig` (e.g. `{ connectionString,
 * max, application_name, connectionTimeoutMillis, idleTimeoutMillis, keepAlive }`, or
 * `options: '-c search_path=coder'`); {@link POSTGRES_POOL_DEFAULTS} fill what it leaves unset.
 * A connection string's TLS parameters mean what they mean to libpq (see {@link postgresTlsConfig}),
 * unless the config gives `ssl` itself; a bad one throws a `DatabaseUrlError` naming it. A connection
 * that cannot be made fails with an error naming the host and port (a `ConnectFailure` where the driver's does not). `db.destroy()` ends the pool.
 */
export function createPostgresDb(connection: string | pg.PoolConfig, options: PostgresDbOptions = {}): Kysely<CoderDatabase> {
  const given: pg.PoolConfig = typeof connection === 'string' ? { connectionString: connection } : connection;
  const tls = given.connectionString === undefined || given.ssl !== undefined ? undefined : postgresTlsConfig(given.connectionString);
  const config = tls === undefined ? given : { ...given, connectionString: tls.connectionString, ssl: tls.ssl, ...(tls.stream !== undefined && { stream: tls.stream }) };
  const pool = new pg.Pool({ ...POSTGRES_POOL_DEFAULTS, ...withoutUndefined(config) });
  pool.on('error', (error) => options.onIdleClientError?.(error));
  options.onPool?.(pool);
  const endpoint = config.connectionString === undefined ? `${config.host ?? 'localhost'}:${config.port ?? 5432}` : databaseEndpoint(config.connectionString);
  const named: PostgresPool = {
    // Kysely cancels a query from a client of the pool's class and options.
    Client: pg.Client,
    options: pool.options,
    connect: () =>
      pool.connect().catch((error: unknown) => {
        throw namingEndpoint(error, endpoint, pool.options.connectionTimeoutMillis);
      }),
    end: () => pool.end(),
  };
  return new Kysely<CoderDatabase>({ dialect: new PostgresDialect({ pool: named }) });
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
