import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import type { ExpositionKind } from './config.js';
import type { MetricsHandler } from './http-server.js';

export interface MetricsExposition {
  readonly reader: MetricReader;
  readonly handler: MetricsHandler;
}

/** The reader that feeds `/metrics`, and the request handler that serializes it. */
export function createExposition(kind: ExpositionKind): MetricsExposition {
  switch (kind) {
    case 'otel':
    case 'fast': {
      const exporter = new PrometheusExporter({ preventServerStart: true });
      return { reader: exporter, handler: (request, response) => exporter.getMetricsRequestHandler(request, response) };
    }
  }
}
