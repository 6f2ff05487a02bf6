import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CollectionResult } from '@opentelemetry/sdk-metrics';
import { GzipSegmentCache } from '../compress/gzip-segment-cache.js';
import { DEFAULT_GZIP_LEVEL, parallelGzip } from '../compress/parallel-gzip.js';
import type { ChunkOptions } from '../format/byte-sink.js';
import { ChunkPool, chunkCapacity } from '../format/chunk-pool.js';
import type { ChunkSource } from '../format/chunk-source.js';
import { OPENMETRICS_CONTENT_TYPE } from '../format/openmetrics.js';
import { PROMETHEUS_TEXT_CONTENT_TYPE } from '../format/text-syntax.js';
import { errorMessage, type Logger } from '../logger.js';
import { BufferedBytes } from './buffered-bytes.js';
import { ConnectionTurns } from './connection-turns.js';
import { negotiateContentEncoding, negotiateExpositionFormat, type ExpositionFormat } from './negotiate.js';
import { ResponseSlots, type CutReason, type InFlightResponse } from './response-slots.js';
import {
  bytesOption,
  DEFAULT_DRAIN_TIMEOUT_MILLIS,
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_CONCURRENT_SCRAPES,
  DEFAULT_RENDER_SHARE_MILLIS,
  DEFAULT_RESPONSE_TIMEOUT_MILLIS,
  resetConnection,
  RETRY_AFTER_SECONDS,
  responseDeadline,
  timeoutOption,
  type ServingOptions,
} from './serving-limits.js';
import { DEFAULT_KEEP_BYTES, LatestRenderings, SharedRendering, SharedTask, WRITE_AHEAD_BYTES, writeShared } from './shared-rendering.js';
import type { WriteOutcome } from './write-chunks.js';

/** What the responder serves: a collection, and the chunks of a format's rendering of it. */
export interface ScrapeSource {
  /** One collection for the scrape (logged and rejected when it fails). */
  collect(): Promise<CollectionResult>;
  /** `collection` in `format`, as chunks of about `chunkBytes` from `pool` (see `PrometheusTextSerializer.chunks`). */
  chunks(
    collection: CollectionResult,
    format: ExpositionFormat,
    chunkBytes: number,
    pool: ChunkPool,
    options: ChunkOptions,
  ): Generator<Uint8Array, void, undefined>;
}

export interface ScrapeResponderOptions extends ServingOptions {
  readonly endpoint: string;
  readonly chunkBytes: number;
  readonly logger: Logger;
}

/**
 * Chunk buffers kept for reuse between scrapes: as many as a rendering keeps for responses that may still join
 * (`DEFAULT_KEEP_BYTES`), plus a few in the sockets' hands, so that a steady scrape allocates none (new
 * ArrayBuffers every scrape add external-memory pressure that starts full garbage collections). The pool holds
 * no more than a rendering holds anyway. (Capped for tiny chunks, where a few more allocations do not matter.)
 */
function chunkPoolLimit(chunkBytes: number): number {
  return Math.min(1024, Math.ceil(DEFAULT_KEEP_BYTES / chunkBytes) + 8);
}

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * Answers scrapes over HTTP: the format and encoding the request asks for, concurrent scrapes sharing one
 * collection and one rendering, chunks written with backpressure, and the bounds that keep one client from
 * starving the others: one response at a time per connection, a limit of responses in flight whose slowest
 * readers give way to a new scrape, a budget of bytes held for readers, drain and response timeouts, and writers
 * that let the event loop turn.
 */
export class ScrapeResponder {
  readonly #source: ScrapeSource;
  /** The path answered. */
  readonly endpoint: string;
  readonly #chunkBytes: number;
  readonly #logger: Logger;
  /** Shared by concurrent scrapes: a chunk comes back once its socket write completed, when the kernel has the bytes. */
  readonly #pool: ChunkPool;
  readonly #slots: ResponseSlots;
  readonly #turns = new ConnectionTurns();
  readonly #budget: BufferedBytes;
  readonly #responseTimeoutMillis: number;
  readonly #drainTimeoutMillis: number;
  readonly #renderings = new LatestRenderings();
  readonly #collections: SharedTask<CollectionResult>;
  readonly #shareMillis: number;
  readonly #gzipLevel: number | undefined;
  /** Compressed segments of unchanged chunks, reused between gzip scrapes: one cache per format. */
  readonly #gzipCaches: ReadonlyMap<ExpositionFormat, GzipSegmentCache> | undefined;

