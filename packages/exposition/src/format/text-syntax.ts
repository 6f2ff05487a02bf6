/**
 * The Prometheus text exposition format 0.0.4, as `@opentelemetry/exporter-prometheus` 0.301 writes it:
 * the same name sanitization, escaping and number formatting, so a scrape of either says the same thing.
 */

import type { AttributeValue, Attributes } from '@opentelemetry/api';

export const PROMETHEUS_TEXT_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Written when no metric family produced a line (the official exporter's marker, without a newline). */
export const NO_REGISTERED_METRICS = '# no registered metrics';

const INVALID_NAME_CHARS = /[^a-z0-9_]/gi;
const UNDERSCORE_RUNS = /_{2,}/g;
const HELP_SPECIALS = /[\\\n]/;
const LABEL_VALUE_SPECIALS = /[\\\n"]/;
const LABEL_VALUE_SPECIALS_ALL = /[\\\n"]/g;

/** Backslash and newline, the two characters HELP text escapes. */
export function escapeHelp(text: string): string {
  if (!HELP_SPECIALS.test(text)) return text;
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelChar(ch: string): string {
  if (ch === '\\') return '\\\\';
  if (ch === '\n') return '\\n';
  return '\\"';
}

/**
 * A label value between double quotes: strings as they are, other attribute values as JSON (the official
 * exporter's choice), then backslash, newline and double quote escaped in one pass.
 */
export function escapeLabelValue(value: AttributeValue | undefined): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value === undefined) text = '';
  else text = JSON.stringify(value);
  if (!LABEL_VALUE_SPECIALS.test(text)) return text;
  return text.replace(LABEL_VALUE_SPECIALS_ALL, escapeLabelChar);
}

/**
 * Every character outside `[a-zA-Z0-9_]` becomes `_`, runs of `_` collapse to one. Used for metric names and,
 * as upstream does, for label names too (which keeps a leading digit: upstream behaviour, kept on purpose).
 */
export function sanitizeName(name: string): string {
  return name.replace(INVALID_NAME_CHARS, '_').replace(UNDERSCORE_RUNS, '_');
}

const LABEL_NAME_CACHE_LIMIT = 4096;
const labelNameCache = new Map<string, string>();

/** `sanitizeName` for attribute keys, memoized: a scrape sees the same few keys on every data point. */
export function sanitizeLabelName(key: string): string {
  let name = labelNameCache.get(key);
  if (name === undefined) {
    name = sanitizeName(key);
    // Keys come from instrumentation code, not data, but a bound keeps a misbehaving caller from growing it.
    if (labelNameCache.size >= LABEL_NAME_CACHE_LIMIT) labelNameCache.clear();
    labelNameCache.set(key, name);
  }
  return name;
}

/**
 * `k="v",k="v"` for an attribute set, in the set's key order; empty for no attributes. Built once per data
 * point, then shared by all of its lines.
 */
export function formatLabels(attributes: Attributes): string {
  let out = '';
  for (const key of Object.keys(attributes)) {
    const pair = sanitizeLabelName(key) + '="' + escapeLabelValue(attributes[key]) + '"';
    out = out.length > 0 ? out + ',' + pair : pair;
  }
  return out;
}

/** Sample values: `+Inf`, `-Inf`, `NaN`, otherwise JavaScript's shortest round-trip form (`0.005`, `1e+21`). */
export function formatValue(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** A bucket's `le` value: finite bounds as JavaScript prints them, the last (implicit) bucket as `+Inf`. */
export function formatBucketBound(bound: number | undefined): string {
  return bound === undefined || bound === Infinity ? '+Inf' : String(bound);
}

/** `{a,b}` with the comma only when both sides have labels; nothing at all when neither has. */
export function braceLabels(first: string, second: string): string {
  if (first.length === 0) return second.length === 0 ? '' : '{' + second + '}';
  return second.length === 0 ? '{' + first + '}' : '{' + first + ',' + second + '}';
}
