import { AggregationTemporality, InstrumentType } from '@opentelemetry/sdk-metrics';

/** Anything that chooses a temporality per instrument type: a `MetricReader` or a `PushMetricExporter`. */
export interface TemporalitySelecting {
  selectAggregationTemporality?(instrumentType: InstrumentType): AggregationTemporality;
}

/**
 * Makes `reader` collect observable gauges as deltas, so that a label set its callback no longer observes
 * leaves at the next collection, as the OpenTelemetry specification asks. With cumulative temporality the
 * OpenTelemetry JS SDK keeps reporting such a label set's last value (open-telemetry/opentelemetry-js#4096),
 * which for the awaiting gauges would be a count of agents that no longer wait. A gauge's value is the same
 * either way, and other instruments keep the reader's choice. Call it before the reader's first collection
 * (e.g. before passing it to a `MeterProvider`); returns `reader`.
 */
export function observableGaugesAsDelta<R extends TemporalitySelecting>(reader: R): R {
  const select = reader.selectAggregationTemporality?.bind(reader);
  reader.selectAggregationTemporality = (instrumentType: InstrumentType): AggregationTemporality =>
    instrumentType === InstrumentType.OBSERVABLE_GAUGE
      ? AggregationTemporality.DELTA
      : (select?.(instrumentType) ?? AggregationTemporality.CUMULATIVE);
  return reader;
}
