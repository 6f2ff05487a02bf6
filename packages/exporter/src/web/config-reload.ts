import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from '@agentconn/core';
import { tlsServerOptions, type WebGuard } from './access-guard.js';
import { loadWebConfig, WebConfigError, type WebConfig } from './config-file.js';
import { FileChangeWatcher } from './file-change-watcher.js';

export interface WebConfigReloaderOptions {
  /** `--web.config.file`, as given. */
  readonly file: string;
  /** The config the server was started with. */
  readonly config: WebConfig;
  readonly guard: WebGuard;
  readonly server: HttpServer | HttpsServer;
  readonly logger: Logger;
}

/**
 * Re-reads `--web.config.file` when it or a file it names changes, and when asked (SIGHUP), and applies
 * it to the running server: new certificates, users and headers. A file that does not load, or one that
 * turns TLS on or off or changes `client_auth_type` (the listening socket's own settings), is not
 * applied: the previous config stays, with an error line.
 */
export class WebConfigReloader {
  readonly #options: WebConfigReloaderOptions;
  #current: WebConfig;
  readonly #watcher: FileChangeWatcher;

  constructor(options: WebConfigReloaderOptions) {
    this.#options = options;
    this.#current = options.config;
    this.#watcher = new FileChangeWatcher(() => void this.reload());
    this.#watcher.watch(options.config.files);
  }

  /** False (and an error line) when the file was not applied. */
  reload(): boolean {
    const { file, guard, server, logger } = this.#options;
    const current = this.#current;
    let next: WebConfig;
    try {
      next = loadWebConfig(file);
    } catch (error) {
      logger.error('web config not reloaded; keeping the previous one', { error: error instanceof WebConfigError ? error.message : String(error) });
      return false;
    }
    if ((next.tls === undefined) !== (current.tls === undefined) || next.tls?.clientAuthType !== current.tls?.clientAuthType) {
      logger.error('web config not reloaded: turning TLS on or off, or changing client_auth_type, needs a restart', { file });
      return false;
    }
    if (next.tls !== undefined) {
      const { requestCert: _request, rejectUnauthorized: _reject, ...context } = tlsServerOptions(next.tls);
      (server as HttpsServer).setSecureContext(context);
    }
    guard.update(next);
    this.#current = next;
    this.#watcher.watch(next.files);
    logger.info('web config reloaded', { file, tls: next.tls !== undefined, basic_auth_users: next.users.size });
    return true;
  }

  close(): void {
    this.#watcher.close();
  }
}
