/** The two formats `/metrics` answers in. */
export type ExpositionFormat = 'prometheus-text' | 'openmetrics';

interface MediaRange {
  readonly type: string;
  readonly version: string | undefined;
  readonly q: number;
}

function parseAccept(header: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of header.split(',')) {
    const [typeText, ...params] = part.split(';');
    const type = (typeText ?? '').trim().toLowerCase();
    if (type === '') continue;
    let q = 1;
    let version: string | undefined;
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq < 0) continue;
      const key = param.slice(0, eq).trim().toLowerCase();
      const value = param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
      if (key === 'q') {
        const parsed = Number(value);
        q = Number.isFinite(parsed) ? Math.min(Math.max(parsed, 0), 1) : 0;
      } else if (key === 'version') version = value;
    }
    ranges.push({ type, version, q });
  }
  return ranges;
}

/** OpenMetrics text versions we can answer (1.0.0 is what we write; 0.0.1 parsers read it the same). */
const OPENMETRICS_VERSIONS = new Set([undefined, '1.0.0', '0.0.1']);

/**
 * The format to answer a scrape in, from its `Accept` header: OpenMetrics when the scraper prefers
 * `application/openmetrics-text` (Prometheus asks for it first by default) at least as much as the text
 * format; the Prometheus text format otherwise, including without an `Accept` header.
 */
export function negotiateExpositionFormat(accept: string | string[] | undefined): ExpositionFormat {
  if (accept === undefined) return 'prometheus-text';
  const header = Array.isArray(accept) ? accept.join(',') : accept;
  let openMetrics = 0;
  let text = 0;
  for (const range of parseAccept(header)) {
    if (range.type === 'application/openmetrics-text' && OPENMETRICS_VERSIONS.has(range.version)) {
      openMetrics = Math.max(openMetrics, range.q);
    } else if (range.type === 'text/plain' || range.type === 'text/*' || range.type === '*/*') {
      text = Math.max(text, range.q);
    }
  }
  return openMetrics > 0 && openMetrics >= text ? 'openmetrics' : 'prometheus-text';
}

/** An RFC 9110 qvalue: 0 to 1 with at most three decimals. */
const QVALUE = /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/;

interface Coding {
  readonly name: string;
  readonly q: number;
}

/** The codings of an `Accept-Encoding` header; an element whose q-value is not a valid qvalue is left out. */
function parseAcceptEncoding(header: string): Coding[] {
  const codings: Coding[] = [];
  for (const part of header.split(',')) {
    const [token = '', ...params] = part.split(';').map((text) => text.trim());
    if (token === '') continue;
    let q = 1;
    let valid = true;
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const value = param.slice(eq + 1).trim();
      if (!QVALUE.test(value)) valid = false;
      else q = Number(value);
    }
    if (valid) codings.push({ name: token.toLowerCase(), q });
  }
  return codings;
}

/**
 * The content coding to answer with, from `Accept-Encoding` as RFC 9110 (12.5.3) reads it: `gzip` (or `x-gzip`)
 * when `gzip` is offered and the header accepts it with a q-value above 0, explicitly or through `*`; otherwise
 * `identity`, unless the header refuses that too (`identity;q=0`, or `*;q=0` without `identity`): then undefined,
 * which the server answers with 406. An element with an invalid q-value (`q=-1`, `q=abc`) is ignored. Without the
 * header the answer is `identity`.
 */
export function negotiateContentEncoding(header: string | string[] | undefined, gzip = true): 'gzip' | 'identity' | undefined {
  if (header === undefined) return 'identity';
  let gzipQ: number | undefined;
  let identityQ: number | undefined;
  let starQ: number | undefined;
  for (const { name, q } of parseAcceptEncoding(Array.isArray(header) ? header.join(',') : header)) {
    if (name === 'gzip' || name === 'x-gzip') gzipQ = Math.max(gzipQ ?? 0, q);
    else if (name === 'identity') identityQ = Math.max(identityQ ?? 0, q);
    else if (name === '*') starQ = Math.max(starQ ?? 0, q);
  }
  if (gzip && (gzipQ ?? starQ ?? 0) > 0) return 'gzip';
  return (identityQ ?? starQ ?? 1) > 0 ? 'identity' : undefined;
}
