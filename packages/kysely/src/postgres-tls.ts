/**
 * TLS as libpq means it. `pg` 8 reads `sslmode=require` and `verify-ca` as `verify-full` (and prints a
 * warning saying so), so a server whose certificate a private CA signed fails with `require`, where
 * `psql` connects. This module reads the URL's TLS parameters the way libpq does and hands `pg` the
 * URL without them plus the Node TLS options that mean the same.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { getCACertificates, type ConnectionOptions } from 'node:tls';
import { DatabaseUrlError, SSL_MODES } from './database-url.js';
import { PreferTlsSocket } from './prefer-tls-socket.js';
import { decodeParameterName } from './secret-redaction.js';

/** The URL parameters read here; `pg` never sees them. */
const TLS_PARAMETERS: ReadonlySet<string> = new Set(['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslpassword', 'uselibpqcompat', 'ssl']);

/** libpq's environment variables for the same parameters, read when the URL leaves them out. */
const ENVIRONMENT: Readonly<Record<string, string>> = {
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
};

export interface PostgresTlsConfig {
  /** The URL as given, less its TLS parameters: what `pg` gets as `connectionString`. */
  readonly connectionString: string;
  /** `pg`'s `ssl`: false for none (or for `prefer`, whose `stream` settles TLS itself), else the Node TLS options. */
  readonly ssl: false | ConnectionOptions;
  /**
   * `pg`'s `stream`, for `prefer` only: a new socket per connection that asks the server for TLS and goes on
   * unencrypted when the server has none (see `PreferTlsSocket`).
   */
  readonly stream?: () => Duplex;
  /** The mode in force, e.g. `verify-full`; `prefer` when none was given, as libpq. */
  readonly sslmode: string;
}

export interface PostgresTlsOptions {
  /** Where PGSSLMODE and the like are read. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Whose `~/.postgresql/root.crt` (and `postgresql.crt`, `postgresql.key`) libpq would read. Default `os.homedir()`. */
  readonly homeDir?: string;
}

/**
 * The `pg` connection settings of a `postgres://` URL with libpq's meaning of `sslmode`: `disable` no
 * TLS; `prefer` (also when none is given, as libpq) encrypts without verifying when the server offers
 * TLS, and goes on unencrypted when it does not; `require` encrypts without verifying, never unencrypted
 * (it verifies the chain, as `verify-ca`, when a root certificate is given); `verify-ca` checks that the
 * server's certificate chains to `sslrootcert`; `verify-full` also that it names the host. `sslrootcert=system` trusts the system's
 * CAs; without `sslrootcert`, `~/.postgresql/root.crt` if it exists, as libpq. `sslcert`/`sslkey`
 * (and `sslpassword`) are the client certificate. `pg`'s own `no-verify` stays: encrypt, never verify.
 * Throws a `DatabaseUrlError` that names the parameter to set or fix.
 */
