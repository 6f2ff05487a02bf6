import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import {
  AwaitingAgentsRecorder,
  FirstConnectionPoller,
  FirstConnectionRecorder,
  errorMessage,
  firstConnectionView,
  type FirstConnectionSource,
  type Logger,
} from '@agentconn/core';
import { createCoderAgentSource, type CoderDatabase } from '@agentconn/kysely';
import type { ExporterConfig } from './config.js';
import { createMetricsReader } from './metrics-reader.js';
import { createMetricsServer } from './exposition/index.js';
import { AdvisoryLockLeadership } from './leader.js';
import { createJsonLogger } from './log.js';
import { databasePassword, redactDatabaseUrl, scrubSecret } from './redact.js';
import { EXPORTER_VERSION } from './version.js';

export interface StartExporterOptions {
  readonly config: ExporterConfig;
  /** Use this database instead of connecting to `config.databaseUrl` (e.g. an embedded PGlite). */
  readonly db?: Kysely<CoderDatabase>;
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
  const password = databasePassword(config.databaseUrl);
  const logger =
    options.logger ?? createJsonLogger({ level: config.logLevel, scrub: (line) => scrubSecret(line, password) });
  const databaseForLogs = options.db === undefined ? redactDatabaseUrl(config.databaseUrl) : 'embedded';

  const ownPool =
    options.db === undefined
      ? new pg.Pool({
          connectionString: config.databaseUrl,
          max: 2,
          application_name: 'agentconn-exporter',
          connectionTimeoutMillis: Math.min(config.statementTimeoutMs, 10_000),
          idleTimeoutMillis: Math.max(config.intervalMs * 2, 30_000),
          keepAlive: true,
        })
      : undefined;
  // An idle client whose backend died emits 'error' on the pool; without a listener that kills the process.
  ownPool?.on('error', (error) => logger.debug('idle database connection closed', { error: error.message }));
  const db = options.db ?? new Kysely<CoderDatabase>({ dialect: new PostgresDialect({ pool: ownPool as pg.Pool }) });

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
  const awaiting = new AwaitingAgentsRecorder({ meterProvider, logger, ...metricOptions });
  const source = withContext(createCoderAgentSource(db, {
      statementTimeoutMs: config.statementTimeoutMs,
      fallbackConnectionTimeoutSeconds: config.connectionTimeoutSeconds,
    }), databaseForLogs, password);
  const leadership =
    config.leaderElection && options.db === undefined
      ? new AdvisoryLockLeadership({ connectionString: config.databaseUrl, logger })
      : undefined;
  const poller = new FirstConnectionPoller({
    source,
    recorder,
    awaiting,
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
    if (ownPool !== undefined) await db.destroy().catch(() => undefined);
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
        await meterProvider.shutdown().catch((error: unknown) => logger.warn('metrics shutdown failed', { error: String(error) }));
        await metricsServer.close();
        if (ownPool !== undefined) await db.destroy().catch(() => undefined);
        logger.info('agentconn exporter stopped', {});
      })();
      return stopping;
    },
  };
}

/** Errors name the database (without its password), so one log line says what failed where. */
function withContext(source: FirstConnectionSource, database: string, password: string | undefined): FirstConnectionSource {
  return {
    async listAgents(query) {
      try {
        return await source.listAgents(query);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(scrubSecret(`${message} (database ${database})`, password), { cause: error });
      }
    },
  };
}
