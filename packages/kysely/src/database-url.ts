/**
 * PostgreSQL URLs as the exporter takes them: parsed and checked so that `pg` and a reader of the logs
 * see the same host, user and parameters, given a password from elsewhere, and shown without secrets.
 */
import { decodeParameterName, redactSecrets, redactUrlText } from './secret-redaction.js';

/** The `sslmode` values `pg` acts on (libpq's `allow` it does not implement). */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'] as const;

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/** A database URL that cannot be read one way only. The message names the problem, never the URL. */
export class DatabaseUrlError extends Error {
  override readonly name = 'DatabaseUrlError';
}

export interface DatabaseUrl {
  /** The URL as given, for the driver. */
  readonly text: string;
  /** For logs: the same URL with every password replaced by `***`. */
  readonly redacted: string;
}

/**
 * Checks that `text` is a `postgres://` or `postgresql://` URL that `pg` and a reader of the logs see
 * the same way, and gives its redacted form. Refused: a `#` (it would end the URL there), a space, a `%`
 * that is not a `%XX` escape, an `@` past the host (an unencoded `@`, `/` or `?` in the password moves
 * the host), a URL that does not parse, an unknown `sslmode`.
 */
export function parseDatabaseUrl(text: string): DatabaseUrl {
  const scheme = SCHEME.exec(text)?.[1];
  if (scheme === undefined) throw new DatabaseUrlError('not a URL (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)');
  if (!/^postgres(ql)?$/i.test(scheme)) throw new DatabaseUrlError(`scheme "${scheme}" is not postgres or postgresql`);
  // Every message below describes the text without quoting it: a part of the password may be anywhere.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this check refuses
  if (/[\s\u0000-\u001f\u007f]/.test(text)) throw new DatabaseUrlError('has a space or control character: write a space as %20');
  if (text.includes('#')) throw new DatabaseUrlError("has a '#', which would end the URL there: write a '#' in the password as %23");
  if (/%(?![0-9a-f]{2})/i.test(text)) throw new DatabaseUrlError("has a '%' that is not a %XX escape: write a '%' in the password as %25");

  const parts = splitUrl(text);
  if ((parts.userinfo?.includes('@') ?? false) || parts.path.includes('@') || parts.queryKeys().some((k) => k.includes('@'))) {
    throw new DatabaseUrlError("has an '@' past the user and password: write an '@', '/' or '?' in the user or password as %40, %2F, %3F");
  }
  let url: URL;
  try {
    // `pg` reads `user:password@/db?host=/socket/dir` (no host) by putting a host in; so do we.
    url = new URL(parts.host === '' && parts.userinfo !== undefined ? text.replace('@/', '@localhost/') : text);
  } catch {
    throw new DatabaseUrlError('does not parse as a URL: check the host and the port (an IPv6 host goes in brackets, [::1])');
  }
  const sslmode = url.searchParams.get('sslmode');
  if (sslmode !== null && !(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new DatabaseUrlError(`sslmode "${sslmode}" is not one of ${SSL_MODES.join(', ')}`);
  }
  const authorityAt = parts.userinfo === undefined ? -1 : text.indexOf('://') + 3 + parts.userinfo.length;
  return { text, redacted: redactUrlText(text, authorityAt) };
}

/**
 * The URL with `password` as its password (percent-encoded into the userinfo), any `password=`
 * parameter (which `pg` would prefer) removed, every other character as it was.
 */
export function withPassword(url: DatabaseUrl, password: string): DatabaseUrl {
  const { text } = url;
  const start = text.indexOf('://') + 3;
  const parts = splitUrl(text);
  const user = parts.userinfo === undefined ? '' : parts.userinfo.split(':')[0] ?? '';
  const afterUserinfo = parts.userinfo === undefined ? text.slice(start) : text.slice(start + parts.userinfo.length + 1);
  const queryStart = afterUserinfo.indexOf('?');
  let rest = afterUserinfo;
  if (queryStart !== -1) {
    const kept = afterUserinfo
      .slice(queryStart + 1)
      .split('&')
      .filter((pair) => decodeParameterName(pair.split('=')[0] ?? '') !== 'password');
    rest = afterUserinfo.slice(0, queryStart) + (kept.length > 0 ? `?${kept.join('&')}` : '');
  }
  return parseDatabaseUrl(`${text.slice(0, start)}${user}:${encodeURIComponent(password)}@${rest}`);
}

/** A database URL (or a libpq `key=value` string) fit for logs: every password replaced by `***`. */
export function redactDatabaseUrl(text: string): string {
  if (!SCHEME.test(text)) return redactSecrets(text);
  try {
    return parseDatabaseUrl(text).redacted;
  } catch {
    return redactUrlText(text);
  }
}

interface UrlParts {
  /** Between `://` and the last `@` of the authority; undefined without an `@`. */
  readonly userinfo: string | undefined;
  readonly host: string;
  readonly path: string;
  readonly query: string | undefined;
  queryKeys(): string[];
}

/** The authority ends at the first `/` or `?` (as WHATWG URL reads it); the userinfo at its last `@`. */
function splitUrl(text: string): UrlParts {
  const rest = text.slice(text.indexOf('://') + 3);
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const afterAuthority = authorityEnd === -1 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  const queryStart = afterAuthority.indexOf('?');
  const query = queryStart === -1 ? undefined : afterAuthority.slice(queryStart + 1);
  return {
    userinfo: at === -1 ? undefined : authority.slice(0, at),
    host: authority.slice(at + 1),
    path: queryStart === -1 ? afterAuthority : afterAuthority.slice(0, queryStart),
    query,
    queryKeys: () => (query === undefined ? [] : query.split('&').map((pair) => pair.split('=')[0] ?? '')),
  };
}

/**
 * Where `pg` connects for this URL, for messages: `HOST:PORT` (the `host`/`port` parameters win over the
 * authority, as in `pg`; 5432 by default), an IPv6 host in brackets, a Unix socket directory as is.
 */
export function databaseEndpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text.replace('@/', '@localhost/'));
  } catch {
    return 'the database';
  }
  const host = url.searchParams.get('host') ?? (url.hostname === '' ? 'localhost' : url.hostname);
  const port = url.searchParams.get('port') ?? (url.port === '' ? '5432' : url.port);
  if (host.startsWith('/')) return `${host} (port ${port})`;
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

