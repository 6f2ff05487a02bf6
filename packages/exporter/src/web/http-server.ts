import type { TLSSocket } from 'node:tls';
import { errorMessage, type Logger } from '@agentconn/core';
import { createMetricsServer, type MetricsEndpoint, type MetricsServer } from '@agentconn/exposition';
import { tlsServerOptions, WebGuard } from './access-guard.js';
import type { WebConfig } from './config-file.js';
import { WebConfigReloader } from './config-reload.js';
import { withStatusPages, type WebStatus } from './status-pages.js';

export interface HttpServerOptions {
  /** What `/metrics` serves. */
  readonly metrics: MetricsEndpoint;
  /** What `/`, `/readyz` show, asked at each request. */
  readonly status: () => WebStatus;
  readonly listen: { readonly host: string; readonly port: number };
  /** `--web.config.file` and what it held at start. */
  readonly webConfig: { readonly file: string; readonly config: WebConfig } | undefined;
  readonly logger: Logger;
}

export interface HttpServer {
  /** Where `/metrics` is served, e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  /** Re-reads `--web.config.file` (as on SIGHUP); false (and an error line) if it was not applied. */
  reloadWebConfig(): boolean;
  close(): Promise<void>;
}

/** Where to listen for a `--listen` host: '' (`:PORT`) is every interface, IPv6 and IPv4, or IPv4 alone without IPv6. */
export function listenAddresses(host: string): readonly string[] {
  return host === '' ? ['::', '0.0.0.0'] : [host];
}

/**
 * The exporter's HTTP(S) server: the status pages in front of `/metrics`, behind the web config's TLS,
 * basic auth and headers, which it re-reads when its files change. Rejects with an error naming the
 * address when it cannot listen.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { listen, logger } = options;
  const webConfig = options.webConfig?.config;
  const guard = webConfig === undefined ? undefined : new WebGuard(webConfig, logger);
  const routes = withStatusPages(options.metrics, options.status);
  let server: MetricsServer | undefined;
  const addresses = listenAddresses(listen.host);
  for (const [index, host] of addresses.entries()) {
    try {
      server = await createMetricsServer({
        reader: guard === undefined ? routes : guard.wrap(routes),
        host,
        port: listen.port,
        ...(webConfig?.tls !== undefined && { tls: tlsServerOptions(webConfig.tls) }),
      });
      break;
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      // No IPv6 on this host: every interface is then every IPv4 one.
      if (index < addresses.length - 1 && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) continue;
      const shown = listen.host === '' ? '' : listen.host.includes(':') ? `[${listen.host}]` : listen.host;
      throw new Error(`cannot listen on ${shown}:${listen.port}: ${errorMessage(cause)}`, { cause });
    }
  }
  if (server === undefined) throw new Error(`cannot listen on ${listen.host}:${listen.port}`);
  const metricsServer = server;
  if (webConfig?.tls !== undefined && guard !== undefined) {
    metricsServer.server.on('secureConnection', (socket: TLSSocket) => {
      if (!guard.checkConnection(socket)) socket.destroy();
    });
  }
  const reloader =
    options.webConfig === undefined || guard === undefined
      ? undefined
      : new WebConfigReloader({ file: options.webConfig.file, config: options.webConfig.config, guard, server: metricsServer.server, logger });
  return {
    url: metricsServer.url,
    reloadWebConfig: () => reloader?.reload() ?? false,
    async close() {
      reloader?.close();
      await metricsServer.close();
    },
  };
}
