export {
  ConfigError,
  defaultSettings,
  parseCommand,
  type ExporterConfig,
  type ExporterDatabase,
  type ExporterSettings,
  type ExpositionKind,
  type IgnoredVariable,
  type ParseCommandOptions,
  type ParsedCommand,
} from './config.js';
export type { LogLevel } from './log.js';
export { createMetricsReader, type MetricsReader } from './metrics-reader.js';
export { startExporter, type RunningExporter, type StartExporterOptions } from './exporter.js';
export { EXPORTER_VERSION } from './version.js';
export { loadWebConfig, WebConfigError, type WebConfig, type WebTlsConfig, type ClientAuthType } from './web/config-file.js';
