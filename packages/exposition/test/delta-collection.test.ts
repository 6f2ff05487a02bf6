import { describe, expect, it } from 'vitest';
import { type Attributes } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  MetricReader,
  type HistogramMetricData,
  type IMetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { FastPrometheusReader } from '../src/index.js';
import { mergeOrder } from '../src/collect/merge-order.js';
import { CumulativeState } from '../src/collect/cumulative-state.js';
import { Rng, randomScenario } from './exposition-random.js';
import { metadataSet, parseExposition, sampleSet } from '@agentconn/test-support/exposition-parser';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { histogramCollection, officialText } from './exposition-support.js';

/**
 * The reader collects histograms from the SDK as deltas and keeps their cumulative series itself; the official
 * exporter on the same MeterProvider collects everything cumulatively. Scrape after scrape, with rounds of
 * recording in between (some series again, some new, some instruments quiet), both must write the same bytes.
 */
async function scrapeRounds(seed: number, lateInstruments: boolean, rounds: number): Promise<Array<{ official: string; ours: string; round: number }>> {
  const rng = new Rng(seed);
  const scenario = randomScenario(rng, { promtoolSafe: false, histogramAggregations: true });
  const official = new PrometheusExporter({ preventServerStart: true });
  // Observable gauges as upstream keeps them (a label set no longer observed stays at its last value): the
  // scenarios' callbacks drop label sets, and both readers share one provider, where a delta gauge would show
  // another reader's observation of the same round.
  const ours = new FastPrometheusReader({ logger: createMemoryLogger(), repeatUnobservedGauges: true });
  const provider = new MeterProvider({
    resource: resourceFromAttributes(scenario.resourceAttributes),
    views: scenario.views,
    readers: [official as unknown as IMetricReader, ours],
  });
  const scrapes: Array<{ official: string; ours: string; round: number }> = [];
  try {
    const next = scenario.recordInRounds(provider, rng, { lateInstruments });
    for (let round = 0; round <= rounds; round++) {
      if (round > 0) next(round === rounds);
      // Either reader collects first: the other then finds the SDK's deltas grouped differently.
      const oursFirst = rng.chance(0.5);
      const a = oursFirst ? await ours.serializeToString() : onTheWire(await officialText(official));
      const b = oursFirst ? onTheWire(await officialText(official)) : await ours.serializeToString();
      scrapes.push({ official: oursFirst ? b : a, ours: oursFirst ? a : b, round });
    }
  } finally {
    await provider.shutdown();
  }
  return scrapes;
}

