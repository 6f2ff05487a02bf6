import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { SecureVersion } from 'node:tls';
import { parse } from 'yaml';

/**
 * `--web.config.file`: the format of Prometheus's exporter-toolkit (TLS, basic auth, response headers), so the
 * file operators already have for node_exporter or postgres_exporter works here. Unknown keys are errors, as the
 * toolkit's strict YAML decoding makes them.
 */

export type ClientAuthType =
  | 'NoClientCert'
  | 'RequestClientCert'
  | 'RequireAnyClientCert'
  | 'VerifyClientCertIfGiven'
  | 'RequireAndVerifyClientCert';

export interface WebTlsConfig {
  readonly cert: string;
  readonly key: string;
  readonly clientCa: string | undefined;
  readonly clientAuthType: ClientAuthType;
  readonly minVersion: SecureVersion;
  readonly maxVersion: SecureVersion;
  /** A client certificate must carry one of these SANs (DNS, IP, e-mail or URI), exactly. */
  readonly clientAllowedSans: readonly string[];
}

export interface WebConfig {
  readonly tls: WebTlsConfig | undefined;
  /** User name → bcrypt hash. Empty: no basic auth. */
  readonly users: ReadonlyMap<string, string>;
  /** Headers added to every response. */
  readonly headers: Readonly<Record<string, string>>;
  /** Every file this config was read from (itself, certificates, keys, CAs): a change to any re-reads it. */
  readonly files: readonly string[];
}

/** A bad web config file; the message names the file and the key. */
export class WebConfigError extends Error {
  override readonly name = 'WebConfigError';
}

const CLIENT_AUTH_TYPES: readonly string[] = [
  'NoClientCert',
  'RequestClientCert',
  'RequireAnyClientCert',
  'RequireClientCert', // the toolkit's old spelling of RequireAnyClientCert
  'VerifyClientCertIfGiven',
  'RequireAndVerifyClientCert',
];

const TLS_VERSIONS: Readonly<Record<string, SecureVersion>> = {
  TLS10: 'TLSv1',
  TLS11: 'TLSv1.1',
  TLS12: 'TLSv1.2',
  TLS13: 'TLSv1.3',
};

/** The toolkit's allowed response headers, and the values it accepts where it restricts them. */
const HEADERS: Readonly<Record<string, readonly string[] | undefined>> = {
  'Content-Security-Policy': undefined,
  'X-Frame-Options': ['deny', 'sameorigin'],
  'X-Content-Type-Options': ['nosniff'],
  'X-XSS-Protection': undefined,
  'Strict-Transport-Security': undefined,
};

const TLS_KEYS = [
  'cert', 'key', 'client_ca', 'cert_file', 'key_file', 'client_auth_type', 'client_ca_file', 'client_allowed_sans',
  'min_version', 'max_version', 'cipher_suites', 'prefer_server_cipher_suites', 'curve_preferences',
] as const;
/** Toolkit keys whose Go values have no faithful Node equivalent here: refused rather than silently ignored. */
const UNSUPPORTED = new Set(['tls_server_config.cipher_suites', 'tls_server_config.curve_preferences', 'tls_server_config.prefer_server_cipher_suites', 'rate_limit']);

type Node = Record<string, unknown>;

