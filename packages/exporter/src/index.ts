export { ConfigError, FLAGS, helpText, parseCommand, type ExporterConfig, type ExpositionKind, type ParsedCommand } from './config.js';
export { parseDurationMs, formatDurationMs } from './duration.js';
export { createJsonLogger, LOG_LEVELS, type JsonLoggerOptions, type LogLevel } from './log.js';
export { databasePassword, redactDatabaseUrl, scrubSecret } from './redact.js';
export { AdvisoryLockLeadership, DEFAULT_LEADER_LOCK_KEY, type AdvisoryLockLeadershipOptions } from './leader.js';
export { createMetricsReader, type MetricsReader } from './metrics-reader.js';
export { startExporter, type RunningExporter, type StartExporterOptions } from './main.js';
export { EXPORTER_VERSION } from './version.js';
export { loadWebConfig, WebConfigError, type WebConfig, type WebTlsConfig, type ClientAuthType } from './web-config.js';
