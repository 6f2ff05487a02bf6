import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import type { ExpositionKind } from './config.js';
import { FastPrometheusReader } from './exposition/index.js';
import type { MetricsHandler } from './http-server.js';
import type { Logger } from '@agentconn/core';

export interface MetricsReader {
  readonly reader: MetricReader;
  readonly handler: MetricsHandler;
}

/** The reader that feeds `/metrics`: ours (`fast`) or `@opentelemetry/exporter-prometheus` (`otel`). */
export function createMetricsReader(kind: ExpositionKind, logger: Logger): MetricsReader {
  if (kind === 'otel') {
    const exporter = new PrometheusExporter({ preventServerStart: true });
    return { reader: exporter, handler: (request, response) => exporter.getMetricsRequestHandler(request, response) };
  }
  const reader = new FastPrometheusReader({ logger });
  return { reader, handler: reader.handleMetricsRequest };
}
