import { describe, expect, it } from 'vitest';
import { AggregationTemporality, InstrumentType } from '@opentelemetry/sdk-metrics';
import { observableGaugesAsDelta } from '../src/index.js';

describe('observableGaugesAsDelta', () => {
  it('observable gauges as deltas, every other instrument type as the reader or exporter chose', () => {
    const exporter = { selectAggregationTemporality: (type: InstrumentType) => (type === InstrumentType.COUNTER ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE) };
    const wrapped = observableGaugesAsDelta(exporter);
    expect(wrapped).toBe(exporter);
    expect(wrapped.selectAggregationTemporality(InstrumentType.OBSERVABLE_GAUGE)).toBe(AggregationTemporality.DELTA);
    expect(wrapped.selectAggregationTemporality(InstrumentType.COUNTER)).toBe(AggregationTemporality.DELTA);
    expect(wrapped.selectAggregationTemporality(InstrumentType.GAUGE)).toBe(AggregationTemporality.CUMULATIVE);
    expect(wrapped.selectAggregationTemporality(InstrumentType.HISTOGRAM)).toBe(AggregationTemporality.CUMULATIVE);
  });

  it('an exporter without a choice of its own keeps the SDK default (cumulative) for the others', () => {
    const wrapped = observableGaugesAsDelta({} as { selectAggregationTemporality?(type: InstrumentType): AggregationTemporality });
    expect(wrapped.selectAggregationTemporality?.(InstrumentType.OBSERVABLE_GAUGE)).toBe(AggregationTemporality.DELTA);
    expect(wrapped.selectAggregationTemporality?.(InstrumentType.OBSERVABLE_COUNTER)).toBe(AggregationTemporality.CUMULATIVE);
  });
});
