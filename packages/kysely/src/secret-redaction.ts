/**
 * The one place that knows where a PostgreSQL password can hide: the URL's userinfo, its `password=` and
 * `sslpassword=` parameters (any spelling of the name, percent-encoded or not), and libpq-style
 * `password=...` pairs. Everything here works on the parsed structure of the text, never by searching
 * for the secret itself: a one-letter password must not turn every such letter into `***`.
 */

/** Connection parameters whose value is a secret. */
const SECRET_PARAMETERS: ReadonlySet<string> = new Set(['password', 'sslpassword']);

const MASK = '***';

/** `USER[:PASSWORD]`: how a usage hint writes the userinfo (this package's own messages do), not a credential. */
const PLACEHOLDER_USERINFO = /^[A-Z_]+\[:[A-Z_]+\]$/;

/**
 * Any text (an error message, a log field) with the passwords of the URLs and `password=` pairs it
 * contains replaced by `***`. A URL in running text ends at white space or a quote; its password is
 * all from the user's `:` to the last `@`, so an unencoded `@`, `/` or `#` in it is hidden too.
 */
export function redactSecrets(text: string): string {
  const urls = text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]*/gi, (token) => {
    // `(see postgres://…)`: a closing parenthesis without its opening one belongs to the sentence.
    const closesSentence = token.endsWith(')') && token.split(')').length > token.split('(').length;
    return closesSentence ? `${redactUrlText(token.slice(0, -1))})` : redactUrlText(token);
  });
  return urls.replace(
    /(?<![a-z0-9_%])((?:ssl|pg)?password)(\s*=\s*)('[^']*'|"[^"]*"|[^\s&'",;)]+)/gi,
    (_match, key: string, separator: string) => `${key}${separator}${MASK}`,
  );
}

/**
 * Rewrites the password parts of one URL-shaped text and keeps every other character as it was. Loose
 * on purpose (it also serves text that is not a valid URL): the userinfo runs to the last `@` of the
 * whole text (unless `at` says where it ends), so a password holding an unencoded `@`, `/`, `?` or `#`
 * is still covered.
 */
export function redactUrlText(text: string, at = text.lastIndexOf('@')): string {
  const start = text.indexOf('://') + 3;
  let head = text.slice(0, start);
  let rest = text.slice(start);
  if (at >= start) {
    const userinfo = text.slice(start, at);
    const colon = userinfo.indexOf(':');
    head += colon === -1 || PLACEHOLDER_USERINFO.test(userinfo) ? userinfo : `${userinfo.slice(0, colon)}:${MASK}`;
    rest = text.slice(at);
  }
  const queryStart = rest.indexOf('?');
  if (queryStart === -1) return head + rest;
  const fragmentStart = rest.indexOf('#', queryStart);
  const queryEnd = fragmentStart === -1 ? rest.length : fragmentStart;
  const query = rest
    .slice(queryStart + 1, queryEnd)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1) return pair;
      const key = pair.slice(0, eq);
      return SECRET_PARAMETERS.has(decodeParameterName(key)) ? `${key}=${MASK}` : pair;
    })
    .join('&');
  return `${head}${rest.slice(0, queryStart + 1)}${query}${rest.slice(queryEnd)}`;
}

/** A query parameter's name as `pg` sees it (URLSearchParams decoding), lower-cased. */
export function decodeParameterName(key: string): string {
  try {
    return decodeURIComponent(key.replaceAll('+', ' ')).trim().toLowerCase();
  } catch {
    return key.toLowerCase();
  }
}
