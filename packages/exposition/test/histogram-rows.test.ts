import { describe, expect, it } from 'vitest';
import type { Histogram as SdkHistogram } from '@opentelemetry/api';
import {
  AggregationTemporality,
  MeterProvider,
  MetricReader,
  type DataPoint,
  type Histogram,
  type HistogramMetricData,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { CumulativeState } from '../src/collect/cumulative-state.js';
import { histogramRowsOf, PAGE_ROWS, ROW_COUNTS_OFFSET, rowPage, rowSlot, type HistogramRows } from '../src/collect/histogram-rows.js';
import { PrometheusTextSerializer } from '../src/format/prometheus-text.js';
import { OpenMetricsSerializer } from '../src/format/openmetrics.js';
import type { ExemplarLookup } from '../src/format/exemplar.js';
import { histogramCollection } from './exposition-support.js';

class DeltaReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.DELTA });
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

function onlyMetric(resourceMetrics: ResourceMetrics): HistogramMetricData {
  return resourceMetrics.scopeMetrics[0]?.metrics[0] as HistogramMetricData;
}

/** Row `i` against point `i`: the same attributes object and the same numbers. */
function expectRowsMatch(rows: HistogramRows, points: ReadonlyArray<DataPoint<Histogram>>): void {
  expect(rows.length).toBe(points.length);
  points.forEach((point, i) => {
    const page = rowPage(rows, i);
    const at = rowSlot(i) * rows.stride;
    expect(page.attributes[rowSlot(i)], `row ${i} attributes`).toBe(point.attributes);
    expect(page.values[at], `row ${i} count`).toBe(point.value.count);
    expect(page.hasSum[rowSlot(i)] === 1 ? page.values[at + 1] : undefined, `row ${i} sum`).toBe(point.value.sum ?? undefined);
    expect([...page.values.subarray(at + ROW_COUNTS_OFFSET, at + rows.stride)], `row ${i} counts`).toEqual(point.value.buckets.counts);
    expect(rows.boundaries).toEqual(point.value.buckets.boundaries);
  });
}

/** A histogram collected as deltas and made cumulative by a `CumulativeState`, as the reader does. */
function deltaHistogram(): { provider: MeterProvider; histogram: SdkHistogram; collect: () => Promise<HistogramMetricData> } {
  const deltas = new DeltaReader();
  const provider = new MeterProvider({ readers: [deltas] });
  const histogram = provider.getMeter('m').createHistogram('h', { advice: { explicitBucketBoundaries: [1, 10, 100] } });
  const state = new CumulativeState();
  const collect = async (): Promise<HistogramMetricData> => onlyMetric(state.accumulate((await deltas.collect()).resourceMetrics));
  return { provider, histogram, collect };
}

/** The same collection without rows: the serializer then reads the data points. */
function withoutRows(resourceMetrics: ResourceMetrics): ResourceMetrics {
  return {
    resource: resourceMetrics.resource,
    scopeMetrics: resourceMetrics.scopeMetrics.map(({ scope, metrics }) => ({ scope, metrics: metrics.map((metric): MetricData => ({ ...metric })) })),
  };
}