/** The SDK's deltas as they are, for the cumulative state under test. */
class DeltaReader extends MetricReader {
  constructor(temporality = AggregationTemporality.DELTA) {
    super({ aggregationTemporalitySelector: () => temporality });
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

/** The SDK's own cumulative collection, the reference. */
class CumulativeReader extends DeltaReader {
  constructor() {
    super(AggregationTemporality.CUMULATIVE);
  }
}

function onTheWire(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8');
}

describe('histograms collected as deltas, written as a cumulative collection', () => {
  it('writes the same bytes as the official exporter scrape after scrape (200 random workloads, 5 rounds each)', async () => {
    let quietHistogramScrapes = 0;
    let changedBetweenScrapes = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const scrapes = await scrapeRounds(seed, false, 5);
      for (const [i, { official, ours, round }] of scrapes.entries()) {
        expect(ours, `seed ${seed}, round ${round}`).toBe(official);
        const previous = scrapes[i - 1];
        if (previous !== undefined && previous.ours !== ours) changedBetweenScrapes++;
        if (previous !== undefined && /_bucket\{/.test(ours) && previous.ours.includes('_bucket{')) quietHistogramScrapes++;
      }
    }
    // The workloads must reach what this test is about: histograms across scrapes, and scrapes that differ.
    expect(quietHistogramScrapes).toBeGreaterThan(100);
    expect(changedBetweenScrapes).toBeGreaterThan(100);
  });

  it('instruments that first report in a later scrape: same meaning at once, same bytes once every instrument reported together', async () => {
    let lateAppearances = 0;
    for (let seed = 301; seed <= 450; seed++) {
      const scrapes = await scrapeRounds(seed, true, 4);
      for (const { official, ours, round } of scrapes) {
        const context = `seed ${seed}, round ${round}`;
        const parsedOurs = parseExposition(ours);
        const parsedOfficial = parseExposition(official);
        expect(metadataSet(parsedOurs), context).toEqual(metadataSet(parsedOfficial));
        expect(sampleSet(parsedOurs), context).toEqual(sampleSet(parsedOfficial));
        expect(parsedOurs.comments, context).toEqual(parsedOfficial.comments);
      }
      const first = scrapes[0];
      const last = scrapes[scrapes.length - 1];
      if (first !== undefined && last !== undefined && metadataSet(parseExposition(first.official)).length < metadataSet(parseExposition(last.official)).length) lateAppearances++;
      // The last round recorded into every synchronous instrument: the SDK's order is known again.
      expect(last?.ours, `seed ${seed}, last round`).toBe(last?.official);
    }
    expect(lateAppearances).toBeGreaterThan(20);
  });

  it('an unchanged series is the same data point object at the next collection; a changed one is a new object', async () => {
    const deltas = new DeltaReader();
    const provider = new MeterProvider({ readers: [deltas] });
    const histogram = provider.getMeter('m').createHistogram('h');
    const state = new CumulativeState();
    const collect = async (): Promise<HistogramMetricData['dataPoints']> => {
      const { resourceMetrics } = await deltas.collect();
      const metric = state.accumulate(resourceMetrics).scopeMetrics[0]?.metrics[0] as HistogramMetricData;
      return metric.dataPoints;
    };
    for (let i = 0; i < 100; i++) histogram.record(i, { series: String(i) });
    const first = await collect();
    expect(first).toHaveLength(100);
    const quiet = await collect();
    expect(quiet, 'nothing changed: the very same collection').toBe(first);
    histogram.record(1, { series: '7' });
    const second = await collect();
    expect(second).toHaveLength(100);
    for (let i = 0; i < 100; i++) {
      if (i === 7) expect(second[i]).not.toBe(first[i]);
      else expect(second[i], `series ${i}`).toBe(first[i]);
    }
    expect(second[7]?.value.count).toBe(2);
    expect(second[7]?.value.sum).toBe(8);
    expect(second[7]?.attributes).toBe(first[7]?.attributes);
    expect(first[7]?.value.count, 'a collection handed out is never changed afterwards').toBe(1);
    expect(state.streamCount).toBe(1);
    await provider.shutdown();
  });

  it('one series across collections exactly when the SDK says so: key order, null and undefined, strings against numbers and arrays', async () => {
    const pairs: Array<[Attributes, Attributes]> = [
      [{ a: 'x', b: 'y' }, { b: 'y', a: 'x' }],
      [{ k: null as unknown as string }, { k: undefined }],
      [{ k: 1 }, { k: '1' }],
      [{ k: [1, 2] }, { k: '1,2' }],
      [{ k: ['a', 'b'] }, { k: 'a,b' }],
      [{ k: true }, { k: 'true' }],
      [{ k: 'a' }, { k: 'a', j: '' }],
      [{ 'a:1': 'b' }, { a: '1:b' }],
    ];
    for (const [first, second] of pairs) {
      const deltas = new DeltaReader();
      const reference = new CumulativeReader();
      const provider = new MeterProvider({ readers: [deltas, reference] });
      const histogram = provider.getMeter('m').createHistogram('h');
      const state = new CumulativeState();
      histogram.record(1, first);
      state.accumulate((await deltas.collect()).resourceMetrics);
      histogram.record(2, second);
      const ours = state.accumulate((await deltas.collect()).resourceMetrics).scopeMetrics[0]?.metrics[0] as HistogramMetricData;
      const sdk = (await reference.collect()).resourceMetrics.scopeMetrics[0]?.metrics[0] as HistogramMetricData;
      const counts = (metric: HistogramMetricData) => metric.dataPoints.map((p) => p.value.count);
      expect(counts(ours), JSON.stringify([first, second])).toEqual(counts(sdk));
      await provider.shutdown();
    }
  });

  it('a series whose bucket boundaries change (as a producer may hand it) starts again from the new counts, with one warning', () => {
    const warnings: Array<Readonly<Record<string, unknown>>> = [];
    const state = new CumulativeState((_message, fields) => warnings.push(fields));
    const collection = (boundaries: number[], counts: number[]): ResourceMetrics =>
      histogramCollection(
        [{ attributes: { series: 'a' }, startTime: [1, 0], endTime: [2, 0], value: { buckets: { boundaries, counts }, count: counts.reduce((a, b) => a + b, 0), sum: 1 } }],
        { scope: { name: 'producer' }, temporality: AggregationTemporality.DELTA },
      );
    const countsOf = (rm: ResourceMetrics) => (rm.scopeMetrics[0]?.metrics[0] as HistogramMetricData | undefined)?.dataPoints[0]?.value;
    state.accumulate(collection([1], [1, 0]));
    expect(countsOf(state.accumulate(collection([1], [0, 2])))?.buckets.counts).toEqual([1, 2]);
    expect(warnings).toHaveLength(0);
    const changed = countsOf(state.accumulate(collection([1, 5], [0, 1, 0])));
    expect(changed?.buckets.counts).toEqual([0, 1, 0]);
    expect(changed?.count).toBe(1);
    expect(countsOf(state.accumulate(collection([1, 5], [1, 0, 0])))?.buckets.counts).toEqual([1, 1, 0]);
    expect(countsOf(state.accumulate(collection([1], [0, 1])))?.buckets.counts).toEqual([0, 1]);
    // Once per stream, however many series and collections follow.
    expect(warnings).toEqual([{ metric_name: 'h', kept_boundaries: 1, new_boundaries: 2 }]);
  });

  it('collect() returns cumulative points stamped with the collection time, the first attributes and start time kept', async () => {
    const ours = new FastPrometheusReader({ logger: createMemoryLogger() });
    const provider = new MeterProvider({ readers: [ours] });
    const histogram = provider.getMeter('m').createHistogram('h', { advice: { explicitBucketBoundaries: [1, 10] } });
    const attributes = { series: 'a' };
    histogram.record(0.5, attributes);
    const first = (await ours.collect()).resourceMetrics.scopeMetrics[0]?.metrics[0] as HistogramMetricData;
    await new Promise((resolve) => setTimeout(resolve, 3));
    histogram.record(5, { series: 'a' });
    histogram.record(50, { series: 'b' });
    await new Promise((resolve) => setTimeout(resolve, 3));
    const quietFirst = (await ours.collect()).resourceMetrics.scopeMetrics[0]?.metrics[0] as HistogramMetricData;
    await new Promise((resolve) => setTimeout(resolve, 3));
    const quiet = (await ours.collect()).resourceMetrics.scopeMetrics[0]?.metrics[0] as HistogramMetricData;
    expect(quiet.aggregationTemporality).toBe(AggregationTemporality.CUMULATIVE);
    expect(quiet.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(quiet.dataPoints.map((p) => [p.attributes, p.value.count, p.value.sum, p.value.min, p.value.max, p.value.buckets.counts])).toEqual([
      [attributes, 2, 5.5, 0.5, 5, [1, 1, 0]],
      [{ series: 'b' }, 1, 50, 50, 50, [0, 0, 1]],
    ]);
    expect(quiet.dataPoints[0]?.attributes).toBe(attributes);
    expect(quiet.dataPoints[0]?.startTime).toEqual(first.dataPoints[0]?.startTime);
    // Nothing changed in the last collection, yet every point carries that collection's time, as the SDK's would.
    const [quietEnd] = quiet.dataPoints.map((p) => p.endTime);
    for (const point of quiet.dataPoints) expect(point.endTime).toEqual(quietEnd);
    const seconds = (t: readonly [number, number] | undefined): number => (t === undefined ? Number.NaN : t[0] + t[1] / 1e9);
    expect(seconds(quietEnd)).toBeGreaterThan(seconds(quietFirst.dataPoints[0]?.endTime));
    await provider.shutdown();
  });

  it('with appendTimestamp the reader collects cumulatively as upstream: every sample has the scrape time', async () => {
    const ours = new FastPrometheusReader({ appendTimestamp: true, logger: createMemoryLogger() });
    const provider = new MeterProvider({ readers: [ours] });
    const histogram = provider.getMeter('m').createHistogram('h');
    histogram.record(1, { series: 'a' });
    const first = await ours.serializeToString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await ours.serializeToString();
    const stamps = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('h_')).map((l) => l.split(' ').at(-1) ?? '');
    expect(stamps(first).length).toBeGreaterThan(0);
    for (const [i, stamp] of stamps(second).entries()) expect(Number(stamp)).toBeGreaterThan(Number(stamps(first)[i]));
    await provider.shutdown();
  });
});

describe('mergeOrder: where a stream missing from a collection goes', () => {
  const always = (): boolean => true;

  it('keeps this collection order and puts each missing kept entry after its earlier neighbour', () => {
    expect(mergeOrder(['a', 'h', 'b', 'g'], ['a', 'b'], always)).toEqual(['a', 'h', 'b', 'g']);
    expect(mergeOrder(['h', 'a'], ['a'], always)).toEqual(['h', 'a']);
    expect(mergeOrder(['a', 'h'], ['a', 'n'], always)).toEqual(['a', 'h', 'n']);
    expect(mergeOrder(['a', 'x', 'b'], ['a', 'b'], (k) => k !== 'x')).toEqual(['a', 'b']);
    expect(mergeOrder([], ['a'], always)).toEqual(['a']);
  });

  it('a new entry in a missing one\'s gap goes after it until one collection holds both, then their real order wins', () => {
    // The SDK registered n before h; h is quiet when n first reports: the order cannot be known yet.
    const guess = mergeOrder(['h'], ['n'], always);
    expect(guess).toEqual(['h', 'n']);
    expect(mergeOrder(guess, ['n', 'h'], always)).toEqual(['n', 'h']);
    expect(mergeOrder(['n', 'h'], ['n'], always)).toEqual(['n', 'h']);
  });
});
