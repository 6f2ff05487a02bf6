import {
  AggregationType,
  createAllowListAttributesProcessor,
  InstrumentType,
  type ViewOptions,
} from '@opentelemetry/sdk-metrics';
import {
  AWAITING_METRICS,
  DEFAULT_CARDINALITY_LIMIT,
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_NAME,
  OVERFLOW_ATTRIBUTE,
  START_BUCKET_BOUNDARIES,
  START_METRICS,
  type StartLabelKey,
} from './metric.js';
import { validateStartLabels } from './start/start-recorder.js';
import { validateMetricOptions, type FirstConnectionMetricOptions } from './metric-options.js';

/** What `labelSetLimitView` selects and keeps. */
export interface LabelSetLimitViewOptions {
  readonly instrumentName: string;
  readonly instrumentType: InstrumentType;
  /** The attribute keys the instrument's series keep (the overflow attribute is added). */
  readonly attributeKeys: readonly string[];
  /** Most label sets, the overflow series included: the same number as the instrument's `LabelSetLimit`. */
  readonly cardinalityLimit: number;
  readonly aggregation?: ViewOptions['aggregation'];
}

/**
 * The View every instrument with label sets uses: its attribute allow-list and the cardinality limit, so the
 * SDK never folds label sets at its default of 2000 before the instrument's `LabelSetLimit` does.
 */
export function labelSetLimitView(options: LabelSetLimitViewOptions): ViewOptions {
  const { cardinalityLimit } = options;
  if (!Number.isSafeInteger(cardinalityLimit) || cardinalityLimit < 2) {
    throw new RangeError(`cardinalityLimit must be an integer of at least 2, got ${String(cardinalityLimit)}`);
  }
  return {
    instrumentName: options.instrumentName,
    instrumentType: options.instrumentType,
    ...(options.aggregation !== undefined && { aggregation: options.aggregation }),
    attributesProcessors: [createAllowListAttributesProcessor([...options.attributeKeys, OVERFLOW_ATTRIBUTE])],
    aggregationCardinalityLimit: cardinalityLimit,
  };
}

/**
 * The View for `coderd_agents_first_connection_seconds`: explicit buckets, the label allow-list and a
 * cardinality limit. Pass it to your own MeterProvider: `new MeterProvider({ views: [firstConnectionView()] })`;
 * `agentconnViews()` gives it with the Views of the other instruments.
 */
export function firstConnectionView(options: FirstConnectionMetricOptions = {}): ViewOptions {
  const { labels, cardinalityLimit } = validateMetricOptions(options);
  return labelSetLimitView({
    instrumentName: FIRST_CONNECTION_METRIC_NAME,
    instrumentType: InstrumentType.HISTOGRAM,
    attributeKeys: labels,
    cardinalityLimit,
    aggregation: {
      type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM,
      options: { boundaries: [...FIRST_CONNECTION_BUCKET_BOUNDARIES], recordMinMax: true },
    },
  });
}

/**
 * The Views of every instrument with label sets that this package creates (the histogram, the awaiting gauges
 * and the timeouts counter), with the same labels and cardinality limit:
 * `new MeterProvider({ views: agentconnViews({ labels, cardinalityLimit }) })`.
 */
export function agentconnViews(options: FirstConnectionMetricOptions = {}): ViewOptions[] {
  const { labels, cardinalityLimit } = validateMetricOptions(options);
  const limited = (instrumentName: string, instrumentType: InstrumentType): ViewOptions =>
    labelSetLimitView({ instrumentName, instrumentType, attributeKeys: labels, cardinalityLimit });
  return [
    firstConnectionView({ labels, cardinalityLimit }),
    limited(AWAITING_METRICS.awaiting.name, InstrumentType.OBSERVABLE_GAUGE),
    limited(AWAITING_METRICS.oldestWait.name, InstrumentType.OBSERVABLE_GAUGE),
    limited(AWAITING_METRICS.timeouts.name, InstrumentType.COUNTER),
  ];
}

/** Options of the start family's Views, the same as its recorder's. */
export interface WorkspaceStartViewOptions {
  readonly labels?: readonly StartLabelKey[];
  readonly cardinalityLimit?: number;
}

/**
 * The Views of the start family (`--phases`): the buckets `0.1 … 3600` on its four histograms, and on all six
 * instruments the configured labels plus each one's own (`outcome`, `phase`, `stage`, `script` and `status`),
 * with the cardinality limit.
 */
export function workspaceStartViews(options: WorkspaceStartViewOptions = {}): ViewOptions[] {
  const labels = validateStartLabels(options.labels);
  const cardinalityLimit = options.cardinalityLimit ?? DEFAULT_CARDINALITY_LIMIT;
  const withoutPrebuild = labels.filter((key) => key !== 'is_prebuild');
  const histogram = (instrumentName: string, attributeKeys: readonly string[]): ViewOptions =>
    labelSetLimitView({
      instrumentName,
      instrumentType: InstrumentType.HISTOGRAM,
      attributeKeys,
      cardinalityLimit,
      aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [...START_BUCKET_BOUNDARIES], recordMinMax: true } },
    });
  const gauge = (instrumentName: string): ViewOptions =>
    labelSetLimitView({ instrumentName, instrumentType: InstrumentType.OBSERVABLE_GAUGE, attributeKeys: [...withoutPrebuild, 'phase'], cardinalityLimit });
  return [
    histogram(START_METRICS.start.name, [...labels, 'outcome']),
    histogram(START_METRICS.phase.name, [...labels, 'phase']),
    histogram(START_METRICS.stage.name, [...withoutPrebuild, 'stage']),
    histogram(START_METRICS.script.name, [...withoutPrebuild, 'script', 'status']),
    gauge(START_METRICS.inProgress.name),
    gauge(START_METRICS.inProgressOldest.name),
  ];
}
