import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  errorMessage,
  firstConnectionView,
  type FirstConnectionSource,
  type Logger,
} from '@agentconn/core';
import { createCoderAgentSource, type CoderDatabase } from '@agentconn/kysely';
import type { ExporterConfig } from './config.js';
import { createMetricsReader } from './metrics-reader.js';
import { createMetricsServer } from '@agentconn/exposition';
import { AdvisoryLockLeadership } from './leader.js';
import { createJsonLogger } from './log.js';
import { Readiness } from './readiness.js';
import { ObservedMetricExporter, OTLP_SHUTDOWN_TIMEOUT_MS } from './otlp.js';
import { withStatusPages } from './web.js';
import { loadWebConfig, WebConfigError, type WebConfig } from './web-config.js';
import { FileChangeWatcher } from './web-config-watch.js';
import { tlsServerOptions, WebGuard } from './web-guard.js';
import type { Server as HttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
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
  /** Re-reads `--web.config.file` (as on SIGHUP); false (and an error line) if it was not applied. */
  reloadWebConfig(): boolean;
  /** Stops polling, releases leadership, flushes OTLP, closes the server and the pool. */
  stop(): Promise<void>;
}

/** Starts the exporter: `/metrics` is served before the first poll, whether or not the database answers. */
export async function startExporter(options: StartExporterOptions): Promise<RunningExporter> {
  const { config } = options;
  // Before anything starts: a bad file is a bad flag (exit 2), named in one line.
  let webConfig: WebConfig | undefined = config.webConfigFile === undefined ? undefined : loadWebConfig(config.webConfigFile);
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

  const exposition = createMetricsReader(config.exposition, logger, { withoutScopeLabels: config.withoutScopeLabels });
  const readers: MetricReader[] = [exposition.reader];
  const otlpExporter =
    config.otlpEndpoint === undefined
      ? undefined
      : new ObservedMetricExporter(new OTLPMetricExporter({ url: config.otlpEndpoint }), config.otlpEndpoint, logger);
  if (otlpExporter !== undefined) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: otlpExporter,
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

  otlpExporter?.countWith(meterProvider.getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION));
  const recorder = new FirstConnectionRecorder({ meterProvider, logger, ...metricOptions });
  const readiness = new Readiness(config.intervalMs, Date.now, (text) => scrubSecret(text, password));
  const source = readiness.watchSource(
    withContext(createCoderAgentSource(db, { statementTimeoutMs: config.statementTimeoutMs }), databaseForLogs, password),
  );
  const leaderLock =
    config.leaderElection && options.db === undefined
      ? new AdvisoryLockLeadership({ connectionString: config.databaseUrl, logger })
      : undefined;
  const leadership = leaderLock === undefined ? undefined : readiness.watchLeadership(leaderLock);
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

  const guard = webConfig === undefined ? undefined : new WebGuard(webConfig, logger);
  let server;
  try {
    const status = () => ({ version: EXPORTER_VERSION, leader: poller.isLeader, leaderElection: leadership !== undefined, readiness: readiness.state() });
    const routes = withStatusPages(exposition.endpoint, status);
    server = await createMetricsServer({
      reader: guard === undefined ? routes : guard.wrap(routes),
      host: config.listen.host,
      port: config.listen.port,
      ...(webConfig?.tls !== undefined && { tls: tlsServerOptions(webConfig.tls) }),
    });
  } catch (cause) {
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
    const error = new Error(`cannot listen on ${host}:${config.listen.port}: ${errorMessage(cause)}`, { cause });
    await meterProvider.shutdown().catch(() => undefined);
    if (ownPool !== undefined) await db.destroy().catch(() => undefined);
    throw error;
  }
  const metricsServer = server;
  if (webConfig?.tls !== undefined && guard !== undefined) {
    metricsServer.server.on('secureConnection', (socket: TLSSocket) => {
      if (!guard.checkConnection(socket)) socket.destroy();
    });
  }
  const reloadWebConfig = (): boolean => {
    if (config.webConfigFile === undefined || guard === undefined || webConfig === undefined) return false;
    let next: WebConfig;
    try {
      next = loadWebConfig(config.webConfigFile);
    } catch (error) {
      logger.error('web config not reloaded; keeping the previous one', { error: error instanceof WebConfigError ? error.message : String(error) });
      return false;
    }
    if ((next.tls === undefined) !== (webConfig.tls === undefined) || next.tls?.clientAuthType !== webConfig.tls?.clientAuthType) {
      logger.error('web config not reloaded: turning TLS on or off, or changing client_auth_type, needs a restart', { file: config.webConfigFile });
      return false;
    }
    if (next.tls !== undefined) {
      const { requestCert: _request, rejectUnauthorized: _reject, ...context } = tlsServerOptions(next.tls);
      (metricsServer.server as HttpsServer).setSecureContext(context);
    }
    guard.update(next);
    webConfig = next;
    watcher?.watch(next.files);
    logger.info('web config reloaded', { file: config.webConfigFile, tls: next.tls !== undefined, basic_auth_users: next.users.size });
    return true;
  };
  const watcher = webConfig === undefined ? undefined : new FileChangeWatcher(() => void reloadWebConfig());
  watcher?.watch(webConfig?.files ?? []);
  logger.info('agentconn exporter started', {
    version: EXPORTER_VERSION,
    metrics_url: server.url,
    database: databaseForLogs,
    interval_s: config.intervalMs / 1000,
    mode: config.mode,
    labels: config.labels.join(','),
    leader_election: leadership !== undefined,
    otlp_endpoint: config.otlpEndpoint ?? null,
    web_config_file: config.webConfigFile ?? null,
    tls: webConfig?.tls !== undefined,
    basic_auth: (webConfig?.users.size ?? 0) > 0,
  });
  poller.start();

  let stopping: Promise<void> | undefined;
  return {
    reloadWebConfig,
    metricsUrl: server.url,
    poller,
    meterProvider,
    logger,
    stop() {
      stopping ??= (async () => {
        watcher?.close();
        await poller.stop();
        await leaderLock?.release();
        // Bounded: the last OTLP export to a dead endpoint would otherwise hold the stop for its retries.
        await meterProvider
          .shutdown({ timeoutMillis: OTLP_SHUTDOWN_TIMEOUT_MS })
          .catch((error: unknown) => logger.warn('metrics shutdown did not finish; the last OTLP export may be lost', { error: errorMessage(error) }));
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
