import { createServer } from 'node:http';
import { createServer as createTlsServer, type ServerOptions as TlsServerOptions } from 'node:https';
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_HEADERS_TIMEOUT_MILLIS, DEFAULT_IDLE_TIMEOUT_MILLIS, timeoutOption } from './serving-limits.js';

/** What the server serves: a `FastPrometheusReader`, or anything with the same two members. */
export interface MetricsEndpoint {
  /** Answers every request: the endpoint's path with the metrics, anything else with 404 (or 405). */
  readonly handleMetricsRequest: (request: IncomingMessage, response: ServerResponse) => void;
  /** The metrics path, e.g. `/metrics`. */
  readonly endpoint: string;
}

export interface MetricsServerOptions {
  readonly reader: MetricsEndpoint;
  /** Interface to listen on. Default `127.0.0.1`: loopback unless told otherwise. */
  readonly host?: string;
  /** TCP port; 0 picks a free one. Default 9464, Prometheus' registered exporter port. */
  readonly port?: number;
  /** How long `close()` waits for scrapes in flight before cutting their connections. Default 5000 ms. */
  readonly closeGraceMillis?: number;
  /**
   * A connection whose request headers are not complete this long after it began gets 408 and is closed
   * (slowloris). Default 10 000 ms.
   */
  readonly headersTimeoutMillis?: number;
  /** A keep-alive connection idle this long between requests is closed. Default 30 000 ms. */
  readonly idleTimeoutMillis?: number;
  /** Serve HTTPS with these `https.createServer` options (certificate, key, client certificates…). */
  readonly tls?: TlsServerOptions;
}

/** The listening server: `https.Server` when `tls` was given. */
export type Server = HttpServer | HttpsServer;

export interface MetricsServer extends AsyncDisposable {
  readonly server: Server;
  readonly host: string;
  /** The port actually bound (useful with `port: 0`). */
  readonly port: number;
  /** `http://host:port/metrics` (`https://` with `tls`; IPv6 hosts in brackets). */
  readonly url: string;
  /** Stops listening, lets scrapes in flight finish within the grace period, then resolves. */
  close(): Promise<void>;
}

export const DEFAULT_METRICS_HOST = '127.0.0.1';
export const DEFAULT_METRICS_PORT = 9464;

/** An `http.Server` that answers the reader's endpoint; resolves once listening, rejects if it cannot bind. */
export async function createMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { reader } = options;
  const host = options.host ?? DEFAULT_METRICS_HOST;
  const closeGraceMillis = options.closeGraceMillis ?? 5000;
  const headersTimeout = timeoutOption('headersTimeoutMillis', options.headersTimeoutMillis ?? DEFAULT_HEADERS_TIMEOUT_MILLIS);
  const keepAliveTimeout = timeoutOption('idleTimeoutMillis', options.idleTimeoutMillis ?? DEFAULT_IDLE_TIMEOUT_MILLIS);
  const serverOptions = {
    headersTimeout,
    // A request's body (none is expected) has no more time than its headers.
    requestTimeout: headersTimeout,
    keepAliveTimeout,
    // Node checks the two timeouts above this often (its default, 30 s, would let slow headers live that long).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
  const server: Server =
    options.tls === undefined
      ? createServer(serverOptions, reader.handleMetricsRequest)
      : createTlsServer({ handshakeTimeout: headersTimeout, ...options.tls, ...serverOptions }, reader.handleMetricsRequest);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen({ host, port: options.port ?? DEFAULT_METRICS_PORT }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      const force = setTimeout(() => server.closeAllConnections(), closeGraceMillis);
      force.unref();
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      // Keep-alive connections between scrapes would otherwise hold close() open.
      server.closeIdleConnections();
    });
    return closing;
  };
  return {
    server,
    host,
    port,
    url: `${options.tls === undefined ? 'http' : 'https'}://${urlHost}:${port}${reader.endpoint}`,
    close,
    [Symbol.asyncDispose]: close,
  };
}
