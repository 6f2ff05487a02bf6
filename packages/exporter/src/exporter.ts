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
  agentconnViews,
  observableGaugesAsDelta,
  WorkspaceStartRecorder,
  workspaceStartViews,
  type Logger,
} from '@agentconn/core';
import {
  AWAITING_REQUIREMENT,
  createCoderAgentSource,
  createCoderStartSource,
  databaseEndpoint,
  WORKSPACE_START_REQUIREMENT,
  FIRST_CONNECTION_REQUIREMENT,
  redactDatabaseUrl,
  redactSecrets,
} from '@agentconn/kysely';
import type { Kysely } from 'kysely';
import { ConfigError, type ExporterConfig } from './config.js';
import { namingDatabaseInErrors, namingDatabaseInStartErrors, openDatabase } from './coder-database.js';
import { createMetricsReader } from './metrics-reader.js';
import type { ExemplarLookup } from '@agentconn/exposition';
import { hostname } from 'node:os';
import { AdvisoryLockLeadership } from './leader-lock.js';
import { LeaderWatch } from './leader-watch.js';
import { createJsonLogger } from './log.js';
import { Preflight } from './preflight.js';
import { Readiness } from './readiness.js';
import { ObservedMetricExporter, OTLP_SHUTDOWN_TIMEOUT_MS } from './observed-otlp-exporter.js';
import { loadWebConfig } from './web/config-file.js';
import { startHttpServer, type HttpServer } from './web/http-server.js';
import { EXPORTER_VERSION } from './version.js';
import { createStateFileWriter, loadStateFile } from './state-file.js';
import { exporterTimings } from './timings.js';

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
  const webConfig = config.webConfigFile === undefined ? undefined : { file: config.webConfigFile, config: loadWebConfig(config.webConfigFile) };
  const logger = options.logger ?? createJsonLogger({ level: config.logLevel, scrub: redactSecrets });
  // Leader election holds its lock on a connection of its own, which needs a URL to open.
  if (config.leaderElection && !('url' in config.database) && config.leaderDatabaseUrl === undefined) {
    throw new ConfigError(
      'leader election needs database.url for its lock connection; with a database supplied as a Kysely instance give leaderDatabaseUrl or set leaderElection: false',
    );
  }
  const timings = exporterTimings(config);
  const database = openDatabase(config, timings, logger);
  const { db, stuck } = database;
  const databaseForLogs = database.url?.redacted ?? 'supplied by the program';

  // The recorder needs the MeterProvider, which needs the reader: the reader looks exemplars up through it late.
  let recorder: FirstConnectionRecorder | undefined;
  let starts: WorkspaceStartRecorder | undefined;
  const exemplars: ExemplarLookup = {
    histogramExemplars: (name, attributes) =>
      recorder?.exemplars.histogramExemplars(name, attributes) ?? starts?.exemplars.histogramExemplars(name, attributes),
  };
  const exposition = createMetricsReader(config.exposition, logger, {
    exemplars,
    withoutScopeLabels: config.withoutScopeLabels,
    responseTimeoutMillis: config.webResponseTimeoutMs,
    drainTimeoutMillis: config.webDrainTimeoutMs,
  });
  const readers: MetricReader[] = [exposition.reader];
  const otlpExporter =
    config.otlpEndpoint === undefined
      ? undefined
      : observableGaugesAsDelta(new ObservedMetricExporter(new OTLPMetricExporter({ url: config.otlpEndpoint }), config.otlpEndpoint, logger));
  if (otlpExporter !== undefined) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: otlpExporter,
        exportIntervalMillis: timings.otlpExportIntervalMs,
        exportTimeoutMillis: timings.otlpExportTimeoutMs,
      }),
    );
  }
  const metricOptions = { labels: config.labels, cardinalityLimit: config.cardinalityLimit };
  const meterProvider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'agentconn-exporter', 'service.version': EXPORTER_VERSION }),
    readers,
    views: [
      ...agentconnViews(metricOptions),
      ...(config.phases ? workspaceStartViews({ labels: config.phaseLabels, cardinalityLimit: config.cardinalityLimit }) : []),
    ],
  });

  otlpExporter?.countWith(meterProvider.getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION));
  recorder = new FirstConnectionRecorder({ meterProvider, logger, ...metricOptions });
  const awaiting = new AwaitingAgentsRecorder({ meterProvider, logger, ...metricOptions });
  starts = config.phases
    ? new WorkspaceStartRecorder({ meterProvider, logger, labels: config.phaseLabels, cardinalityLimit: config.cardinalityLimit })
    : undefined;
  const preflight = new Preflight({
    db: db as Kysely<unknown>,
    requirements: [FIRST_CONNECTION_REQUIREMENT, AWAITING_REQUIREMENT, ...(config.phases ? [WORKSPACE_START_REQUIREMENT] : [])],
    logger,
    database: databaseForLogs,
  });
  const where = database.url === undefined ? 'the database' : `the database at ${databaseEndpoint(database.url.text)}`;
  const waitingFor = (): string => {
    switch (preflight.status) {
      case 'unchecked':
        return `${where} to answer the preflight, each connection attempt up to ${timings.connectTimeoutMs / 1000} s`;
      case 'unreachable':
        return `${where} to answer, tried again within ${config.intervalMs / 1000} s`;
      case 'problems':
        return `the preflight's problems to be fixed, checked again every ${config.intervalMs / 1000} s`;
      default:
        return 'a poll to succeed';
    }
  };
  const readiness = new Readiness(config.intervalMs, Date.now, redactSecrets, waitingFor);
  const source = readiness.watchSource(
    namingDatabaseInErrors(
      preflight.wrapSource(
        createCoderAgentSource(db, {
          statementTimeoutMs: config.statementTimeoutMs,
          fallbackConnectionTimeoutSeconds: config.connectionTimeoutSeconds,
        }),
        AWAITING_REQUIREMENT,
      ),
      databaseForLogs,
      stuck,
    ),
  );
  const startSource =
    starts === undefined
      ? undefined
      : namingDatabaseInStartErrors(
          preflight.wrapStartSource(createCoderStartSource(db, { statementTimeoutMs: config.statementTimeoutMs }), WORKSPACE_START_REQUIREMENT),
          databaseForLogs,
          stuck,
        );
  const leaderUrl = config.leaderDatabaseUrl ?? database.url?.text;
  const leaderLock =
    config.leaderElection && leaderUrl !== undefined
      ? new AdvisoryLockLeadership({
          connectionString: leaderUrl,
          logger,
          connectTimeoutMs: timings.connectTimeoutMs,
          queryTimeoutMs: timings.leaderQueryTimeoutMs,
          identity: { host: hostname(), pid: process.pid, labels: config.labels, version: EXPORTER_VERSION, intervalMs: config.intervalMs },
        })
      : undefined;
  const leaderWatch =
    leaderLock === undefined
      ? undefined
      : new LeaderWatch({
          lock: leaderLock,
          logger,
          labels: config.labels,
          intervalMs: config.intervalMs,
          meter: meterProvider.getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION),
        });
  if (leaderWatch !== undefined) readiness.describeLeaderWith(() => leaderWatch.describe());
  const leadership =
    leaderLock === undefined || leaderWatch === undefined ? undefined : readiness.watchLeadership(leaderWatch.wrap(preflight.wrapLeadership(leaderLock)));
  const resumeFrom = config.stateFile === undefined ? undefined : await loadStateFile(config.stateFile, logger);
  const poller = new FirstConnectionPoller({
    source,
    recorder,
    awaiting,
    meterProvider,
    logger,
    intervalMs: config.intervalMs,
    timeoutMs: timings.pollTimeoutMs,
    mode: config.mode,
    overlapMs: config.overlapMs,
    backfill: config.backfill,
    ...(resumeFrom !== undefined && { resumeFrom }),
    ...(starts !== undefined && startSource !== undefined && { starts: { source: startSource, recorder: starts } }),
    ...(config.stateFile !== undefined && { saveState: createStateFileWriter(config.stateFile, logger) }),
    ...(leadership !== undefined && { leadership }),
  });

  const status = () => ({
    version: EXPORTER_VERSION,
    leader: poller.isLeader,
    leaderElection: leadership !== undefined,
    leaderDescription: leaderWatch?.describe(),
    readiness: readiness.state(),
  });
  let server: HttpServer;
  try {
    server = await startHttpServer({
      metrics: exposition.endpoint,
      status,
      listen: config.listen,
      webConfig,
      logger,
    });
  } catch (error) {
    await meterProvider.shutdown().catch(() => undefined);
    if (database.owned) await db.destroy().catch(() => undefined);
    throw error;
  }
  if (config.listen.host === '') {
    logger.info('serving on every interface (--listen :PORT)', { port: config.listen.port, loopback_only: `--listen 127.0.0.1:${config.listen.port}` });
  }
  logger.info('agentconn exporter started', {
    version: EXPORTER_VERSION,
    metrics_url: server.url,
    database: databaseForLogs,
    interval_s: config.intervalMs / 1000,
    mode: config.mode,
    labels: config.labels.join(','),
    phases: config.phases ? config.phaseLabels.join(',') : false,
    counting: countingNote(config),
    leader_election: leadership !== undefined,
    ...(leadership !== undefined && config.leaderDatabaseUrl !== undefined && { leader_database: redactDatabaseUrl(config.leaderDatabaseUrl) }),
    state_file: config.stateFile ?? null,
    otlp_endpoint: config.otlpEndpoint ?? null,
    web_config_file: config.webConfigFile ?? null,
    tls: webConfig?.config.tls !== undefined,
    basic_auth: (webConfig?.config.users.size ?? 0) > 0,
  });
  poller.start();

  let stopping: Promise<void> | undefined;
  return {
    reloadWebConfig: () => server.reloadWebConfig(),
    metricsUrl: server.url,
    poller,
    meterProvider,
    logger,
    stop() {
      stopping ??= (async () => {
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
        await server.close();
        if (database.owned) await db.destroy().catch(() => undefined);
        logger.info('agentconn exporter stopped', {});
      })();
      return stopping;
    },
  };
}

/** What the histogram counts from, so that an empty `/metrics | grep` on a quiet database explains itself. */
function countingNote(config: Pick<ExporterConfig, 'backfill' | 'stateFile'>): string {
  const resume = config.stateFile === undefined ? '' : ' (or from where --state-file left off)';
  if (config.backfill === 'all') return `every current agent's first connection (--backfill all)${resume}`;
  if (config.backfill.sinceMs === 0) {
    return `first connections from now on (--backfill none)${resume}: coderd_agents_first_connection_seconds appears on /metrics once an agent connects; --backfill 1h would also count the last hour`;
  }
  return `first connections from ${config.backfill.sinceMs / 1000} s before start on (--backfill)${resume}`;
}
