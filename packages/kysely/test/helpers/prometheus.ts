import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { FirstConnectionRecorder, firstConnectionView, type LabelKey } from '@agentconn/core';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';

/**
 * The real pipeline a user gets: a MeterProvider with the core's View and the real PrometheusExporter,
 * served over HTTP by its own request handler on a loopback port.
 */
export class PrometheusHarness {
  readonly exporter = new PrometheusExporter({ preventServerStart: true });
  readonly meterProvider: MeterProvider;
  readonly logger = createMemoryLogger();
  readonly recorder: FirstConnectionRecorder;
  readonly #server: Server = createServer((req, res) => this.exporter.getMetricsRequestHandler(req, res));

  /** `labels`: the series labels (default the core's, Coder #24355's two). */
  constructor(options: { readonly labels?: readonly LabelKey[] } = {}) {
    const metric = options.labels === undefined ? {} : { labels: options.labels };
    this.meterProvider = new MeterProvider({ readers: [this.exporter], views: [firstConnectionView(metric)] });
    this.recorder = new FirstConnectionRecorder({ meterProvider: this.meterProvider, logger: this.logger, ...metric });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  /** GET /metrics, as Prometheus would. */
  async scrape(): Promise<string> {
    const { port } = this.#server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!response.ok) throw new Error(`scrape failed: HTTP ${response.status}`);
    return response.text();
  }

  async shutdown(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.meterProvider.shutdown();
  }
}
