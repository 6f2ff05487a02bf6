import type { Attributes } from '@opentelemetry/api';
import {
  EXEMPLAR_LABEL_KEYS,
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_NAME,
  MAX_EXEMPLAR_LABEL_CHARACTERS,
  type AgentLabels,
  type ExemplarLabelKey,
  type LabelKey,
} from './metric.js';

/**
 * Exemplars of `coderd_agents_first_connection_seconds`, kept beside the SDK (sdk-metrics 3.x has none):
 * for each series and bucket the latest observation, with the identifying labels the series no longer
 * carries. Served by the OpenMetrics exposition; OTLP export carries none.
 */

/** Ends a value shortened to fit the limit (one character). */
export const TRUNCATION_MARK = '…';

export interface FirstConnectionExemplar {
  /** `agent_id` first, then `workspace_name`, `username` (those not among the series labels). */
  readonly labels: Readonly<Record<string, string>>;
  /** The observed duration in seconds, at microsecond precision. */
  readonly value: number;
  /** The agent's first connection, Unix seconds (microsecond precision). */
  readonly timestampSeconds: number;
}

function characters(text: string): string[] {
  // Code points, as Prometheus counts them (a lone surrogate becomes one U+FFFD).
  return Array.from(text);
}

function shorten(chars: readonly string[], limit: number): string {
  if (chars.length <= limit) return chars.join('');
  if (limit <= 0) return '';
  return chars.slice(0, limit - 1).join('') + TRUNCATION_MARK;
}

/**
 * The exemplar labels of one agent within the 128-character limit. The rule: label names are never
 * shortened; `agent_id` is kept whole (a UUID, 36 characters: it is the key to look the agent up); the
 * characters left are shared between `workspace_name` and `username`, each whole if both fit, otherwise the
 * shorter whole if it fits in half and the longer cut to the rest, and a cut value ends with `…`.
 * With 64-character names each gets 31 characters (30 and `…`).
 */
export function exemplarLabels(agentId: string, labels: AgentLabels, seriesLabels: readonly LabelKey[]): Record<string, string> {
  const keys = EXEMPLAR_LABEL_KEYS.filter((key) => key === 'agent_id' || !seriesLabels.includes(key));
  let budget = MAX_EXEMPLAR_LABEL_CHARACTERS;
  for (const key of keys) budget -= key.length;
  // A string has no more code points than UTF-16 units: when the units fit, every value is kept whole,
  // without splitting it into code points (the common case, once per sample on a first poll).
  let units = agentId.length;
  for (const key of keys) {
    if (key === 'agent_id') continue;
    const value: unknown = labels[key];
    if (typeof value === 'string') units += value.length;
  }
  if (units <= budget) {
    const whole: Record<string, string> = { agent_id: agentId };
    for (const key of keys) {
      if (key === 'agent_id') continue;
      const value: unknown = labels[key];
      whole[key] = typeof value === 'string' ? value : '';
    }
    return whole;
  }
  const id = characters(agentId);
  const result: Record<string, string> = { agent_id: shorten(id, budget) };
  budget -= Math.min(id.length, budget);
  const rest = keys.filter((key): key is Exclude<ExemplarLabelKey, 'agent_id'> => key !== 'agent_id');
  // Labels outside the series are not validated by the recorder: a missing one is an empty value, never a throw.
  const values = rest.map((key) => {
    const value: unknown = labels[key];
    return characters(typeof value === 'string' ? value : '');
  });
  // Shortest first, so a short value leaves its unused share to the longer one.
  const order = values.map((_, i) => i).sort((a, b) => values[a]!.length - values[b]!.length);
  let left = order.length;
  const shortened: string[] = [];
  for (const i of order) {
    const share = Math.floor(budget / left);
    const text = shorten(values[i]!, share);
    shortened[i] = text;
    budget -= Math.min(values[i]!.length, share);
    left--;
  }
  for (const [i, key] of rest.entries()) result[key] = shortened[i] ?? '';
  return result;
}

/** Index of the bucket a value falls in: the first bound it does not exceed, else the `+Inf` bucket. */
export function bucketIndex(value: number, boundaries: readonly number[] = FIRST_CONNECTION_BUCKET_BOUNDARIES): number {
  let low = 0;
  let high = boundaries.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (value <= boundaries[mid]!) high = mid;
    else low = mid + 1;
  }
  return low;
}

/** The key of a series: its label values in the recorder's label order (the overflow set has none). */
export function seriesKey(attributes: Attributes, keys: readonly LabelKey[]): string {
  // JSON keeps values with separators or quotes apart.
  return JSON.stringify(keys.map((k) => attributes[k]));
}

/**
 * One exemplar per bucket per series, the observation with the latest first connection. Memory is bounded
 * by the series (the recorder caps them at the cardinality limit) times the buckets.
 */
export class FirstConnectionExemplars {
  readonly #labels: readonly LabelKey[];
  readonly #maxSeries: number;
  readonly #buckets = FIRST_CONNECTION_BUCKET_BOUNDARIES.length + 1;
  readonly #series = new Map<string, Array<FirstConnectionExemplar | undefined>>();
  /**
   * The SDK hands out the same attributes object for a series on every collection: remembering its bucket array
   * (changed in place, never replaced) saves building the key per data point per scrape.
   */
  readonly #byAttributes = new WeakMap<Attributes, Array<FirstConnectionExemplar | undefined>>();

  constructor(labels: readonly LabelKey[], maxSeries: number) {
    this.#labels = labels;
    this.#maxSeries = maxSeries;
  }

  /** How many series have exemplars. */
  get seriesCount(): number {
    return this.#series.size;
  }

  /**
   * Whether `observe` would keep an exemplar with this value and timestamp for the series `key`, so a
   * caller can skip building the labels of one it would drop.
   */
  accepts(key: string, value: number, timestampSeconds: number): boolean {
    const buckets = this.#series.get(key);
    if (buckets === undefined) return this.#series.size < this.#maxSeries;
    const current = buckets[bucketIndex(value)];
    return current === undefined || current.timestampSeconds <= timestampSeconds;
  }

  /** Keeps `exemplar` for its bucket of the series `key` unless that bucket holds a later one. */
  observe(key: string, exemplar: FirstConnectionExemplar): void {
    let buckets = this.#series.get(key);
    if (buckets === undefined) {
      if (this.#series.size >= this.#maxSeries) return;
      buckets = new Array<FirstConnectionExemplar | undefined>(this.#buckets).fill(undefined);
      this.#series.set(key, buckets);
    }
    const index = bucketIndex(exemplar.value);
    const current = buckets[index];
    // Prometheus drops an exemplar older than the series' last one, so the latest is the one worth serving.
    if (current === undefined || current.timestampSeconds <= exemplar.timestampSeconds) buckets[index] = exemplar;
  }

  /**
   * The exemplars of one histogram data point by bucket index, for an exposition's exemplar lookup; undefined
   * for other metrics and for series without any.
   */
  histogramExemplars(metricName: string, attributes: Attributes): ReadonlyArray<FirstConnectionExemplar | undefined> | undefined {
    if (metricName !== FIRST_CONNECTION_METRIC_NAME) return undefined;
    const known = this.#byAttributes.get(attributes);
    if (known !== undefined) return known;
    const buckets = this.#series.get(seriesKey(attributes, this.#labels));
    // Only hits are remembered: a series without exemplars yet may get some before the next scrape.
    if (buckets !== undefined) this.#byAttributes.set(attributes, buckets);
    return buckets;
  }
}
