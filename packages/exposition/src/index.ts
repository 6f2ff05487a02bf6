export { FastPrometheusReader, DEFAULT_METRICS_ENDPOINT, type FastPrometheusReaderOptions } from './reader.js';
export {
  createMetricsServer,
  DEFAULT_METRICS_HOST,
  DEFAULT_METRICS_PORT,
  type MetricsEndpoint,
  type MetricsServer,
  type MetricsServerOptions,
  type Server,
} from './http/metrics-server.js';
export { PrometheusTextSerializer, type PrometheusSerializerOptions } from './format/prometheus-text.js';
export { DEFAULT_CHUNK_BYTES } from './format/byte-sink.js';
export { writeChunks, type WriteOutcome } from './http/write-chunks.js';
export { PROMETHEUS_TEXT_CONTENT_TYPE } from './format/text-syntax.js';
export {
  OpenMetricsSerializer,
  OPENMETRICS_CONTENT_TYPE,
  escapeOpenMetricsHelp,
  formatExemplar,
  openMetricsUnit,
  type OpenMetricsSerializerOptions,
} from './format/openmetrics.js';
export { negotiateContentEncoding, negotiateExpositionFormat, type ExpositionFormat } from './http/negotiate.js';
export type { Exemplar, ExemplarLookup } from './format/exemplar.js';
export type { LogFields, Logger } from './logger.js';
export {
  DEFAULT_DRAIN_TIMEOUT_MILLIS,
  DEFAULT_HEADERS_TIMEOUT_MILLIS,
  DEFAULT_IDLE_TIMEOUT_MILLIS,
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_CONCURRENT_SCRAPES,
  DEFAULT_RENDER_SHARE_MILLIS,
  DEFAULT_RESPONSE_TIMEOUT_MILLIS,
  MIN_DRAIN_BYTES_PER_SECOND,
} from './http/serving-limits.js';
export { DEFAULT_GZIP_LEVEL } from './compress/parallel-gzip.js';
