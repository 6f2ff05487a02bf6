import type { IncomingMessage, ServerResponse } from 'node:http';
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
import { diagLogger, errorMessage, type Logger } from './logger.js';
import type { ExemplarLookup } from './format/exemplar.js';
import { PROMETHEUS_TEXT_CONTENT_TYPE } from './format/text-syntax.js';
import { negotiateExpositionFormat, type ExpositionFormat } from './http/negotiate.js';
import { OPENMETRICS_CONTENT_TYPE, OpenMetricsSerializer } from './format/openmetrics.js';
import { PrometheusTextSerializer, type PrometheusSerializerOptions } from './format/prometheus-text.js';
import { type ChunkOptions, ChunkPool, chunkCapacity, DEFAULT_CHUNK_BYTES } from './format/byte-sink.js';
import { writeChunks, type WriteOutcome } from './http/write-chunks.js';
import {
  ConcurrencyLimit,
  DEFAULT_MAX_CONCURRENT_SCRAPES,
  DEFAULT_RENDER_SHARE_MILLIS,
  DEFAULT_RESPONSE_TIMEOUT_MILLIS,
  RETRY_AFTER_SECONDS,
  responseDeadline,
  timeoutOption,
} from './http/serving-limits.js';
import { acceptsGzip, DEFAULT_GZIP_LEVEL, GzipSegmentCache, parallelGzip } from './compress/parallel-gzip.js';
import { DEFAULT_KEEP_BYTES, LatestRenderings, SharedRendering, SharedTask, WRITE_AHEAD_BYTES, writeShared, type ChunkSource } from './http/shared-rendering.js';
import { CumulativeState } from './collect/cumulative-state.js';

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
  /** `/metrics` responses in flight at most (GET and HEAD); beyond, 503 with `Retry-After`. Default 10. */
  readonly maxConcurrentScrapes?: number;
  /** A response not finished within this time has its connection cut (a reader too slow). Default 60 000 ms. */
  readonly responseTimeoutMillis?: number;
  /**
   * A scrape arriving while a rendering younger than this is still being written from its first byte gets the
   * same bytes instead of its own collection. Default 5000 ms.
   */
  readonly renderShareMillis?: number;
  /** Answer gzip when the request's `Accept-Encoding` takes it. Default `true`. */
  readonly gzip?: boolean;
  /** zlib level of that gzip, 1 (fastest) to 9. Default 1. */
  readonly gzipLevel?: number;
}

export const DEFAULT_METRICS_ENDPOINT = '/metrics';

const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * Chunk buffers kept for reuse between scrapes: as many as a rendering keeps for responses that may still join
 * (`DEFAULT_KEEP_BYTES`), plus a few in the sockets' hands, so that a steady scrape allocates none (58 at 100k
 * series with 8 kept: 19 MB of new ArrayBuffers a scrape, whose external-memory pressure started a full garbage
 * collection every few scrapes and made the median scrape 1.4× slower). The pool holds no more than a
 * rendering holds anyway. (Capped for tiny chunks, where a few more allocations do not matter.)
 */
function chunkPoolLimit(chunkBytes: number): number {
  return Math.min(1024, Math.ceil(DEFAULT_KEEP_BYTES / chunkBytes) + 8);
}