  constructor(source: ScrapeSource, options: ScrapeResponderOptions) {
    this.#source = source;
    this.endpoint = options.endpoint;
    this.#chunkBytes = options.chunkBytes;
    this.#logger = options.logger;
    this.#pool = new ChunkPool(chunkCapacity(options.chunkBytes), chunkPoolLimit(options.chunkBytes));
    this.#responseTimeoutMillis = timeoutOption('responseTimeoutMillis', options.responseTimeoutMillis ?? DEFAULT_RESPONSE_TIMEOUT_MILLIS);
    this.#drainTimeoutMillis = timeoutOption('drainTimeoutMillis', options.drainTimeoutMillis ?? DEFAULT_DRAIN_TIMEOUT_MILLIS);
    this.#budget = new BufferedBytes(bytesOption('maxBufferedBytes', options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES, 4 * chunkCapacity(options.chunkBytes)));
    this.#slots = new ResponseSlots({
      max: options.maxConcurrentScrapes ?? DEFAULT_MAX_CONCURRENT_SCRAPES,
      drainTimeoutMillis: this.#drainTimeoutMillis,
      cut: (entry, reason) => this.#cut(entry, reason),
      onTick: () => this.#budget.recheck(),
    });
    this.#shareMillis = timeoutOption('renderShareMillis', options.renderShareMillis ?? DEFAULT_RENDER_SHARE_MILLIS, 0);
    this.#collections = new SharedTask(this.#shareMillis);
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

  /** See `FastPrometheusReader.handleMetricsRequest`. */
  readonly handle = (request: IncomingMessage, response: ServerResponse): void => {
    if (pathOf(request.url) !== this.endpoint) {
      respondText(response, 404, 'Not Found\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      respondText(response, 405, 'Method Not Allowed\n');
      return;
    }
    const connection = request.socket;
    const turn = this.#turns.take(connection);
    if (turn === false) {
      refuse(response, 'too many pipelined requests on this connection\n');
      return;
    }
    // Whatever happens to this request, its end hands the connection to the next one waiting.
    if (turn === true) this.#start(request, response, connection);
    else void turn.then((go) => (go ? this.#start(request, response, connection) : undefined));
  };

  #start(request: IncomingMessage, response: ServerResponse, connection: NodeJS.EventEmitter): void {
    response.once('close', () => this.#turns.done(connection));
    if (request.socket.destroyed) return;
    if (request.method === 'HEAD') {
      // The headers a GET would start with are known before its collection: HEAD needs neither it nor a slot.
      const head = this.#headers(request, response);
      if (head !== undefined) response.writeHead(200, head.headers).end();
      return;
    }
    const entry = this.#slots.acquireWithin(response, SLOT_WAIT_MILLIS);
    if (entry instanceof Promise) void entry.then((got) => this.#begin(request, response, got));
    else this.#begin(request, response, entry);
  }

  #begin(request: IncomingMessage, response: ServerResponse, entry: InFlightResponse | undefined): void {
    if (entry === undefined) {
      refuse(response, 'too many concurrent scrapes\n');
      return;
    }
    if (response.destroyed) {
      this.#slots.release(entry);
      return;
    }
    response.once('close', () => this.#slots.release(entry));
    const cancelDeadline = responseDeadline(response, this.#responseTimeoutMillis, () => {
      entry.markCut('deadline');
      this.#logger.debug('metrics response timed out; connection closed', { timeout_ms: this.#responseTimeoutMillis });
    });
    response.once('close', cancelDeadline);
    this.#serve(request, response, entry).catch((error: unknown) => {
      // #serve handles its own errors; this is the last guard so a scrape can never crash the host.
      this.#logger.error('metrics response failed', { error: errorMessage(error) });
      if (!response.headersSent) respondText(response, 500, 'failed to write metrics\n');
      else resetConnection(response);
    });
  }

  /** Resets a response's connection to free its slot (`slot`), its bytes (`memory`) or a stalled socket (`drain`). */
  #cut(entry: InFlightResponse, reason: CutReason): void {
    this.#logger.debug(CUT_MESSAGES[reason], {
      reason,
      drain_bytes_per_second: entry.meter.rate === undefined ? undefined : Math.round(entry.meter.rate),
      taken_bytes: entry.meter.taken,
      ...(reason === 'drain' && { timeout_ms: this.#drainTimeoutMillis }),
    });
    resetConnection(entry.response);
  }

  /**
   * The format, gzip level (when gzip was chosen) and headers of a 200 answer to `request`; `undefined` once it was
   * answered 406 (no acceptable encoding).
   */
  #headers(request: IncomingMessage, response: ServerResponse): { format: ExpositionFormat; gzipLevel: number | undefined; headers: Record<string, string> } | undefined {
    const encoding = negotiateContentEncoding(request.headers['accept-encoding'], this.#gzipLevel !== undefined);
    if (encoding === undefined) {
      response.setHeader('Vary', 'Accept-Encoding');
      respondText(response, 406, 'no acceptable content encoding: identity is refused and gzip is not offered\n');
      return undefined;
    }
    const format = negotiateExpositionFormat(request.headers.accept);
    const gzipLevel = encoding === 'gzip' ? this.#gzipLevel : undefined;
    const headers: Record<string, string> = {
      'Content-Type': format === 'openmetrics' ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_TEXT_CONTENT_TYPE,
      Vary: this.#gzipLevel === undefined ? 'Accept' : 'Accept, Accept-Encoding',
    };
    if (gzipLevel !== undefined) headers['Content-Encoding'] = 'gzip';
    return { format, gzipLevel, headers };
  }

  async #serve(request: IncomingMessage, response: ServerResponse, entry: InFlightResponse): Promise<void> {
    const head = this.#headers(request, response);
    if (head === undefined) return;
    const { format, gzipLevel, headers } = head;
    const pool = this.#pool;
    const release = (chunk: Uint8Array): void => pool.release(chunk);
    const share = { maxAgeMillis: this.#shareMillis, budget: this.#budget };
    const cache = this.#gzipCaches?.get(format);
    const cut = (): void => this.#slots.cut(entry, 'memory');
    const reader = gzipLevel !== undefined
      ? this.#renderings.join(
          `${format}+gzip`,
          () => new SharedRendering(parallelGzip(this.#renderSource(format, { recordInputs: true }), { level: gzipLevel, release, ...(cache !== undefined && { cache }) }), undefined, share),
          entry.meter,
          cut,
        )
      : this.#renderings.join(format, () => new SharedRendering(this.#renderSource(format), release, share), entry.meter, cut);
    const rendering = reader.rendering;
    try {
      // The first chunk before the status line: an error this early still becomes a clean 500.
      await rendering.chunk(0);
    } catch (error) {
      rendering.leave(reader, 0);
      respondText(response, 500, error instanceof CollectFailed ? 'failed to collect metrics\n' : 'failed to serialize metrics\n');
      return;
    }
    response.writeHead(200, headers);
    let outcome: WriteOutcome;
    try {
      outcome = await writeShared(reader, response, { writeAheadBytes: WRITE_AHEAD_BYTES, meter: entry.meter });
    } catch {
      // Headers are out: cut the connection so the scraper sees a failed scrape, not a truncated success.
      resetConnection(response);
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
            const shared = this.#collections.acquire(() => this.#source.collect());
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
          chunks = this.#source.chunks(collected, format, this.#chunkBytes, this.#pool, options);
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

/** The collection failed (as opposed to its serialization): the answer says which. */
class CollectFailed extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause });
  }
}

/**
 * How long a new scrape may wait for a slot when every one is taken and none drains slowly yet: a response's rate
 * is known within about a second of its start.
 */
const SLOT_WAIT_MILLIS = 1500;

const CUT_MESSAGES: Readonly<Record<CutReason, string>> = {
  slot: 'metrics response reset: it drained too slowly and a new scrape needed its slot',
  memory: 'metrics response reset: it held bytes that no faster reader needed and the buffered bytes were at their limit',
  drain: 'metrics response reset: its socket took nothing for the drain timeout',
  deadline: 'metrics response timed out; connection closed',
};

/** 503 with `Retry-After`: the scraper may come back in a moment. */
function refuse(response: ServerResponse, body: string): void {
  response.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
  respondText(response, 503, body);
}

function respondText(response: ServerResponse, status: number, body: string): void {
  if (response.headersSent) {
    resetConnection(response);
    return;
  }
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end(body);
}