function isObject(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads and checks the file; throws `WebConfigError` naming the file and what is wrong. */
export function loadWebConfig(path: string): WebConfig {
  const file = resolve(path);
  const fail = (message: string): never => {
    throw new WebConfigError(`--web.config.file ${path}: ${message}`);
  };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return fail(`cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  let document: unknown;
  try {
    document = parse(text, { uniqueKeys: true });
  } catch (error) {
    return fail(`not valid YAML: ${(error instanceof Error ? error.message : String(error)).split('\n')[0] ?? ''}`);
  }
  if (document === null || document === undefined) document = {};
  if (!isObject(document)) return fail('the top level must be a mapping');
  const base = dirname(file);
  const files = [file];

  const known = (node: Node, where: string, keys: readonly string[]): void => {
    for (const key of Object.keys(node)) {
      const name = where === '' ? key : `${where}.${key}`;
      if (!keys.includes(key)) fail(`unknown key ${name}`);
      if (UNSUPPORTED.has(name)) fail(`${name} is not supported by this exporter`);
    }
  };
  const string = (node: Node, key: string, where: string): string | undefined => {
    const value = node[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') fail(`${where}.${key} must be a string`);
    return value as string;
  };
  const readReferenced = (name: string, relative: string): string => {
    const target = resolve(base, relative);
    files.push(target);
    try {
      return readFileSync(target, 'utf8');
    } catch (error) {
      return fail(`${name} ${relative}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
  };

  known(document, '', ['tls_server_config', 'http_server_config', 'basic_auth_users', 'rate_limit']);

  let tls: WebTlsConfig | undefined;
  const tlsNode = document['tls_server_config'];
  if (tlsNode !== undefined && tlsNode !== null) {
    const where = 'tls_server_config';
    if (!isObject(tlsNode)) return fail(`${where} must be a mapping`);
    known(tlsNode, where, TLS_KEYS);
    const inline = (key: string, fileKey: string): string | undefined => {
      const text = string(tlsNode, key, where);
      const path = string(tlsNode, fileKey, where);
      if (text !== undefined && path !== undefined) fail(`${where}: give ${key} or ${fileKey}, not both`);
      return path !== undefined ? readReferenced(`${where}.${fileKey}`, path) : text;
    };
    const cert = inline('cert', 'cert_file');
    const key = inline('key', 'key_file');
    const clientCa = inline('client_ca', 'client_ca_file');
    if (cert === undefined) return fail(`${where}: missing one of cert or cert_file`);
    if (key === undefined) return fail(`${where}: missing one of key or key_file`);
    const authText = string(tlsNode, 'client_auth_type', where) ?? 'NoClientCert';
    if (!CLIENT_AUTH_TYPES.includes(authText)) fail(`${where}.client_auth_type "${authText}" is not one of ${CLIENT_AUTH_TYPES.join(', ')}`);
    const clientAuthType = (authText === 'RequireClientCert' ? 'RequireAnyClientCert' : authText) as ClientAuthType;
    if (clientCa !== undefined && clientAuthType === 'NoClientCert') fail(`${where}: a client CA is configured without a client_auth_type`);
    if ((clientAuthType === 'RequireAndVerifyClientCert' || clientAuthType === 'VerifyClientCertIfGiven') && clientCa === undefined) {
      fail(`${where}: client_auth_type ${clientAuthType} needs client_ca_file (or client_ca)`);
    }
    const version = (name: string, fallback: SecureVersion): SecureVersion => {
      const text = string(tlsNode, name, where);
      if (text === undefined) return fallback;
      const mapped = TLS_VERSIONS[text];
      if (mapped === undefined) return fail(`${where}.${name} "${text}" is not one of ${Object.keys(TLS_VERSIONS).join(', ')}`);
      return mapped;
    };
    const sans = tlsNode['client_allowed_sans'];
    if (sans !== undefined && sans !== null && (!Array.isArray(sans) || !sans.every((s) => typeof s === 'string'))) {
      fail(`${where}.client_allowed_sans must be a list of strings`);
    }
    tls = {
      cert,
      key,
      clientCa,
      clientAuthType,
      minVersion: version('min_version', 'TLSv1.2'),
      maxVersion: version('max_version', 'TLSv1.3'),
      clientAllowedSans: (sans as string[] | undefined | null) ?? [],
    };
  }

  const headers: Record<string, string> = {};
  const httpNode = document['http_server_config'];
  if (httpNode !== undefined && httpNode !== null) {
    const where = 'http_server_config';
    if (!isObject(httpNode)) return fail(`${where} must be a mapping`);
    known(httpNode, where, ['http2', 'headers']);
    // HTTP/1.1 is served either way (ALPN agrees on it): accepted so that the toolkit's files load.
    if (httpNode['http2'] !== undefined && typeof httpNode['http2'] !== 'boolean') fail(`${where}.http2 must be true or false`);
    const headersNode = httpNode['headers'];
    if (headersNode !== undefined && headersNode !== null) {
      if (!isObject(headersNode)) return fail(`${where}.headers must be a mapping`);
      for (const [name, value] of Object.entries(headersNode)) {
        const canonical = Object.keys(HEADERS).find((known) => known.toLowerCase() === name.toLowerCase());
        if (canonical === undefined) fail(`${where}.headers: ${name} is not one of ${Object.keys(HEADERS).join(', ')}`);
        if (typeof value !== 'string') fail(`${where}.headers.${name} must be a string`);
        const allowed = HEADERS[canonical as string];
        if (allowed !== undefined && !allowed.includes((value as string).toLowerCase())) {
          fail(`${where}.headers.${name} "${String(value)}" is not one of ${allowed.join(', ')}`);
        }
        if ((value as string) !== '') headers[canonical as string] = value as string;
      }
    }
  }

  const users = new Map<string, string>();
  const usersNode = document['basic_auth_users'];
  if (usersNode !== undefined && usersNode !== null) {
    if (!isObject(usersNode)) return fail('basic_auth_users must be a mapping of user name to bcrypt hash');
    for (const [user, hash] of Object.entries(usersNode)) {
      // Never echo the value: it may be a password pasted by mistake instead of its hash.
      if (typeof hash !== 'string' || !/^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$/.test(hash)) {
        fail(`basic_auth_users.${user} is not a bcrypt hash (e.g. from htpasswd -nBC 10 "" | tr -d ':\\n')`);
      }
      users.set(user, hash as string);
    }
  }
  return { tls, users, headers, files };
}
