import { DEFAULT_CARDINALITY_LIMIT, DEFAULT_LABEL_KEYS, LABEL_KEYS, type LabelKey } from './metric.js';

/** Shared by the View and the recorder, so both agree on labels and the cardinality limit. */
export interface FirstConnectionMetricOptions {
  /**
   * Label keys to keep, any subset of the four (kept in Coder PR #24179's order). Default
   * `['template_name', 'agent_name']`, Coder #24355's set; `LABEL_KEYS` gives #24179's four.
   */
  readonly labels?: readonly LabelKey[];
  /** Most label sets kept for the histogram; beyond it samples go to the overflow series. Default 50 000. */
  readonly cardinalityLimit?: number;
}

export interface ResolvedMetricOptions {
  readonly labels: readonly LabelKey[];
  readonly cardinalityLimit: number;
}

/** Checks the options and fills defaults; throws a RangeError naming the bad option. */
export function validateMetricOptions(options: FirstConnectionMetricOptions): ResolvedMetricOptions {
  const chosen = options.labels ?? DEFAULT_LABEL_KEYS;
  for (const label of chosen) {
    if (!(LABEL_KEYS as readonly string[]).includes(label)) {
      throw new RangeError(`unknown label "${String(label)}": labels must be among ${LABEL_KEYS.join(', ')}`);
    }
  }
  const labels = LABEL_KEYS.filter((key) => chosen.includes(key));
  const cardinalityLimit = options.cardinalityLimit ?? DEFAULT_CARDINALITY_LIMIT;
  if (!Number.isSafeInteger(cardinalityLimit) || cardinalityLimit < 2) {
    throw new RangeError(`cardinalityLimit must be an integer of at least 2, got ${String(options.cardinalityLimit)}`);
  }
  return { labels, cardinalityLimit };
}

/** Parses a comma-separated label list such as `template_name,agent_name` (for CLIs and env vars). */
export function parseLabelList(text: string): LabelKey[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw new RangeError(`empty label list: choose among ${LABEL_KEYS.join(', ')}`);
  for (const item of items) {
    if (!(LABEL_KEYS as readonly string[]).includes(item)) {
      throw new RangeError(`unknown label "${item}": labels must be among ${LABEL_KEYS.join(', ')}`);
    }
  }
  return items as LabelKey[];
}
