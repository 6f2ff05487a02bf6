import type { Attributes } from '@opentelemetry/api';
import { bucketIndex, TRUNCATION_MARK } from '../exemplars.js';
import { MAX_EXEMPLAR_LABEL_CHARACTERS, START_BUCKET_BOUNDARIES } from '../metric.js';

/** One exemplar of a start-family histogram: the build it came from and when its sample happened. */
export interface StartExemplar {
  /** `build_id` first, then `workspace_name`, `username` (those not among the series labels). */
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestampSeconds: number;
}

/**
 * The exemplar labels of a build within OpenMetrics' 128 characters: `build_id` whole (the key to look the
 * build up), the rest shared by the other values, a cut value ending with `…`.
 */
export function startExemplarLabels(buildId: string, extra: Readonly<Record<string, string>>): Record<string, string> {
  const labels: Record<string, string> = { build_id: buildId };
  let budget = MAX_EXEMPLAR_LABEL_CHARACTERS - 'build_id'.length - Array.from(buildId).length;
  const keys = Object.keys(extra);
  for (const key of keys) budget -= key.length;
  keys.forEach((key, i) => {
    const chars = Array.from(extra[key] ?? '');
    const share = Math.max(0, Math.floor(budget / (keys.length - i)));
    const text = chars.length <= share ? chars.join('') : share <= 0 ? '' : chars.slice(0, share - 1).join('') + TRUNCATION_MARK;
    budget -= Array.from(text).length;
    labels[key] = text;
  });
  return labels;
}

/**
 * The latest observation per bucket of each series of the start-family histograms, for OpenMetrics scrapes
 * (sdk-metrics keeps none). Memory is bounded by the series (capped by the cardinality limit) times the buckets.
 */
export class StartExemplars {
  readonly #byMetric = new Map<string, Map<string, Array<StartExemplar | undefined>>>();
  readonly #maxSeries: number;

  constructor(metricNames: readonly string[], maxSeries: number) {
    for (const name of metricNames) this.#byMetric.set(name, new Map());
    this.#maxSeries = maxSeries;
  }

  /** Keeps `exemplar` for its bucket unless the bucket holds a later one (Prometheus drops older exemplars). */
  observe(metricName: string, attributes: Attributes, exemplar: StartExemplar): void {
    const series = this.#byMetric.get(metricName);
    if (series === undefined) return;
    const key = attributesKey(attributes);
    let buckets = series.get(key);
    if (buckets === undefined) {
      if (series.size >= this.#maxSeries) return;
      buckets = new Array<StartExemplar | undefined>(START_BUCKET_BOUNDARIES.length + 1).fill(undefined);
      series.set(key, buckets);
    }
    const index = bucketIndex(exemplar.value, START_BUCKET_BOUNDARIES);
    const current = buckets[index];
    if (current === undefined || current.timestampSeconds <= exemplar.timestampSeconds) buckets[index] = exemplar;
  }

  /** The exemplars of one histogram data point by bucket index; undefined for other metrics. */
  histogramExemplars(metricName: string, attributes: Attributes): ReadonlyArray<StartExemplar | undefined> | undefined {
    return this.#byMetric.get(metricName)?.get(attributesKey(attributes));
  }
}

/** A series' key: its attributes sorted by name, so the SDK's object and ours give the same key. */
function attributesKey(attributes: Attributes): string {
  return JSON.stringify(Object.keys(attributes).sort().map((k) => [k, attributes[k]]));
}
