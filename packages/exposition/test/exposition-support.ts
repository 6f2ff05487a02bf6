import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { type Attributes, ValueType } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  type DataPoint,
  type Histogram,
  type MetricDescriptor,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';

/** The official exporter's text, through its public request handler (its server never starts). */
export function officialText(exporter: PrometheusExporter): Promise<string> {
  return new Promise((resolve, reject) => {
    const response = {
      statusCode: 0,
      setHeader(): void {},
      end(body: string): void {
        if (response.statusCode === 200) resolve(body);
        else reject(new Error(`official exporter answered ${response.statusCode}`));
      },
    };
    exporter.getMetricsRequestHandler({} as IncomingMessage, response as unknown as ServerResponse);
  });
}

/** One collection holding one histogram stream: what a metric producer (or a test) hands the reader. */
export function histogramCollection(
  points: Array<DataPoint<Histogram>>,
  options: {
    readonly descriptor?: MetricDescriptor;
    readonly temporality?: AggregationTemporality;
    readonly scope?: ScopeMetrics['scope'];
    readonly resource?: Attributes;
  } = {},
): ResourceMetrics {
  return {
    resource: resourceFromAttributes(options.resource ?? {}),
    scopeMetrics: [
      {
        scope: options.scope ?? { name: 'test' },
        metrics: [
          {
            descriptor: options.descriptor ?? { name: 'h', description: '', unit: '', valueType: ValueType.DOUBLE },
            aggregationTemporality: options.temporality ?? AggregationTemporality.CUMULATIVE,
            dataPointType: DataPointType.HISTOGRAM,
            dataPoints: points,
          },
        ],
      },
    ],
  };
}