export function postgresTlsConfig(url: string, options: PostgresTlsOptions = {}): PostgresTlsConfig {
  const env = options.env ?? process.env;
  const home = options.homeDir ?? safeHomedir();
  const { stripped, parameters } = splitTlsParameters(url);
  const given = (name: string): string | undefined => {
    const value = parameters.get(name);
    if (value !== undefined) return value;
    const variable = ENVIRONMENT[name];
    const fromEnv = variable === undefined ? undefined : env[variable];
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };
  const origin = (name: string): string => (parameters.has(name) ? `${name}=` : `${ENVIRONMENT[name] ?? name}=`);

  const legacy = parameters.get('ssl');
  // `pg`'s own `ssl=true` verifies fully; `ssl=false` is no TLS.
  let sslmode = given('sslmode') ?? (legacy === 'true' || legacy === '1' ? 'verify-full' : legacy === 'false' || legacy === '0' ? 'disable' : 'prefer');
  if (legacy === 'no-verify') sslmode = 'no-verify';
  if (!(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new DatabaseUrlError(`${origin('sslmode')}${sslmode} is not one of ${SSL_MODES.join(', ')}`);
  }
  if (sslmode === 'disable') return { connectionString: stripped, ssl: false, sslmode };

  const readPem = (name: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new DatabaseUrlError(`${origin(name)}${path}: cannot read it (${code})`);
    }
  };
  const defaultFile = (file: string): string | undefined => {
    if (home === undefined) return undefined;
    const path = join(home, '.postgresql', file);
    return existsSync(path) ? path : undefined;
  };

  const client: ConnectionOptions = {};
  const certPath = given('sslcert') ?? defaultFile('postgresql.crt');
  const keyPath = given('sslkey') ?? defaultFile('postgresql.key');
  if (certPath !== undefined && keyPath !== undefined) {
    client.cert = readPem('sslcert', certPath);
    client.key = readPem('sslkey', keyPath);
    const passphrase = parameters.get('sslpassword');
    if (passphrase !== undefined) client.passphrase = passphrase;
  } else if (given('sslcert') !== undefined || given('sslkey') !== undefined) {
    const missing = given('sslcert') === undefined ? 'sslcert' : 'sslkey';
    throw new DatabaseUrlError(`a client certificate needs both sslcert and sslkey: add ${missing}=PATH`);
  }

  if (sslmode === 'prefer') {
    const tls: ConnectionOptions = { ...client, rejectUnauthorized: false };
    return { connectionString: stripped, ssl: false, stream: () => new PreferTlsSocket(tls), sslmode };
  }
  if (sslmode === 'no-verify') return { connectionString: stripped, ssl: { ...client, rejectUnauthorized: false }, sslmode };

  const rootCert = given('sslrootcert') ?? defaultFile('root.crt');
  let ca: string | string[] | undefined;
  if (rootCert === 'system') {
    ca = getCACertificates('system');
    if (ca.length === 0) throw new DatabaseUrlError(`${origin('sslrootcert')}system: this system trusts no CA certificates; give the CA's file instead`);
  } else if (rootCert !== undefined) {
    ca = readPem('sslrootcert', rootCert);
  }
  if (ca === undefined) {
    if (sslmode === 'require') return { connectionString: stripped, ssl: { ...client, rejectUnauthorized: false }, sslmode };
    throw new DatabaseUrlError(
      `sslmode=${sslmode} verifies the server's certificate, which needs the CA that signed it: add sslrootcert=PATH (its certificate) to the URL, sslrootcert=system for this system's trusted CAs, or use sslmode=require to encrypt without verifying`,
    );
  }
  // libpq: with a root certificate, `require` verifies the chain as `verify-ca` does.
  const checkHost = sslmode === 'verify-full';
  return {
    connectionString: stripped,
    ssl: { ...client, ca, ...(!checkHost && { checkServerIdentity: () => undefined }) },
    sslmode,
  };
}

/** The URL without its TLS parameters (every other character kept) and their decoded values. */
function splitTlsParameters(url: string): { stripped: string; parameters: Map<string, string> } {
  const parameters = new Map<string, string>();
  const queryStart = url.indexOf('?');
  if (queryStart === -1) return { stripped: url, parameters };
  const kept: string[] = [];
  for (const pair of url.slice(queryStart + 1).split('&')) {
    const eq = pair.indexOf('=');
    const name = decodeParameterName(eq === -1 ? pair : pair.slice(0, eq));
    if (!TLS_PARAMETERS.has(name)) {
      kept.push(pair);
      continue;
    }
    const raw = eq === -1 ? '' : pair.slice(eq + 1);
    parameters.set(name, decodeValue(raw));
  }
  return { stripped: url.slice(0, queryStart) + (kept.length > 0 ? `?${kept.join('&')}` : ''), parameters };
}

function decodeValue(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch {
    return raw;
  }
}

function safeHomedir(): string | undefined {
  try {
    return homedir();
  } catch {
    return undefined;
  }
}
