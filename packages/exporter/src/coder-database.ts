import type { FirstConnectionSource, Logger, WorkspaceStartSource } from '@agentconn/core';
import { Kysely, PostgresDialect } from 'kysely';
import { DatabaseUrlError, parseDatabaseUrl, redactSecrets, type CoderDatabase, type DatabaseUrl } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { ConfigError, type ExporterConfig } from './config.js';
import { watchStuckConnections, type StuckConnections } from './stuck-connections.js';
import type { ExporterTimings } from './timings.js';

/** The Coder database the exporter reads: its own pool by URL, or a Kysely instance the program supplies. */
export interface OpenedDatabase {
  readonly db: Kysely<CoderDatabase>;
  /** Checked-out connections of the exporter's own pool (none for a supplied database). */
  readonly stuck: StuckConnections | undefined;
  /** Set when the exporter connects by URL (and then owns the pool). */
  readonly url: DatabaseUrl | undefined;
  readonly owned: boolean;
}

export function openDatabase(config: ExporterConfig, timings: ExporterTimings, logger: Logger): OpenedDatabase {
  if ('db' in config.database) return { db: config.database.db, stuck: undefined, url: undefined, owned: false };
  let url: DatabaseUrl;
  try {
    // A URL that `pg` would read otherwise than the logs show it is refused before anything connects.
    url = parseDatabaseUrl(config.database.url);
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new ConfigError(`database.url: ${error.message}`);
    throw error;
  }
  let stuck: StuckConnections | undefined;
  let db: Kysely<CoderDatabase>;
  try {
    db = createPostgresDb(
      {
        connectionString: url.text,
        application_name: 'agentconn-exporter',
        connectionTimeoutMillis: timings.connectTimeoutMs,
        idleTimeoutMillis: timings.idleTimeoutMs,
        keepAlive: true,
      },
      // An idle client whose backend died: the next poll reports the outage; this is only a hint.
      {
        onIdleClientError: (error) => logger.debug('idle database connection closed', { error: error.message, err: error }),
        onPool: (pool) => {
          stuck = watchStuckConnections(pool, logger);
        },
      },
    );
  } catch (error) {
    // A TLS parameter that cannot work (a missing sslrootcert, say) fails each connection attempt, as in
    // libpq: the error then reaches the log, /readyz and `check` like any connection failure.
    if (!(error instanceof DatabaseUrlError)) throw error;
    db = unconnectable(error);
  }
  return { db, stuck, url, owned: true };
}

/** Errors name the database (without its password), so one log line says what failed where. */
export function namingDatabaseInErrors(
  source: FirstConnectionSource,
  database: string,
  stuck: StuckConnections | undefined,
): FirstConnectionSource {
  return {
    async listAgents(query) {
      try {
        return await source.listAgents(query);
      } catch (error) {
        if (query.signal.aborted) stuck?.endStuckAfterAbort();
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(redactSecrets(`${message} (database ${database})`), { cause: error });
      }
    },
  };
}

/** The start source, its errors naming the database as the agents source's do. */
export function namingDatabaseInStartErrors(
  source: WorkspaceStartSource,
  database: string,
  stuck: StuckConnections | undefined,
): WorkspaceStartSource {
  return {
    async listStarts(query) {
      try {
        return await source.listStarts(query);
      } catch (error) {
        if (query.signal.aborted) stuck?.endStuckAfterAbort();
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(redactSecrets(`${message} (database ${database})`), { cause: error });
      }
    },
  };
}

/** A database every connection attempt to which fails with `error`. */
function unconnectable(error: Error): Kysely<CoderDatabase> {
  const pool = { options: {}, connect: () => Promise.reject(error), end: () => Promise.resolve() };
  return new Kysely<CoderDatabase>({ dialect: new PostgresDialect({ pool }) });
}
