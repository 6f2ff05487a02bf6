import { describe, expect, it } from 'vitest';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { FastPrometheusReader } from '../src/index.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { samples } from '@agentconn/test-support/exposition-parser';

/** What a gauge's callback observes now, by label value. */
function setup(options: { repeatUnobservedGauges?: boolean } = {}) {
  const reader = new FastPrometheusReader({ logger: createMemoryLogger(), withoutScopeInfo: true, ...options });
  const provider = new MeterProvider({ readers: [reader] });
  const meter = provider.getMeter('m');
  const now = new Map<string, number>();
  meter.createObservableGauge('waiting').addCallback((result) => {
    for (const [set, value] of now) result.observe(value, { set });
  });
  // A histogram aggregated elsewhere stays cumulative: its series never leave.
  const histogram = meter.createHistogram('h', { advice: { explicitBucketBoundaries: [1] } });
  return { reader, provider, now, histogram };
}

describe('observable gauges: only what the callbacks observed at this scrape', () => {
  it('a label set the callback no longer observes is gone at the next scrape; the others keep their values', async () => {
    const { reader, provider, now, histogram } = setup();
    try {
      now.set('a', 3).set('b', 1);
      histogram.record(0.5, { set: 'a' });
      expect(samples(await reader.serializeToString(), 'waiting')).toEqual(new Map([['waiting{set="a"}', 3], ['waiting{set="b"}', 1]]));
      now.delete('b');
      now.set('a', 2);
      let text = await reader.serializeToString();
      expect(samples(text, 'waiting')).toEqual(new Map([['waiting{set="a"}', 2]]));
      now.clear();
      text = await reader.serializeToString();
      expect(samples(text, 'waiting').size).toBe(0);
      expect(text).not.toContain('# TYPE waiting');
      expect(samples(text, 'h_count')).toEqual(new Map([['h_count{set="a"}', 1]]));
      now.set('b', 7);
      expect(samples(await reader.serializeToString(), 'waiting')).toEqual(new Map([['waiting{set="b"}', 7]]));
    } finally {
      await provider.shutdown();
    }
  });

  it('with repeatUnobservedGauges, as PrometheusExporter: the last value stays', async () => {
    const { reader, provider, now } = setup({ repeatUnobservedGauges: true });
    try {
      now.set('a', 3);
      await reader.serializeToString();
      now.clear();
      expect(samples(await reader.serializeToString(), 'waiting')).toEqual(new Map([['waiting{set="a"}', 3]]));
    } finally {
      await provider.shutdown();
    }
  });
});
