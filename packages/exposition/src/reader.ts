import type { HrTime } from '@opentelemetry/api';
import type { Writable } from 'node:stream';
import {
  AggregationTemporality,
  AggregationType,
  InstrumentType,
  MetricReader,
  type CollectionResult,
  type MetricProducer,
  type MetricReaderOptions,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CumulativeState } from './collect/cumulative-state.js';
import { DEFAULT_CHUNK_BYTES } from './format/byte-sink.js';
import type { ExemplarLookup } from './format/exemplar.js';
import { OpenMetricsSerializer } from './format/openmetrics.js';
import { PrometheusTextSerializer, type PrometheusSerializerOptions } from './format/prometheus-text.js';
import type { ExpositionFormat } from './http/negotiate.js';
import { ScrapeResponder } from './http/scrape-responder.js';
import type { ServingOptions } from './http/serving-limits.js';
import { writeChunks, type WriteOutcome } from './http/write-chunks.js';
import { diagLogger, errorMessage, type Logger } from './logger.js';

export interface FastPrometheusReaderOptions extends PrometheusSerializerOptions, ServingOptions {
  /** Path answered by `handleMetricsRequest`. Default `/metrics`. */
  readonly endpoint?: string;
  /** Bytes per write to the response. Default 256 KiB. */
  readonly chunkBytes?: number;
  /** Time the SDK gives observable callbacks during a scrape. Default: no limit (as upstream). */
  readonly collectTimeoutMillis?: number;
  /** Extra producers merged into every scrape (experimental in the SDK, as upstream). */
  readonly metricProducers?: MetricProducer[];
  /** Per-instrument-type cardinality limit when no View sets one. Default: the SDK's (2000). */
  readonly cardinalitySelector?: MetricReaderOptions['cardinalitySelector'];
  /** Histogram exemplars for OpenMetrics scrapes (e.g. `@agentconn/core`'s `recorder.exemplars`). Default none. */
  readonly exemplars?: ExemplarLookup;
  /**
   * Keep writing an observable gauge's label set that its callback no longer observes, at its last value, as
   * `PrometheusExporter` does. Default `false`: only what the callbacks observed at this scrape is written (the
   * OpenTelemetry specification's rule; the SDK collects observable gauges as deltas for it).
   */
  readonly repeatUnobservedGauges?: boolean;
}

export const DEFAULT_METRICS_ENDPOINT = '/metrics';

const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

/** The component type upstream's exporter reports for SDK self-observability: the same kind of reader. */
const OTEL_COMPONENT_TYPE = 'prometheus_http_text_metric_exporter';

/**
 * A pull `MetricReader` that serves the Prometheus text format fast: default aggregations and cumulative values
 * like `PrometheusExporter`, the same text, but written in chunks with backpressure and without a per-line
 * object, so a hundred thousand series scrape in well under a second. Histograms are collected from the SDK as deltas and
 * added up here, so a scrape pays for the series that changed, not for every series. It owns no server: hand
 * `handleMetricsRequest` to an `http.Server` (or use `createMetricsServer`).
 */
export class FastPrometheusReader extends MetricReader {
  readonly #serializer: PrometheusTextSerializer;
  readonly #openMetrics: OpenMetricsSerializer;
  readonly #chunkBytes: number;
  readonly #collectTimeoutMillis: number | undefined;
  readonly #logger: Logger;
  /** The cumulative series of the histograms, collected from the SDK as deltas. */
  readonly #cumulative: CumulativeState;
  readonly #responder: ScrapeResponder;