describe('histogram rows: the cumulative numbers as flat arrays beside the points', () => {
  it('hold each series in the order of the points, follow changes and new series, and a collection keeps its own', async () => {
    const { provider, histogram, collect } = deltaHistogram();
    for (let i = 0; i < 50; i++) histogram.record(i * 3.5, { series: String(i) });
    const first = await collect();
    const firstRows = histogramRowsOf(first);
    expect(firstRows).toBeDefined();
    expectRowsMatch(firstRows as HistogramRows, first.dataPoints);
    histogram.record(500, { series: '7' });
    histogram.record(0.5, { series: 'new' });
    const second = await collect();
    const secondRows = histogramRowsOf(second) as HistogramRows;
    expectRowsMatch(secondRows, second.dataPoints);
    expect(second.dataPoints[7]?.value.count).toBe(2);
    expect(secondRows.length).toBe(51);
    // The first collection (a scrape may still be writing it) reads what it collected.
    expectRowsMatch(firstRows as HistogramRows, first.dataPoints);
    expect(rowPage(firstRows as HistogramRows, 7).values[7 * (firstRows as HistogramRows).stride]).toBe(1);
    await provider.shutdown();
  });

  it('a collection shares the pages nothing changed in and gets a copy of the page a change is in', async () => {
    const { provider, histogram, collect } = deltaHistogram();
    const series = 4 * PAGE_ROWS + 10;
    for (let i = 0; i < series; i++) histogram.record(i, { series: String(i) });
    const first = await collect();
    const firstRows = histogramRowsOf(first) as HistogramRows;
    expect(firstRows.pages).toHaveLength(5);
    const changed = 2 * PAGE_ROWS + 5;
    histogram.record(1000, { series: String(changed) });
    histogram.record(3, { series: 'new' });
    const second = await collect();
    const secondRows = histogramRowsOf(second) as HistogramRows;
    expectRowsMatch(secondRows, second.dataPoints);
    expect(secondRows.pages.map((page, i) => page === firstRows.pages[i])).toEqual([true, true, false, true, false]);
    // The first collection still reads its own numbers in the page that changed.
    expectRowsMatch(firstRows, first.dataPoints);
    expect(rowPage(firstRows, changed).values[rowSlot(changed) * firstRows.stride]).toBe(1);
    // Nothing changed: the next collection is the same snapshot.
    expect(histogramRowsOf(await collect())).toBe(secondRows);
    await provider.shutdown();
  });

  it('render the very bytes the points render, text and OpenMetrics, with and without sums, own labels or none', () => {
    const points = (withSum: boolean): Array<DataPoint<Histogram>> =>
      [{}, { a: 'x' }, { a: 'y', b: 'é"\\\n' }].map((attributes, i) => {
        const value: Histogram = { buckets: { boundaries: [0.5, 5, 50], counts: [i, 2, 0, i * 1000] }, count: 2 + i * 1001 };
        if (withSum) value.sum = i * 12.25 - 0.1;
        return { attributes, startTime: [1, 0], endTime: [2, 0], value };
      });
    const serializer = new PrometheusTextSerializer();
    // OpenMetrics looks exemplars up by the attributes object: the rows hand it the point's own.
    const exemplars: ExemplarLookup = {
      histogramExemplars: (_name, attributes) => (attributes['a'] === 'x' ? [undefined, { labels: { trace_id: 't1' }, value: 3 }] : undefined),
    };
    const openMetrics = new OpenMetricsSerializer({ exemplars });
    for (const withSum of [true, false]) {
      const state = new CumulativeState();
      const collected = state.accumulate(histogramCollection(points(withSum), { temporality: AggregationTemporality.DELTA, scope: { name: 's', version: '1' } }));
      expect(histogramRowsOf(onlyMetric(collected))).toBeDefined();
      expect(histogramRowsOf(onlyMetric(withoutRows(collected)))).toBeUndefined();
      const fromRows = serializer.serialize(collected);
      expect(fromRows).toContain(withSum ? 'h_sum{a="x",otel_scope_name="s",otel_scope_version="1"} 12.15\n' : 'h_count{');
      if (!withSum) expect(fromRows).not.toContain('h_sum');
      expect(fromRows).toBe(serializer.serialize(withoutRows(collected)));
      const openMetricsFromRows = openMetrics.serialize(collected);
      expect(openMetricsFromRows).toContain('h_bucket{a="x",otel_scope_name="s",otel_scope_version="1",le="5"} 3 # {trace_id="t1"} 3\n');
      expect(openMetricsFromRows).toBe(openMetrics.serialize(withoutRows(collected)));
    }
  });

  it('a stream whose bucket boundaries change has no rows from then on, and its points still render', () => {
    const state = new CumulativeState();
    const collection = (boundaries: number[], counts: number[]): ResourceMetrics =>
      histogramCollection(
        [{ attributes: { series: 'a' }, startTime: [1, 0], endTime: [2, 0], value: { buckets: { boundaries, counts }, count: counts.reduce((a, b) => a + b, 0), sum: 1 } }],
        { temporality: AggregationTemporality.DELTA },
      );
    expect(histogramRowsOf(onlyMetric(state.accumulate(collection([1], [1, 0]))))).toBeDefined();
    const changed = state.accumulate(collection([1, 5], [0, 1, 0]));
    expect(histogramRowsOf(onlyMetric(changed))).toBeUndefined();
    expect(new PrometheusTextSerializer({ withoutScopeInfo: true }).serialize(changed)).toContain('h_bucket{series="a",le="5"} 1\n');
    expect(histogramRowsOf(onlyMetric(state.accumulate(collection([1, 5], [1, 0, 0]))))).toBeUndefined();
  });
});
