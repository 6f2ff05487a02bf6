import type { Counter, Meter } from '@opentelemetry/api';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { SELF_METRICS, type Logger } from '@agentconn/core';

type ExportResult = Parameters<Parameters<PushMetricExporter['export']>[1]>[0];

/** `ExportResultCode.SUCCESS` of `@opentelemetry/core`. */
const SUCCESS = 0;

/** How long stopping waits for the last OTLP export (a dead endpoint would otherwise hold the stop for its retries). */
export const OTLP_SHUTDOWN_TIMEOUT_MS = 3000;

/**
 * An OTLP exporter that says how it is doing: one warning when exports start failing (with the endpoint and the
 * error), one info line when they work again (with how many failed), and `agentconn_otlp_exports_total{outcome}`
 * once `countWith` gave it a meter. Everything else is the wrapped exporter's.
 */
export class ObservedMetricExporter implements PushMetricExporter {
  readonly #inner: PushMetricExporter;
  readonly #endpoint: string;
  readonly #logger: Logger;
  #counter: Counter | undefined;
  #failedInARow = 0;

  constructor(inner: PushMetricExporter, endpoint: string, logger: Logger) {
    this.#inner = inner;
    this.#endpoint = endpoint;
    this.#logger = logger;
    const temporality = inner.selectAggregationTemporality?.bind(inner);
    if (temporality !== undefined) this.selectAggregationTemporality = temporality;
    const aggregation = inner.selectAggregation?.bind(inner);
    if (aggregation !== undefined) this.selectAggregation = aggregation;
  }

  /** The meter of the provider this exporter feeds (it exists only after the exporter). */
  countWith(meter: Meter): void {
    const { name, description, unit } = SELF_METRICS.otlpExports;
    this.#counter = meter.createCounter(name, { description, unit });
  }

  export(metrics: Parameters<PushMetricExporter['export']>[0], resultCallback: (result: ExportResult) => void): void {
    this.#inner.export(metrics, (result) => {
      this.#observe(result);
      resultCallback(result);
    });
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  // Present only when the wrapped exporter has them: the reader falls back to its defaults otherwise.
  readonly selectAggregationTemporality?: NonNullable<PushMetricExporter['selectAggregationTemporality']>;
  readonly selectAggregation?: NonNullable<PushMetricExporter['selectAggregation']>;

  #observe(result: ExportResult): void {
    if (result.code === SUCCESS) {
      this.#counter?.add(1, { outcome: 'success' });
      if (this.#failedInARow > 0) {
        this.#logger.info('OTLP export recovered', { endpoint: this.#endpoint, failed_exports: this.#failedInARow });
      }
      this.#failedInARow = 0;
      return;
    }
    this.#counter?.add(1, { outcome: 'failure' });
    this.#failedInARow++;
    if (this.#failedInARow === 1) {
      this.#logger.warn('OTLP export failed', {
        endpoint: this.#endpoint,
        error: describe(result.error),
        note: 'logged once per outage; agentconn_otlp_exports_total{outcome="failure"} counts every failed export',
      });
    }
  }
}

function describe(error: Error | undefined): string {
  if (error === undefined) return 'unknown error';
  // fetch failures hide the reason (ECONNREFUSED…) in their cause.
  const cause = (error as Error & { cause?: unknown }).cause;
  const inner = cause instanceof Error ? `: ${(cause as NodeJS.ErrnoException).code ?? cause.message}` : '';
  return `${error.message}${inner}`;
}