  constructor(options: FastPrometheusReaderOptions = {}) {
    // Histograms (the series that grow with the fleet) as deltas, made cumulative again by `collect()`; all of
    // them cumulative as upstream when every point must carry its own collection's timestamp.
    const deltaHistograms = options.appendTimestamp !== true;
    // Observable gauges as deltas too, passed on as they come: the SDK then reports only the label sets their
    // callbacks observed this time (as cumulatives it repeats a label set's last value for ever).
    const deltaGauges = options.repeatUnobservedGauges !== true;
    const readerOptions: MetricReaderOptions = {
      aggregationSelector: () => ({ type: AggregationType.DEFAULT }),
      aggregationTemporalitySelector: (type) =>
        (deltaHistograms && type === InstrumentType.HISTOGRAM) || (deltaGauges && type === InstrumentType.OBSERVABLE_GAUGE)
          ? AggregationTemporality.DELTA
          : AggregationTemporality.CUMULATIVE,
      otelComponentType: OTEL_COMPONENT_TYPE,
    };
    if (options.metricProducers !== undefined) readerOptions.metricProducers = options.metricProducers;
    if (options.cardinalitySelector !== undefined) readerOptions.cardinalitySelector = options.cardinalitySelector;
    super(readerOptions);
    const endpoint = options.endpoint ?? DEFAULT_METRICS_ENDPOINT;
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) {
      throw new RangeError(`chunkBytes must be an integer from 1 to ${MAX_CHUNK_BYTES}, got ${chunkBytes}`);
    }
    this.#chunkBytes = chunkBytes;
    this.#collectTimeoutMillis = options.collectTimeoutMillis;
    this.#logger = options.logger ?? diagLogger;
    this.#cumulative = new CumulativeState((message, fields) => this.#logger.warn(message, fields));
    this.#serializer = new PrometheusTextSerializer(options);
    this.#openMetrics = new OpenMetricsSerializer(options);
    const serializerFor = (format: ExpositionFormat) => this.#serializerFor(format);
    this.#responder = new ScrapeResponder(
      {
        collect: () => this.#collect(),
        chunks: (collection, format, bytes, pool, chunkOptions) => serializerFor(format).chunks(collection.resourceMetrics, bytes, pool, chunkOptions),
      },
      {
        ...options,
        endpoint: endpoint.startsWith('/') ? endpoint : '/' + endpoint,
        chunkBytes,
        logger: this.#logger,
      },
    );
  }

  /** The path `handleMetricsRequest` answers. */
  get endpoint(): string {
    return this.#responder.endpoint;
  }

  /**
   * An `http.Server` request listener (bound, pass it as is): GET/HEAD on the endpoint get the exposition,
   * OpenMetrics 1.0 when the `Accept` header prefers it (with exemplars), otherwise
   * `Content-Type: text/plain; version=0.0.4; charset=utf-8`, gzip when `Accept-Encoding` takes it; other
   * paths 404, other methods 405; beyond `maxConcurrentScrapes`, 503 with `Retry-After`. A failed collect
   * answers 500; nothing here throws. HEAD gets the headers a GET would start with, without a collection (so
   * it never takes a slot, and a failing collection shows on GET only).
   */
  readonly handleMetricsRequest = (request: IncomingMessage, response: ServerResponse): void => this.#responder.handle(request, response);

  /** Collects and returns the whole exposition as one string (tests, debugging). Rejects if collect fails. */
  async serializeToString(format: ExpositionFormat = 'prometheus-text'): Promise<string> {
    const { resourceMetrics } = await this.#collect();
    return this.#serializerFor(format).serialize(resourceMetrics);
  }

  /**
   * Collects and writes the exposition to `out` in chunks, waiting for `drain` when asked. Does not end `out`.
   * Resolves `'closed'` if `out` was destroyed before the end. Rejects if collect or serialization fails.
   */
  async writeTo(out: Writable, format: ExpositionFormat = 'prometheus-text'): Promise<WriteOutcome> {
    const { resourceMetrics } = await this.#collect();
    // Fresh buffers, no recycling: a Writable may keep a chunk after its write callback (collecting streams do).
    return writeChunks(this.#serializerFor(format).chunks(resourceMetrics, this.#chunkBytes), out);
  }

  /**
   * A cumulative collection, as upstream's reader returns it: the same series, values, order and times. The SDK
   * collects the histograms as deltas (only the series recorded since the last collection); they are made
   * cumulative again here.
   */
  override async collect(options?: Parameters<MetricReader['collect']>[0]): Promise<CollectionResult> {
    const result = await this.#collectCumulative(options);
    return { resourceMetrics: this.#cumulative.withCollectionTime(result.resourceMetrics, result.endTime), errors: result.errors };
  }

  /** For scrapes: the series that did not change are the same data point objects as at the last collection. */
  async #collectCumulative(options?: Parameters<MetricReader['collect']>[0]): Promise<CollectionResult & { endTime: HrTime }> {
    const result = await super.collect(options);
    const endTime = collectionTime(result.resourceMetrics);
    return { resourceMetrics: this.#cumulative.accumulate(result.resourceMetrics), errors: result.errors, endTime };
  }

  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }

  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }

  #serializerFor(format: ExpositionFormat): PrometheusTextSerializer | OpenMetricsSerializer {
    return format === 'openmetrics' ? this.#openMetrics : this.#serializer;
  }

  async #collect(): Promise<CollectionResult> {
    const result =
      this.#collectTimeoutMillis === undefined
        ? await this.#collectCumulative()
        : await this.#collectCumulative({ timeoutMillis: this.#collectTimeoutMillis });
    if (result.errors.length > 0) {
      // Partial results are still served (as upstream does): one failing callback must not hide the rest.
      this.#logger.error('metrics collection had errors; serving what was collected', {
        errors: result.errors.length,
        error: errorMessage(result.errors[0]),
      });
    }
    return result;
  }
}

/** When the SDK collected (its points' `endTime`), or now when it reported no point at all. */
function collectionTime(resourceMetrics: ResourceMetrics): HrTime {
  for (const { metrics } of resourceMetrics.scopeMetrics) {
    for (const metric of metrics) {
      const point = metric.dataPoints[0];
      if (point !== undefined) return point.endTime;
    }
  }
  const millis = Date.now();
  return [Math.floor(millis / 1000), (millis % 1000) * 1_000_000];
}
