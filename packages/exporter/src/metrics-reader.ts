import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import type { ExpositionKind } from './config.js';
import { FastPrometheusReader } from '@agentconn/exposition';
import type { ExemplarLookup, MetricsEndpoint } from '@agentconn/exposition';
import type { Logger } from '@agentconn/core';

export interface MetricsReader {
  readonly reader: MetricReader;
  /** What the HTTP server serves. */
  readonly endpoint: MetricsEndpoint;
}

/**
 * The reader that feeds `/metrics`: ours (`fast`, Prometheus text or OpenMetrics with `exemplars` as the
 * scraper asks) or `@opentelemetry/exporter-prometheus` (`otel`, Prometheus text only, no exemplars).
 */
export function createMetricsReader(kind: ExpositionKind, logger: Logger, exemplars?: ExemplarLookup): MetricsReader {
  if (kind === 'otel') {
    const exporter = new PrometheusExporter({ preventServerStart: true });
    const endpoint = '/metrics';
    return {
      reader: exporter,
      endpoint: {
        endpoint,
        handleMetricsRequest(request, response) {
          if ((request.url ?? '/').split('?')[0] === endpoint) exporter.getMetricsRequestHandler(request, response);
          else response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: metrics are at ${endpoint}\n`);
        },
      },
    };
  }
  const reader = new FastPrometheusReader({ logger, ...(exemplars !== undefined && { exemplars }) });
  return { reader, endpoint: reader };
}
