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

/**
 * True when the request's `Accept-Encoding` takes gzip (`gzip`, `x-gzip` or `*` with a q-value above 0, and gzip
 * not refused by `gzip;q=0`). Without the header, or with only `identity`, the answer is uncompressed.
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  let gzipQ: number | undefined;
  let starQ: number | undefined;
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [token = '', ...params] = part.split(';').map((text) => text.trim().toLowerCase());
    let q = 1;
    for (const param of params) {
      const match = /^q=([0-9.]+)$/.exec(param);
      if (match) q = Number(match[1]);
    }
    if (Number.isNaN(q)) continue;
    if (token === 'gzip' || token === 'x-gzip') gzipQ = Math.max(gzipQ ?? 0, q);
    else if (token === '*') starQ = q;
  }
  return (gzipQ ?? starQ ?? 0) > 0;
}
