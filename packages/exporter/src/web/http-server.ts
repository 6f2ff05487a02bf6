import type { TLSSocket } from 'node:tls';
import { errorMessage, type Logger } from '@agentconn/core';
import { createMetricsServer, type MetricsEndpoint } from '@agentconn/exposition';
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
  let server;
  try {
    server = await createMetricsServer({
      reader: guard === undefined ? routes : guard.wrap(routes),
      host: listen.host,
      port: listen.port,
      ...(webConfig?.tls !== undefined && { tls: tlsServerOptions(webConfig.tls) }),
    });
  } catch (cause) {
    const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    throw new Error(`cannot listen on ${host}:${listen.port}: ${errorMessage(cause)}`, { cause });
  }
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
