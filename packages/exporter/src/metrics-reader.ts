import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import type { ExpositionKind } from './config.js';
import { FastPrometheusReader } from '@agentconn/exposition';
import type { ExemplarLookup, MetricsEndpoint } from '@agentconn/exposition';
import { observableGaugesAsDelta, type Logger } from '@agentconn/core';

export interface MetricsReader {
  readonly reader: MetricReader;
  /** What the HTTP server serves. */
  readonly endpoint: MetricsEndpoint;
}

/**
 * The reader that feeds `/metrics`: ours (`fast`, Prometheus text or OpenMetrics with `exemplars` as the
 * scraper asks) or `@opentelemetry/exporter-prometheus` (`otel`, Prometheus text only, no exemplars).
 */
export function createMetricsReader(
  kind: ExpositionKind,
  logger: Logger,
  options: {
    readonly exemplars?: ExemplarLookup;
    readonly withoutScopeLabels?: boolean;
    /** `fast` only: see `FastPrometheusReaderOptions`. */
    readonly responseTimeoutMillis?: number;
    readonly drainTimeoutMillis?: number;
  } = {},
): MetricsReader {
  const withoutScopeInfo = options.withoutScopeLabels ?? false;
  const { exemplars } = options;
  if (kind === 'otel') {
    // The awaiting gauges leave a label set with no waiting agent unobserved: as deltas it leaves the exposition.
    const exporter = observableGaugesAsDelta(new PrometheusExporter({ preventServerStart: true, withoutScopeInfo }));
    const endpoint = '/metrics';
    return {
      reader: exporter,
      endpoint: {
        endpoint,
        handleMetricsRequest(request, response) {
          if ((request.url ?? '/').split('?')[0] !== endpoint) {
            response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: metrics are at ${endpoint}\n`);
          } else if (request.method !== 'GET' && request.method !== 'HEAD') {
            response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method Not Allowed\n');
          } else exporter.getMetricsRequestHandler(request, response);
        },
      },
    };
  }
  const { responseTimeoutMillis, drainTimeoutMillis } = options;
  const reader = new FastPrometheusReader({
    logger,
    withoutScopeInfo,
    ...(exemplars !== undefined && { exemplars }),
    ...(responseTimeoutMillis !== undefined && { responseTimeoutMillis }),
    ...(drainTimeoutMillis !== undefined && { drainTimeoutMillis }),
  });
  return { reader, endpoint: reader };
}
