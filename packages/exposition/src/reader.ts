import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import {
  AggregationTemporality,
  AggregationType,
  MetricReader,
  type CollectionResult,
  type MetricProducer,
  type MetricReaderOptions,
} from '@opentelemetry/sdk-metrics';
import { diagLogger, errorMessage, type Logger } from '@agentconn/core';
import type { ExemplarLookup } from './exemplar.js';
import { PROMETHEUS_TEXT_CONTENT_TYPE } from './format.js';
import { negotiateExpositionFormat, type ExpositionFormat } from './negotiate.js';
import { OPENMETRICS_CONTENT_TYPE, OpenMetricsSerializer } from './openmetrics.js';
import { DEFAULT_CHUNK_BYTES, PrometheusTextSerializer, type PrometheusSerializerOptions } from './serializer.js';
import { ChunkPool, chunkCapacity } from './sink.js';
import { writeChunks, type WriteOutcome } from './stream.js';

export interface FastPrometheusReaderOptions extends PrometheusSerializerOptions {
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
}

export const DEFAULT_METRICS_ENDPOINT = '/metrics';

const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

/** Chunk buffers kept for reuse between writes and scrapes (8 × 320 KiB by default). */
const CHUNK_POOL_LIMIT = 8;

/** The component type upstream's exporter reports for SDK self-observability: the same kind of reader. */
const OTEL_COMPONENT_TYPE = 'prometheus_http_text_metric_exporter';

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * A pull `MetricReader` that serves the Prometheus text format fast: cumulative temporality and default
 * aggregations like `PrometheusExporter`, the same text, but written in chunks with backpressure and without
 * a per-line object, so 100k series scrape in well under a second. It owns no server: hand
 * `handleMetricsRequest` to an `http.Server` (or use `createMetricsServer`).
 */
export class FastPrometheusReader extends MetricReader {
  readonly #serializer: PrometheusTextSerializer;
  readonly #openMetrics: OpenMetricsSerializer;
  readonly #endpoint: string;
  readonly #chunkBytes: number;
  /**
   * For HTTP responses only, shared by concurrent scrapes: a chunk comes back once its socket write completed,
   * when the kernel has the bytes.
   */
  readonly #pool: ChunkPool;
  readonly #collectTimeoutMillis: number | undefined;
  readonly #logger: Logger;

  constructor(options: FastPrometheusReaderOptions = {}) {
    const readerOptions: MetricReaderOptions = {
      aggregationSelector: () => ({ type: AggregationType.DEFAULT }),
      aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE,
      otelComponentType: OTEL_COMPONENT_TYPE,
    };
    if (options.metricProducers !== undefined) readerOptions.metricProducers = options.metricProducers;
    if (options.cardinalitySelector !== undefined) readerOptions.cardinalitySelector = options.cardinalitySelector;
    super(readerOptions);
    const endpoint = options.endpoint ?? DEFAULT_METRICS_ENDPOINT;
    this.#endpoint = endpoint.startsWith('/') ? endpoint : '/' + endpoint;
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) {
      throw new RangeError(`chunkBytes must be an integer from 1 to ${MAX_CHUNK_BYTES}, got ${chunkBytes}`);
    }
    this.#chunkBytes = chunkBytes;
    this.#pool = new ChunkPool(chunkCapacity(chunkBytes), CHUNK_POOL_LIMIT);
    this.#collectTimeoutMillis = options.collectTimeoutMillis;
    this.#logger = options.logger ?? diagLogger;
    this.#serializer = new PrometheusTextSerializer(options);
    this.#openMetrics = new OpenMetricsSerializer(options);
  }

  /** The path `handleMetricsRequest` answers. */
  get endpoint(): string {
    return this.#endpoint;
  }

  /**
   * An `http.Server` request listener (bound, pass it as is): GET/HEAD on the endpoint get the exposition,
   * OpenMetrics 1.0 when the `Accept` header prefers it (with exemplars), otherwise
   * `Content-Type: text/plain; version=0.0.4; charset=utf-8`; other paths 404, other methods 405. A
   * failed collect answers 500; nothing here throws.
   */
  readonly handleMetricsRequest = (request: IncomingMessage, response: ServerResponse): void => {
    if (pathOf(request.url) !== this.#endpoint) {
      respondText(response, 404, 'Not Found\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      respondText(response, 405, 'Method Not Allowed\n');
      return;
    }
    this.#serve(request.method === 'HEAD', response, negotiateExpositionFormat(request.headers.accept)).catch((error: unknown) => {
      // #serve handles its own errors; this is the last guard so a scrape can never crash the host.
      this.#logger.error('metrics response failed', { error: errorMessage(error) });
      if (!response.headersSent) respondText(response, 500, 'failed to write metrics\n');
      else response.destroy();
    });
  };

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
        ? await this.collect()
        : await this.collect({ timeoutMillis: this.#collectTimeoutMillis });
    if (result.errors.length > 0) {
      // Partial results are still served (as upstream does): one failing callback must not hide the rest.
      this.#logger.error('metrics collection had errors; serving what was collected', {
        errors: result.errors.length,
        error: errorMessage(result.errors[0]),
      });
    }
    return result;
  }

  async #serve(headOnly: boolean, response: ServerResponse, format: ExpositionFormat): Promise<void> {
    const contentType = format === 'openmetrics' ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_TEXT_CONTENT_TYPE;
    let collected: CollectionResult;
    try {
      collected = await this.#collect();
    } catch (error) {
      this.#logger.error('metrics collection failed', { error: errorMessage(error) });
      respondText(response, 500, 'failed to collect metrics\n');
      return;
    }
    if (headOnly) {
      response.writeHead(200, { 'Content-Type': contentType, Vary: 'Accept' });
      response.end();
      return;
    }
    const pool = this.#pool;
    const chunks = this.#serializerFor(format).chunks(collected.resourceMetrics, this.#chunkBytes, pool);
    let first: IteratorResult<Uint8Array, void>;
    try {
      // The first chunk before the status line: an error this early still becomes a clean 500.
      first = chunks.next();
    } catch (error) {
      this.#logger.error('metrics serialization failed', { error: errorMessage(error) });
      respondText(response, 500, 'failed to serialize metrics\n');
      return;
    }
    response.writeHead(200, { 'Content-Type': contentType, Vary: 'Accept' });
    let outcome: WriteOutcome;
    try {
      outcome = await writeChunks(chunks, response, first, (chunk) => pool.release(chunk));
    } catch (error) {
      // Headers are out: cut the connection so the scraper sees a failed scrape, not a truncated success.
      this.#logger.error('metrics serialization failed mid-response', { error: errorMessage(error) });
      response.destroy();
      return;
    }
    if (outcome === 'complete') response.end();
  }
}

function respondText(response: ServerResponse, status: number, body: string): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end(body);
}