/** The component type upstream's exporter reports for SDK self-observability: the same kind of reader. */
const OTEL_COMPONENT_TYPE = 'prometheus_http_text_metric_exporter';

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * A pull `MetricReader` that serves the Prometheus text format fast: default aggregations and cumulative values
 * like `PrometheusExporter`, the same text, but written in chunks with backpressure and without a per-line
 * object, so 100k series scrape in well under a second. Histograms are collected from the SDK as deltas and
 * added up here, so a scrape pays for the series that changed, not for every series. It owns no server: hand
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
  readonly #limit: ConcurrencyLimit;
  readonly #responseTimeoutMillis: number;
  readonly #renderings: LatestRenderings;
  readonly #collections: SharedTask<CollectionResult>;
  readonly #gzipLevel: number | undefined;
  /** Compressed segments of unchanged chunks, reused between gzip scrapes: one cache per format. */
  readonly #gzipCaches: ReadonlyMap<ExpositionFormat, GzipSegmentCache> | undefined;
  readonly #shareMillis: number;
  /** The cumulative series of the histograms, collected from the SDK as deltas. */
  readonly #cumulative: CumulativeState;

  constructor(options: FastPrometheusReaderOptions = {}) {
    // Histograms (the series that grow with the fleet) as deltas, made cumulative again by `collect()`; all of
    // them cumulative as upstream when every point must carry its own collection's timestamp.
    const deltaHistograms = options.appendTimestamp !== true;
    const readerOptions: MetricReaderOptions = {
      aggregationSelector: () => ({ type: AggregationType.DEFAULT }),
      aggregationTemporalitySelector: (type) =>
        deltaHistograms && type === InstrumentType.HISTOGRAM ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE,
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
    this.#pool = new ChunkPool(chunkCapacity(chunkBytes), chunkPoolLimit(chunkBytes));
    this.#collectTimeoutMillis = options.collectTimeoutMillis;
    this.#logger = options.logger ?? diagLogger;
    this.#cumulative = new CumulativeState((message, fields) => this.#logger.warn(message, fields));
    this.#serializer = new PrometheusTextSerializer(options);
    this.#openMetrics = new OpenMetricsSerializer(options);
    this.#limit = new ConcurrencyLimit(options.maxConcurrentScrapes ?? DEFAULT_MAX_CONCURRENT_SCRAPES);
    this.#responseTimeoutMillis = timeoutOption('responseTimeoutMillis', options.responseTimeoutMillis ?? DEFAULT_RESPONSE_TIMEOUT_MILLIS);
    const shareMillis = options.renderShareMillis ?? DEFAULT_RENDER_SHARE_MILLIS;
    this.#renderings = new LatestRenderings();
    this.#shareMillis = shareMillis;
    this.#collections = new SharedTask(shareMillis);
    const gzipLevel = options.gzipLevel ?? DEFAULT_GZIP_LEVEL;
    if (!Number.isInteger(gzipLevel) || gzipLevel < 1 || gzipLevel > 9) throw new RangeError(`gzipLevel must be an integer from 1 to 9, got ${gzipLevel}`);
    this.#gzipLevel = options.gzip === false ? undefined : gzipLevel;
    this.#gzipCaches =
      this.#gzipLevel === undefined
        ? undefined
        : new Map<ExpositionFormat, GzipSegmentCache>([
            ['prometheus-text', new GzipSegmentCache(this.#gzipLevel)],
            ['openmetrics', new GzipSegmentCache(this.#gzipLevel)],
          ]);
  }

  /** The path `handleMetricsRequest` answers. */
  get endpoint(): string {
    return this.#endpoint;
  }

  /**
   * An `http.Server` request listener (bound, pass it as is): GET/HEAD on the endpoint get the exposition,
   * OpenMetrics 1.0 when the `Accept` header prefers it (with exemplars), otherwise
   * `Content-Type: text/plain; version=0.0.4; charset=utf-8`, gzip when `Accept-Encoding` takes it; other
   * paths 404, other methods 405; beyond `maxConcurrentScrapes`, 503 with `Retry-After`. A failed collect
   * answers 500; nothing here throws.
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
    const release = this.#limit.tryAcquire();
    if (release === undefined) {
      response.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
      respondText(response, 503, 'too many concurrent scrapes\n');
      return;
    }
    const cancelDeadline = responseDeadline(response, this.#responseTimeoutMillis, () =>
      this.#logger.debug('metrics response timed out; connection closed', { timeout_ms: this.#responseTimeoutMillis }),
    );
    response.once('close', release);
    this.#serve(request, response, negotiateExpositionFormat(request.headers.accept))
      .catch((error: unknown) => {
        // #serve handles its own errors; this is the last guard so a scrape can never crash the host.
        this.#logger.error('metrics response failed', { error: errorMessage(error) });
        if (!response.headersSent) respondText(response, 500, 'failed to write metrics\n');
        else response.destroy();
      })
      .finally(() => {
        cancelDeadline();
        release();
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

  async #serve(request: IncomingMessage, response: ServerResponse, format: ExpositionFormat): Promise<void> {
    const gzipLevel = this.#gzipLevel;
    const gzip = gzipLevel !== undefined && acceptsGzip(request.headers['accept-encoding']);
    const headers: Record<string, string> = {
      'Content-Type': format === 'openmetrics' ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_TEXT_CONTENT_TYPE,
      Vary: gzipLevel === undefined ? 'Accept' : 'Accept, Accept-Encoding',
    };
    if (gzip) headers['Content-Encoding'] = 'gzip';
    if (request.method === 'HEAD') {
      try {
        await this.#collect();
      } catch (error) {
        this.#logger.error('metrics collection failed', { error: errorMessage(error) });
        respondText(response, 500, 'failed to collect metrics\n');
        return;
      }
      response.writeHead(200, headers);
      response.end();
      return;
    }
    const pool = this.#pool;
    const release = (chunk: Uint8Array): void => pool.release(chunk);
    const share = { maxAgeMillis: this.#shareMillis };
    const cache = this.#gzipCaches?.get(format);
    const rendering = gzip
      ? this.#renderings.join(`${format}+gzip`, () => new SharedRendering(parallelGzip(this.#renderSource(format, { recordInputs: true }), { level: gzipLevel, release, ...(cache !== undefined && { cache }) }), undefined, share))
      : this.#renderings.join(format, () => new SharedRendering(this.#renderSource(format), release, share));
    try {
      // The first chunk before the status line: an error this early still becomes a clean 500.
      await rendering.chunk(0);
    } catch (error) {
      rendering.leave(0);
      respondText(response, 500, error instanceof CollectFailed ? 'failed to collect metrics\n' : 'failed to serialize metrics\n');
      return;
    }
    response.writeHead(200, headers);
    let outcome: WriteOutcome;
    try {
      outcome = await writeShared(rendering, response, WRITE_AHEAD_BYTES);
    } catch {
      // Headers are out: cut the connection so the scraper sees a failed scrape, not a truncated success.
      response.destroy();
      return;
    }
    if (outcome === 'complete') response.end();
  }

  /** One collection and its serialization, as chunks for a shared rendering; failures are logged here, once. */
  #renderSource(format: ExpositionFormat, options: ChunkOptions = {}): ChunkSource {
    let chunks: Generator<Uint8Array, void, undefined> | undefined;
    let first = true;
    let releaseCollection: (() => void) | undefined;
    let closed = false;
    return {
      next: async () => {
        if (closed) return undefined;
        if (chunks === undefined) {
          let collected: CollectionResult;
          try {
            const shared = this.#collections.acquire(() => this.#collect());
            releaseCollection = shared.release;
            collected = await shared.value;
            if (closed) {
              releaseCollection();
              return undefined;
            }
          } catch (error) {
            this.#logger.error('metrics collection failed', { error: errorMessage(error) });
            throw new CollectFailed(error);
          }
          chunks = this.#serializerFor(format).chunks(collected.resourceMetrics, this.#chunkBytes, this.#pool, options);
        }
        try {
          const result = chunks.next();
          first = false;
          if (result.done === true) releaseCollection?.();
          return result.done === true ? undefined : result.value;
        } catch (error) {
          releaseCollection?.();
          this.#logger.error(first ? 'metrics serialization failed' : 'metrics serialization failed mid-response', {
            error: errorMessage(error),
          });
          throw error;
        }
      },
      close: () => {
        closed = true;
        chunks?.return();
        releaseCollection?.();
      },
    };
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

/** The collection failed (as opposed to its serialization): the answer says which. */
class CollectFailed extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause });
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
