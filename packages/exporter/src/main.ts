import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  errorMessage,
  firstConnectionView,
  type FirstConnectionSource,
  type Logger,
} from '@agentconn/core';
import type { Kysely } from 'kysely';
import {
  DatabaseUrlError,
  createCoderAgentSource,
  parseDatabaseUrl,
  redactSecrets,
  type CoderDatabase,
  type DatabaseUrl,
} from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { ConfigError, type ExporterConfig } from './config.js';
import { createMetricsReader } from './metrics-reader.js';
import { createMetricsServer } from '@agentconn/exposition';
import { AdvisoryLockLeadership } from './leader.js';
import { createJsonLogger } from './log.js';
import { EXPORTER_VERSION } from './version.js';

/** Node's timers hold at most 2^31-1 ms; a longer delay fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface StartExporterOptions {
  /** E.g. from `parseCommand`, or `{ ...defaultSettings(), database: { db }, leaderElection: false }`. */
  readonly config: ExporterConfig;
  /** Default: JSON lines on standard error at `config.logLevel`. */
  readonly logger?: Logger;
}

export interface RunningExporter {
  /** Where `/metrics` is served, e.g. `http://127.0.0.1:9464/metrics`. */
  readonly metricsUrl: string;
  readonly poller: FirstConnectionPoller;
  readonly meterProvider: MeterProvider;
  readonly logger: Logger;
  /** Stops polling, releases leadership, flushes OTLP, closes the server and the pool. */
  stop(): Promise<void>;
}

/** Starts the exporter: `/metrics` is served before the first poll, whether or not the database answers. */
export async function startExporter(options: StartExporterOptions): Promise<RunningExporter> {
  const { config } = options;
  const logger = options.logger ?? createJsonLogger({ level: config.logLevel, scrub: redactSecrets });
  // Leader election holds its lock on a connection of its own, which needs a URL to open.
  if (config.leaderElection && !('url' in config.database)) {
    throw new ConfigError('leader election needs database.url; with a database supplied as a Kysely instance set leaderElection: false');
  }
  const database = openDatabase(config, logger);
  const { db } = database;
  const databaseForLogs = database.url?.redacted ?? 'supplied by the program';

  const exposition = createMetricsReader(config.exposition, logger);
  const readers: MetricReader[] = [exposition.reader];
  if (config.otlpEndpoint !== undefined) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: config.otlpEndpoint }),
        exportIntervalMillis: config.intervalMs,
        exportTimeoutMillis: Math.min(config.intervalMs, 30_000),
      }),
    );
  }
  const metricOptions = { labels: config.labels, cardinalityLimit: config.cardinalityLimit };
  const meterProvider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'agentconn-exporter', 'service.version': EXPORTER_VERSION }),
    readers,
    views: [firstConnectionView(metricOptions)],
  });

  const recorder = new FirstConnectionRecorder({ meterProvider, logger, ...metricOptions });
  const source = withContext(createCoderAgentSource(db, { statementTimeoutMs: config.statementTimeoutMs }), databaseForLogs);
  const leadership =
    config.leaderElection && database.url !== undefined
      ? new AdvisoryLockLeadership({ connectionString: database.url.text, logger })
      : undefined;
  const poller = new FirstConnectionPoller({
    source,
    recorder,
    meterProvider,
    logger,
    intervalMs: config.intervalMs,
    timeoutMs: config.statementTimeoutMs + 5_000,
    mode: config.mode,
    overlapMs: config.overlapMs,
    backfill: config.backfill,
    ...(leadership !== undefined && { leadership }),
  });

  let server;
  try {
    server = await createMetricsServer({ reader: exposition.endpoint, host: config.listen.host, port: config.listen.port });
  } catch (cause) {
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
    const error = new Error(`cannot listen on ${host}:${config.listen.port}: ${errorMessage(cause)}`, { cause });
    await meterProvider.shutdown().catch(() => undefined);
    if (database.owned) await db.destroy().catch(() => undefined);
    throw error;
  }
  logger.info('agentconn exporter started', {
    version: EXPORTER_VERSION,
    metrics_url: server.url,
    database: databaseForLogs,
    interval_s: config.intervalMs / 1000,
    mode: config.mode,
    labels: config.labels.join(','),
    leader_election: leadership !== undefined,
    otlp_endpoint: config.otlpEndpoint ?? null,
  });
  poller.start();

  let stopping: Promise<void> | undefined;
  const metricsServer = server;
  return {
    metricsUrl: server.url,
    poller,
    meterProvider,
    logger,
    stop() {
      stopping ??= (async () => {
        await poller.stop();
        await leadership?.release();
        await meterProvider.shutdown().catch((error: unknown) => logger.warn('metrics shutdown failed', { error: errorMessage(error), err: error }));
        await metricsServer.close();
        if (database.owned) await db.destroy().catch(() => undefined);
        logger.info('agentconn exporter stopped', {});
      })();
      return stopping;
    },
  };
}

interface OpenedDatabase {
  readonly db: Kysely<CoderDatabase>;
  /** Set when the exporter connects by URL (and then owns the pool). */
  readonly url: DatabaseUrl | undefined;
  readonly owned: boolean;
}

function openDatabase(config: ExporterConfig, logger: Logger): OpenedDatabase {
  if ('db' in config.database) return { db: config.database.db, url: undefined, owned: false };
  let url: DatabaseUrl;
  try {
    // A URL that `pg` would read otherwise than the logs show it is refused before anything connects.
    url = parseDatabaseUrl(config.database.url);
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new ConfigError(`database.url: ${error.message}`);
    throw error;
  }
  const db = createPostgresDb(
    {
      connectionString: url.text,
      application_name: 'agentconn-exporter',
      connectionTimeoutMillis: Math.min(config.statementTimeoutMs, 10_000),
      idleTimeoutMillis: Math.min(Math.max(config.intervalMs * 2, 30_000), MAX_TIMER_MS),
      keepAlive: true,
    },
    // An idle client whose backend died: the next poll reports the outage; this is only a hint.
    { onIdleClientError: (error) => logger.debug('idle database connection closed', { error: error.message, err: error }) },
  );
  return { db, url, owned: true };
}

/** Errors name the database (without its password), so one log line says what failed where. */
function withContext(source: FirstConnectionSource, database: string): FirstConnectionSource {
  return {
    async listAgents(query) {
      try {
        return await source.listAgents(query);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(redactSecrets(`${message} (database ${database})`), { cause: error });
      }
    },
  };
}
