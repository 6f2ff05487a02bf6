import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerOptions as TlsServerOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import bcrypt from 'bcryptjs';
import type { Logger } from '@agentconn/core';
import type { MetricsEndpoint } from '@agentconn/exposition';
import type { WebConfig, WebTlsConfig } from './config-file.js';

/** Verified credentials kept (their SHA-256, never the password), so bcrypt's cost is paid once per user. */
const CREDENTIAL_CACHE_LIMIT = 256;

/** The `https.createServer` options of a TLS config: the handshake side of `client_auth_type`. */
export function tlsServerOptions(tls: WebTlsConfig): TlsServerOptions {
  const requestCert = tls.clientAuthType !== 'NoClientCert';
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.clientCa !== undefined && { ca: tls.clientCa }),
    minVersion: tls.minVersion,
    maxVersion: tls.maxVersion,
    requestCert,
    // Only this policy fails the handshake itself; the softer ones are checked per connection (checkConnection).
    rejectUnauthorized: tls.clientAuthType === 'RequireAndVerifyClientCert',
  };
}

function sansOf(socket: TLSSocket): string[] {
  const text = socket.getPeerCertificate().subjectaltname ?? '';
  // "DNS:a, IP Address:127.0.0.1, email:x@y, URI:spiffe://…": the value after the first colon.
  return text
    .split(', ')
    .map((entry) => entry.slice(entry.indexOf(':') + 1))
    .filter((value) => value !== '');
}

/**
 * Applies a web config to requests: response headers, basic auth (bcrypt, constant-time, cached once verified),
 * and the per-connection part of the client certificate policy. `update` swaps the config (a reload).
 */
export class WebGuard {
  #config: WebConfig;
  readonly #logger: Logger;
  #verified = new Map<string, Buffer>();
  #dummyHash: string | undefined;

  constructor(config: WebConfig, logger: Logger) {
    this.#config = config;
    this.#logger = logger;
  }

  get config(): WebConfig {
    return this.#config;
  }

  update(config: WebConfig): void {
    this.#config = config;
    this.#verified = new Map();
  }

  /**
   * For `secureConnection`: false (and the caller destroys the socket) when the policy wants a certificate the
   * client did not give, one that does not verify, or one without an allowed SAN.
   */
  checkConnection(socket: TLSSocket): boolean {
    const tls = this.#config.tls;
    if (tls === undefined) return true;
    const given = Object.keys(socket.getPeerCertificate()).length > 0;
    switch (tls.clientAuthType) {
      case 'RequireAnyClientCert':
        if (!given) return false;
        break;
      case 'VerifyClientCertIfGiven':
        if (given && !socket.authorized) return false;
        break;
      case 'RequireAndVerifyClientCert':
        if (!given || !socket.authorized) return false;
        break;
      default:
        break;
    }
    if (tls.clientAllowedSans.length > 0) {
      if (!given) return false;
      const sans = sansOf(socket);
      if (!tls.clientAllowedSans.some((allowed) => sans.includes(allowed))) return false;
    }
    return true;
  }

  /** The endpoint behind the headers and basic auth. */
  wrap(inner: MetricsEndpoint): MetricsEndpoint {
    const handleMetricsRequest = (request: IncomingMessage, response: ServerResponse): void => {
      for (const [name, value] of Object.entries(this.#config.headers)) response.setHeader(name, value);
      if (this.#config.users.size === 0) {
        inner.handleMetricsRequest(request, response);
        return;
      }
      this.#authorized(request.headers.authorization).then(
        (ok) => {
          if (ok) inner.handleMetricsRequest(request, response);
          else {
            response
              .writeHead(401, { 'WWW-Authenticate': 'Basic realm="agentconn-exporter", charset="UTF-8"', 'Content-Type': 'text/plain; charset=utf-8' })
              .end('Unauthorized\n');
          }
        },
        (error: unknown) => {
          this.#logger.error('basic auth check failed', { error: error instanceof Error ? error.message : String(error) });
          response.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Internal Server Error\n');
        },
      );
    };
    return { endpoint: inner.endpoint, handleMetricsRequest };
  }

  async #authorized(header: string | undefined): Promise<boolean> {
    const match = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (match === null) return false;
    const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return false;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const hash = this.#config.users.get(user);
    const digest = createHash('sha256').update(user).update('\0').update(password).update('\0').update(hash ?? '').digest();
    const cached = this.#verified.get(user);
    if (cached !== undefined && timingSafeEqual(cached, digest)) return true;
    // An unknown user costs a bcrypt comparison too, so timing does not tell which users exist.
    this.#dummyHash ??= await bcrypt.hash('agentconn-dummy-password', 10);
    const matches = await bcrypt.compare(password, hash ?? this.#dummyHash);
    if (!matches || hash === undefined) return false;
    if (this.#verified.size >= CREDENTIAL_CACHE_LIMIT) this.#verified.clear();
    this.#verified.set(user, digest);
    return true;
  }
}
