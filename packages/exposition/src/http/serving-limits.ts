import type { ServerResponse } from 'node:http';
import { Socket } from 'node:net';

/** Defaults of the serving bounds (the reader's and the server's options). */
export const DEFAULT_MAX_CONCURRENT_SCRAPES = 10;
/** Near Prometheus' default scrape timeout (10 s): past it the scraper has given up anyway. */
export const DEFAULT_RESPONSE_TIMEOUT_MILLIS = 15_000;
/** A response whose socket takes nothing for this long, while bytes wait for it, is reset. */
export const DEFAULT_DRAIN_TIMEOUT_MILLIS = 5_000;
/** What the responses in flight may hold for their readers together: chunks written, kept or not yet taken. */
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
export const DEFAULT_RENDER_SHARE_MILLIS = 5_000;
export const DEFAULT_HEADERS_TIMEOUT_MILLIS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MILLIS = 30_000;
/** Seconds a scraper refused for too many concurrent scrapes is told to wait. */
export const RETRY_AFTER_SECONDS = 1;
/**
 * Below this rate a response is slow: its socket took fewer bytes than this in the last second although bytes
 * waited for it the whole second. A slow response gives up its slot to a new scrape when every slot is taken, and
 * its bytes when the buffered bytes are at their limit. A scrape of a large uncompressed body needs far more than
 * this to finish within any scrape timeout.
 */
export const MIN_DRAIN_BYTES_PER_SECOND = 256 * 1024;
/**
 * Pipelined requests that may wait on one connection while its response in flight is written; more are refused
 * with 503 (a connection answers its requests in order, so a waiting request holds no slot and no bytes).
 */
export const MAX_WAITING_PER_CONNECTION = 4;

/** How `/metrics` is served: the options of `FastPrometheusReader` that bound its responses. */
export interface ServingOptions {
  /**
   * `/metrics` responses in flight at most (GET and HEAD). Beyond, a new scrape takes the slot of the slowest
   * response draining below 256 KiB/s, or gets 503 with `Retry-After`. Default 10.
   */
  readonly maxConcurrentScrapes?: number;
  /**
   * A response not finished within this time has its connection reset (a reader too slow). Default 15 000 ms, near
   * Prometheus' default scrape timeout: raise it with a longer `scrape_timeout`.
   */
  readonly responseTimeoutMillis?: number;
  /** A response whose socket takes nothing for this long, while bytes wait for it, is reset. Default 5 000 ms. */
  readonly drainTimeoutMillis?: number;
  /**
   * What the responses in flight may hold for their readers together. At the limit, a reader lagging far behind
   * the others of its rendering (or draining slowly) is reset, or the rendering waits. Default 64 MiB.
   */
  readonly maxBufferedBytes?: number;
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

/** Validates a timeout option: an integer of milliseconds from `min` (default 1) within Node's timer range. */
export function timeoutOption(name: string, value: number, min = 1): number {
  if (!Number.isSafeInteger(value) || value < min || value > 2_147_483_647) {
    throw new RangeError(`${name} must be an integer from ${min} to 2147483647 ms, got ${value}`);
  }
  return value;
}

/** Validates a byte-count option: a positive safe integer. */
export function bytesOption(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be an integer of at least ${min} bytes, got ${value}`);
  return value;
}

/**
 * Cuts a response's connection with a TCP reset, not a graceful close: what the kernel still holds for the client
 * is dropped at once instead of trickling to a reader that is too slow (megabytes, for many minutes). Over TLS the
 * reset goes to the TCP socket beneath. Falls back to destroying the socket where there is no TCP handle.
 */
export function resetConnection(response: ServerResponse): void {
  const socket = response.socket;
  if (socket === null || socket.destroyed) {
    response.destroy();
    return;
  }
  const tcp = tcpSocketOf(socket);
  try {
    tcp?.resetAndDestroy();
  } catch {
    // Not a TCP handle after all (a pipe, a test double): the close below still frees the response.
  }
  socket.destroy();
  response.destroy();
}

/** The TCP socket under `socket`: itself, or for a TLS socket the socket it wraps. */
function tcpSocketOf(socket: Socket): Socket | undefined {
  const parent = (socket as { _parent?: unknown })._parent;
  if (parent instanceof Socket) return parent;
  return socket;
}

/**
 * Cuts the response's connection if it has not finished within `millis` (a reader too slow to take the body):
 * the scraper sees a failed scrape. Returns a function that cancels the deadline; it is cancelled on close too.
 */
export function responseDeadline(response: ServerResponse, millis: number, onExpire: () => void): () => void {
  const timer = setTimeout(() => {
    onExpire();
    resetConnection(response);
  }, millis);
  timer.unref();
  const cancel = (): void => clearTimeout(timer);
  response.once('close', cancel);
  return cancel;
}
