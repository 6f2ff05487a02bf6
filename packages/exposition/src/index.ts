export { FastPrometheusReader, DEFAULT_METRICS_ENDPOINT, type FastPrometheusReaderOptions } from './reader.js';
export {
  createMetricsServer,
  DEFAULT_METRICS_HOST,
  DEFAULT_METRICS_PORT,
  type MetricsEndpoint,
  type MetricsServer,
  type MetricsServerOptions,
  type Server,
} from './server.js';
export { PrometheusTextSerializer, DEFAULT_CHUNK_BYTES, type PrometheusSerializerOptions } from './serializer.js';
export { writeChunks, type WriteOutcome } from './stream.js';
export { PROMETHEUS_TEXT_CONTENT_TYPE } from './format.js';
