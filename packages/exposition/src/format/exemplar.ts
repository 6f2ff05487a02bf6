import type { Attributes } from '@opentelemetry/api';

/** One exemplar of a histogram bucket, as OpenMetrics writes it: `# {labels} value [timestamp]`. */
export interface Exemplar {
  /** At most 128 characters of names and values together (OpenMetrics); written in this key order. */
  readonly labels: Readonly<Record<string, string>>;
  /** The observed value; it must lie in the bucket (above the previous bound, at most this one). */
  readonly value: number;
  /** When it was observed, Unix seconds. */
  readonly timestampSeconds?: number;
}

/**
 * Where the OpenMetrics writer finds exemplars: the SDK has none, so they live beside it (for our histogram,
 * in `@agentconn/core`'s `FirstConnectionExemplars`). The exposition never imports the recorder: whoever
 * builds the reader passes a lookup.
 */
export interface ExemplarLookup {
  /**
   * The exemplars of one histogram data point, indexed like its bucket counts (the last is `+Inf`), or
   * undefined when there are none. Called once per data point per scrape: keep it cheap.
   */
  histogramExemplars(metricName: string, attributes: Attributes): ReadonlyArray<Exemplar | undefined> | undefined;
}
