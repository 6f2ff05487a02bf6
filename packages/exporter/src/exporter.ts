import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import {
  AwaitingAgentsRecorder,
  FirstConnectionPoller,
  FirstConnectionRecorder,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
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
  redactDatabaseUrl,
  redactSecrets,
  type CoderDatabase,
  type DatabaseUrl,
} from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { ConfigError, type ExporterConfig } from './config.js';
import { createMetricsReader } from './metrics-reader.js';
import { createMetricsServer, type ExemplarLookup } from '@agentconn/exposition';
import { AdvisoryLockLeadership } from './leader-lock.js';
import { watchCheckouts, type CheckoutWatch } from './stuck-connections.js';
import { createJsonLogger } from './log.js';
import { Readiness } from './readiness.js';
import { ObservedMetricExporter, OTLP_SHUTDOWN_TIMEOUT_MS } from './observed-otlp-exporter.js';
import { withStatusPages } from './web/status-pages.js';
import { loadWebConfig, WebConfigError, type WebConfig } from './web/config-file.js';
import { FileChangeWatcher } from './web/file-change-watcher.js';
import { tlsServerOptions, WebGuard } from './web/access-guard.js';
import type { Server as HttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { EXPORTER_VERSION } from './version.js';
import { createStateFileWriter, loadStateFile } from './state-file.js';

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
  const logger = options.logger ?? createJsonLogger({ level: config.logLevel, scrub: redactSecrets });
  // Leader election holds its lock on a connection of its own, which needs a URL to open.
  if (config.leaderElection && !('url' in config.database) && config.leaderDatabaseUrl === undefined) {
    throw new ConfigError(
      'leader election needs database.url for its lock connection; with a database supplied as a Kysely instance give leaderDatabaseUrl or set leaderElection: false',
    );
  }
  const database = openDatabase(config, logger);
  const { db, stuck } = database;
  const databaseForLogs = database.url?.redacted ?? 'supplied by the program';

  // The recorder needs the MeterProvider, which needs the reader: the reader looks exemplars up through it late.
  let recorder: FirstConnectionRecorder | undefined;
  const exemplars: ExemplarLookup = {
    histogramExemplars: (name, attributes) => recorder?.exemplars.histogramExemplars(name, attributes),
  };
  const exposition = createMetricsReader(config.exposition, logger, { exemplars, withoutScopeLabels: config.withoutScopeLabels });
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
  recorder = new FirstConnectionRecorder({ meterProvider, logger, ...metricOptions });
  const awaiting = new AwaitingAgentsRecorder({ meterProvider, logger, ...metricOptions });
  const readiness = new Readiness(config.intervalMs, Date.now, redactSecrets);
  const source = readiness.watchSource(
    withContext(
      createCoderAgentSource(db, {
        statementTimeoutMs: config.statementTimeoutMs,
        fallbackConnectionTimeoutSeconds: config.connectionTimeoutSeconds,
      }),
      databaseForLogs,
      stuck,
    ),
  );
  const leaderUrl = config.leaderDatabaseUrl ?? database.url?.text;
  const leaderLock =
    config.leaderElection && leaderUrl !== undefined
      ? new AdvisoryLockLeadership({
          connectionString: leaderUrl,
          logger,
          queryTimeoutMs: Math.max(1000, Math.min(5000, config.intervalMs / 2)),
        })
      : undefined;
  const leadership = leaderLock === undefined ? undefined : readiness.watchLeadership(leaderLock);
  const resumeFrom = config.stateFile === undefined ? undefined : await loadStateFile(config.stateFile, logger);
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
    ...(resumeFrom !== undefined && { resumeFrom }),
    ...(config.stateFile !== undefined && { saveState: createStateFileWriter(config.stateFile, logger) }),
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
    if (database.owned) await db.destroy().catch(() => undefined);
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
    ...(leadership !== undefined && config.leaderDatabaseUrl !== undefined && { leader_database: redactDatabaseUrl(config.leaderDatabaseUrl) }),
    state_file: config.stateFile ?? null,
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
        // The aborted poll's cancel needs the pool: let it reach the server before the pool closes.
        await stuck?.drained(5000);
        await leaderLock?.release();
        // Bounded: the last OTLP export to a dead endpoint would otherwise hold the stop for its retries.
        await meterProvider
          .shutdown({ timeoutMillis: OTLP_SHUTDOWN_TIMEOUT_MS })
          .catch((error: unknown) =>
            logger.warn('metrics shutdown did not finish; the last OTLP export may be lost', { error: errorMessage(error), err: error }),
          );
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
  /** Checked-out connections of the exporter's own pool (none for a supplied database). */
  readonly stuck: CheckoutWatch | undefined;
  /** Set when the exporter connects by URL (and then owns the pool). */
  readonly url: DatabaseUrl | undefined;
  readonly owned: boolean;
}

function openDatabase(config: ExporterConfig, logger: Logger): OpenedDatabase {
  if ('db' in config.database) return { db: config.database.db, stuck: undefined, url: undefined, owned: false };
  let url: DatabaseUrl;
  try {
    // A URL that `pg` would read otherwise than the logs show it is refused before anything connects.
    url = parseDatabaseUrl(config.database.url);
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new ConfigError(`database.url: ${error.message}`);
    throw error;
  }
  let stuck: CheckoutWatch | undefined;
  const db = createPostgresDb(
    {
      connectionString: url.text,
      application_name: 'agentconn-exporter',
      connectionTimeoutMillis: Math.min(config.statementTimeoutMs, 10_000),
      // Shorter than the interval: each poll gets a fresh connection, so one that went silent
      // between polls (no FIN, as behind a dead NAT) is never reused.
      idleTimeoutMillis: Math.max(500, Math.min(config.intervalMs / 2, 30_000)),
      keepAlive: true,
    },
    // An idle client whose backend died: the next poll reports the outage; this is only a hint.
    {
      onIdleClientError: (error) => logger.debug('idle database connection closed', { error: error.message, err: error }),
      onPool: (pool) => {
        stuck = watchCheckouts(pool, logger);
      },
    },
  );
  return { db, stuck, url, owned: true };
}

/** Errors name the database (without its password), so one log line says what failed where. */
function withContext(source: FirstConnectionSource, database: string, stuck: CheckoutWatch | undefined): FirstConnectionSource {
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
