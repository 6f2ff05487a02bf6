import {
  AggregationType,
  createAllowListAttributesProcessor,
  InstrumentType,
  type ViewOptions,
} from '@opentelemetry/sdk-metrics';
import { FIRST_CONNECTION_BUCKET_BOUNDARIES, FIRST_CONNECTION_METRIC_NAME, OVERFLOW_ATTRIBUTE } from './metric.js';
import { validateMetricOptions, type FirstConnectionMetricOptions } from './metric-options.js';

/**
 * The View for `coderd_agents_first_connection_seconds`: explicit buckets, the label allow-list and a
 * cardinality limit. Pass it to your own MeterProvider: `new MeterProvider({ views: [firstConnectionView()] })`.
 */
export function firstConnectionView(options: FirstConnectionMetricOptions = {}): ViewOptions {
  const { labels, cardinalityLimit } = validateMetricOptions(options);
  return {
    instrumentName: FIRST_CONNECTION_METRIC_NAME,
    instrumentType: InstrumentType.HISTOGRAM,
    aggregation: {
      type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM,
      options: { boundaries: [...FIRST_CONNECTION_BUCKET_BOUNDARIES], recordMinMax: true },
    },
    attributesProcessors: [createAllowListAttributesProcessor([...labels, OVERFLOW_ATTRIBUTE])],
    aggregationCardinalityLimit: cardinalityLimit,
  };
}
