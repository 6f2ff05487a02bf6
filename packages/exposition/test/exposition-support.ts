import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';

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
