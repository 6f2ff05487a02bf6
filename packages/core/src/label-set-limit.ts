import type { Attributes, Counter, Meter } from '@opentelemetry/api';
import type { Logger } from './logger.js';
import { OVERFLOW_ATTRIBUTE, SELF_METRICS, instrumentOptions } from './metric.js';

/** The one attribute set of the series that takes the label sets past an instrument's cardinality limit (the SDK's own). */
export const OVERFLOW_ATTRIBUTES: Attributes = Object.freeze({ [OVERFLOW_ATTRIBUTE]: true });

/** The label of `agentconn_label_set_overflow_samples_total` that names the instrument whose limit was reached. */
export const OVERFLOW_INSTRUMENT_LABEL = 'instrument';

export interface LabelSetLimitOptions {
  /**
   * The instrument's name, as its View selects it: the `instrument` label of the overflow self-metric. Several
   * instruments that always see the same label sets (a count and an oldest-age gauge) may share one limit.
   */
  readonly instrument: string | readonly string[];
  /** Most label sets of the instrument, its overflow series included (as the View's `aggregationCardinalityLimit`). */
  readonly cardinalityLimit: number;
  /** Where the overflow self-metric is counted. */
  readonly meter: Meter;
  readonly logger: Logger;
  /** Extra fields of the one warning logged when the limit is first reached (e.g. the configured labels). */
  readonly logFields?: Readonly<Record<string, unknown>>;
}

/**
 * One instrument's cardinality limit, the same for every instrument with label sets: the first
 * `cardinalityLimit - 1` label sets keep a series of their own for the life of the process, and every later
 * one is recorded into the one `otel.metric.overflow` series. Each sample that goes there is counted in
 * `agentconn_label_set_overflow_samples_total{instrument}`; the first is logged, once per instrument.
 *
 * Slots are kept for the process's life, not per collection: a counter's or histogram's series never leaves a
 * cumulative exposition, and the SDK remembers every attribute set an observable instrument ever reported, so
 * the SDK's own limit (the View's, the same number) would otherwise fold a later label set silently and, for a
 * gauge, with the last value instead of the sum.
 */
export class LabelSetLimit {
  readonly #instruments: readonly string[];
  readonly #capacity: number;
  readonly #counter: Counter;
  readonly #counterAttributes: readonly Attributes[];
  readonly #logger: Logger;
  readonly #logFields: Readonly<Record<string, unknown>>;
  /** Label sets by key, for `attributes()`; callers with their own cache use `admit()` and leave it empty. */
  readonly #sets = new Map<string, Attributes>();
  #admitted = 0;
  #logged = false;

  constructor(options: LabelSetLimitOptions) {
    const { instrument, cardinalityLimit } = options;
    if (!Number.isSafeInteger(cardinalityLimit) || cardinalityLimit < 2) {
      throw new RangeError(`cardinalityLimit must be an integer of at least 2, got ${String(cardinalityLimit)}`);
    }
    this.#instruments = typeof instrument === 'string' ? [instrument] : [...instrument];
    this.#capacity = cardinalityLimit - 1;
    this.#logger = options.logger;
    this.#logFields = options.logFields ?? {};
    this.#counter = options.meter.createCounter(SELF_METRICS.labelSetOverflow.name, instrumentOptions(SELF_METRICS.labelSetOverflow));
    this.#counterAttributes = this.#instruments.map((name) => Object.freeze({ [OVERFLOW_INSTRUMENT_LABEL]: name }));
    // A series at 0 from the start, so rate() and increase() see the first overflow.
    for (const attributes of this.#counterAttributes) this.#counter.add(0, attributes);
  }

  /** Label sets with a series of their own so far. */
  get size(): number {
    return this.#admitted;
  }

  /** Label sets that can have a series of their own: the cardinality limit less the overflow series. */
  get capacity(): number {
    return this.#capacity;
  }

  /**
   * The attributes to record one sample under: `attributes` (the first object given for its `key`, kept) while
   * its label set has a slot, otherwise the overflow set, and the sample is counted as overflow.
   * `key` must identify the label set, e.g. its values joined in a fixed order.
   */
  attributes(key: string, attributes: Attributes): Attributes {
    const own = this.slot(key, attributes);
    if (own !== undefined) return own;
    this.overflowed(1);
    return OVERFLOW_ATTRIBUTES;
  }

  /**
   * The kept attributes of the label set `key`, giving it a slot if there is room; undefined past the limit,
   * counting nothing (a gauge folds such sets itself and counts them with `overflowed`).
   */
  slot(key: string, attributes: Attributes): Attributes | undefined {
    const known = this.#sets.get(key);
    if (known !== undefined) return known;
    if (!this.admit()) return undefined;
    this.#sets.set(key, attributes);
    return attributes;
  }

  /**
   * A label set never seen before asks for a slot: true when it takes one (the caller keeps it and records
   * under it from now on), false when the limit is reached (the caller records under `OVERFLOW_ATTRIBUTES`
   * and calls `overflowed`).
   */
  admit(): boolean {
    if (this.#admitted >= this.#capacity) return false;
    this.#admitted++;
    return true;
  }

  /** Counts samples recorded into the overflow series (of each instrument); the first time, logs it per instrument. */
  overflowed(samples: number): void {
    if (!(samples > 0)) return;
    for (const attributes of this.#counterAttributes) this.#counter.add(samples, attributes);
    if (this.#logged) return;
    this.#logged = true;
    for (const metric of this.#instruments) {
      this.#logger.warn('cardinality limit of label sets reached; new label sets go to the otel_metric_overflow series', {
        metric,
        cardinality_limit: this.#capacity + 1,
        ...this.#logFields,
      });
    }
  }
}
