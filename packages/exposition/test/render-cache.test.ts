import { afterEach, describe, expect, it } from 'vitest';
import { ValueType, type Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  MeterProvider,
  type DataPoint,
  type Histogram,
  type MetricData,
  type MetricDescriptor,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { histogramCollection } from './exposition-support.js';
import {
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_DESCRIPTION,
  FIRST_CONNECTION_METRIC_NAME,
  FIRST_CONNECTION_METRIC_UNIT,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  LABEL_KEYS,
  firstConnectionView,
} from '@agentconn/core';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import {
  FastPrometheusReader,
  OpenMetricsSerializer,
  PrometheusTextSerializer,
  type Exemplar,
  type ExemplarLookup,
  type PrometheusSerializerOptions,
} from '../src/index.js';

// The serializers keep each series' label bytes (and its sum's text) across scrapes. These tests render
// collections that change between scrapes and compare every rendering with one that cannot use anything kept:
// upstream's PrometheusSerializer for the text format, and for OpenMetrics our writer on a copy of the
// collection whose descriptors and attributes objects are new (so nothing kept can match them).

const providers: MeterProvider[] = [];
afterEach(async () => {
  for (const provider of providers.splice(0)) await provider.shutdown();
});

function labelsFor(i: number): Attributes {
  return { template_name: `template-${i % 3}`, agent_name: 'main', username: `user-${i}`, workspace_name: `workspace-${i}` };
}

/** The same collection with new descriptor and attributes objects: a rendering of it starts from nothing. */
function uncached(resourceMetrics: ResourceMetrics): ResourceMetrics {
  return {
    resource: resourceMetrics.resource,
    scopeMetrics: resourceMetrics.scopeMetrics.map((scopeMetrics) => ({
      scope: scopeMetrics.scope,
      metrics: scopeMetrics.metrics.map(
        (metric) =>
          ({
            ...metric,
            descriptor: { ...metric.descriptor },
            dataPoints: metric.dataPoints.map((point) => ({ ...point, attributes: { ...point.attributes } })),
          }) as MetricData,
      ),
    })),
  };
}

function upstreamFor(options: PrometheusSerializerOptions): PrometheusSerializer {
  return new PrometheusSerializer(
    options.prefix,
    options.appendTimestamp ?? false,
    options.withResourceConstantLabels,
    options.withoutTargetInfo,
    options.withoutScopeInfo,
  );
}

/** Our text equals upstream's, and our OpenMetrics equals a rendering from nothing; returns both texts. */
function renderChecked(
  resourceMetrics: ResourceMetrics,
  options: PrometheusSerializerOptions = {},
  exemplars?: ExemplarLookup,
): { text: string; openMetrics: string } {
  const logger = createMemoryLogger();
  const text = new PrometheusTextSerializer({ ...options, logger }).serialize(resourceMetrics);
  expect(text).toBe(upstreamFor(options).serialize(resourceMetrics));
  const omOptions = { ...options, logger, ...(exemplars !== undefined && { exemplars }) };
  const openMetrics = new OpenMetricsSerializer(omOptions).serialize(resourceMetrics);
  expect(openMetrics).toBe(new OpenMetricsSerializer(omOptions).serialize(uncached(resourceMetrics)));
  return { text, openMetrics };
}

function changedLines(before: string, after: string): { removed: string[]; added: string[] } {
  const a = new Set(before.split('\n'));
  const b = new Set(after.split('\n'));
  return { removed: [...a].filter((line) => !b.has(line)), added: [...b].filter((line) => !a.has(line)) };
}

function firstConnectionSetup(series: number): { reader: FastPrometheusReader; record: (i: number, seconds: number) => void } {
  const reader = new FastPrometheusReader({ logger: createMemoryLogger() });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'render-cache-test' }),
    views: [firstConnectionView({ labels: [...LABEL_KEYS], cardinalityLimit: series + 10 })],
    readers: [reader],
  });
  providers.push(provider);
  const histogram = provider
    .getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION)
    .createHistogram(FIRST_CONNECTION_METRIC_NAME, { description: FIRST_CONNECTION_METRIC_DESCRIPTION, unit: FIRST_CONNECTION_METRIC_UNIT });
  const record = (i: number, seconds: number): void => histogram.record(seconds, labelsFor(i));
  for (let i = 0; i < series; i++) record(i, (i * 7.31) % 4000);
  return { reader, record };
}

function histogramPoints(resourceMetrics: ResourceMetrics): Array<DataPoint<Histogram>> {
  const metric = resourceMetrics.scopeMetrics[0]?.metrics[0];
  if (metric?.dataPointType !== DataPointType.HISTOGRAM) throw new Error('expected the histogram first');
  return metric.dataPoints;
}

describe('render cache: a scrape reuses what did not change, and only that', () => {
  it('the SDK hands out the same attributes object per series on every collection, in the same order', async () => {
    const { reader, record } = firstConnectionSetup(50);
    const first = histogramPoints((await reader.collect()).resourceMetrics);
    record(17, 12.5);
    const second = histogramPoints((await reader.collect()).resourceMetrics);
    expect(second).toHaveLength(50);
    for (let i = 0; i < 50; i++) {
      expect(second[i]?.attributes, `series ${i}`).toBe(first[i]?.attributes);
      if (i === 17) continue;
      // An unchanged cumulative series: the same count, sum and bucket counts.
      expect(second[i]?.value.count).toBe(first[i]?.value.count);
      expect(second[i]?.value.sum).toBe(first[i]?.value.sum);
      expect(second[i]?.value.buckets.counts).toEqual(first[i]?.value.buckets.counts);
    }
    expect(second[17]?.value.count).toBe((first[17]?.value.count ?? 0) + 1);
  });

  it('a new observation in one series between scrapes changes only that series lines (text and OpenMetrics with exemplars)', async () => {
    const { reader, record } = firstConnectionSetup(200);
    let exemplar: Exemplar = { labels: { agent_id: 'a-1' }, value: 1234.5, timestampSeconds: 1_795_602_034.5 };
    // Keyed on the labels' content (not the attributes object), so the reference rendering finds it too.
    const exemplars: ExemplarLookup = {
      histogramExemplars: (_name, attributes) => {
        if (attributes['workspace_name'] !== 'workspace-17') return undefined;
        const bounds = FIRST_CONNECTION_BUCKET_BOUNDARIES;
        const perBucket: Array<Exemplar | undefined> = new Array<Exemplar | undefined>(bounds.length + 1).fill(undefined);
        const index = bounds.findIndex((bound) => exemplar.value <= bound);
        perBucket[index < 0 ? bounds.length : index] = exemplar;
        return perBucket;
      },
    };
    const first = renderChecked((await reader.collect()).resourceMetrics, {}, exemplars);
    const again = renderChecked((await reader.collect()).resourceMetrics, {}, exemplars);
    expect(again).toEqual(first);

    record(17, 0.5);
    exemplar = { labels: { agent_id: 'a-2' }, value: 0.5, timestampSeconds: 1_795_602_100 };
    const second = renderChecked((await reader.collect()).resourceMetrics, {}, exemplars);
    for (const [before, after] of [
      [first.text, second.text],
      [first.openMetrics, second.openMetrics],
    ] as const) {
      const { removed, added } = changedLines(before, after);
      // 0.5 s is in the first bucket: _count, _sum and every cumulative bucket line moved, nothing else.
      expect(added).toHaveLength(2 + FIRST_CONNECTION_BUCKET_BOUNDARIES.length + 1);
      expect(removed).toHaveLength(added.length);
      for (const line of [...removed, ...added]) expect(line).toContain('workspace_name="workspace-17"');
    }
    expect(second.openMetrics).toContain('# {agent_id="a-2"} 0.5 1795602100');
    expect(second.openMetrics).not.toContain('a-1');
  });

  it('appendTimestamp: an unchanged series still gets the new collection time', async () => {
    const { reader } = firstConnectionSetup(20);
    const options = { appendTimestamp: true };
    const first = renderChecked((await reader.collect()).resourceMetrics, options);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = renderChecked((await reader.collect()).resourceMetrics, options);
    const samples = (text: string) => text.split('\n').filter((line) => line.length > 0 && !line.startsWith('#') && !line.startsWith('target_info'));
    const before = samples(first.text);
    const after = samples(second.text);
    expect(after).toHaveLength(before.length);
    for (let i = 0; i < after.length; i++) {
      expect(after[i]).not.toBe(before[i]);
      expect(after[i]?.replace(/ \d+(\.\d+)?$/, '')).toBe(before[i]?.replace(/ \d+(\.\d+)?$/, ''));
    }
  });
});

describe('render cache: collections that change shape (as a MetricProducer may hand them)', () => {
  // One descriptor object for the stream across collections, as the SDK keeps it.
  const descriptor: MetricDescriptor = {
    name: 'jobs.duration',
    description: 'job durations',
    unit: 's',
    valueType: ValueType.DOUBLE,
  };
  const a: Attributes = { job: 'a', shard: 1 };
  const b: Attributes = { job: 'b', note: 'quote " and \\ and \n' };
  const c: Attributes = {};

  function point(attributes: Attributes, counts: number[], sum: number, boundaries: number[] = [1, 10]): DataPoint<Histogram> {
    const count = counts.reduce((x, y) => x + y, 0);
    return { attributes, startTime: [1_700_000_000, 0], endTime: [1_700_000_060, 500_000_000], value: { buckets: { boundaries, counts }, count, sum } };
  }

  function collection(points: Array<DataPoint<Histogram>>, scope = { name: 'jobs', version: '1.0.0' }, resource: Attributes = { 'service.name': 'jobs' }): ResourceMetrics {
    return histogramCollection(points, { descriptor, scope, resource });
  }


  it('a series that disappears, moves, or is replaced by another at its position is written as it is now', () => {
    renderChecked(collection([point(a, [1, 0, 0], 0.5), point(b, [0, 2, 0], 9), point(c, [0, 0, 1], 20)]));
    // a vanished: b and c move up one position.
    const vanished = renderChecked(collection([point(b, [0, 2, 0], 9), point(c, [0, 0, 1], 20)])).text;
    expect(vanished).not.toContain('job="a"');
    // Reordered, and a back as a new attributes object with other content at the end.
    renderChecked(collection([point(c, [0, 0, 1], 20), point(b, [0, 2, 0], 9), point({ job: 'a', shard: 2 }, [1, 0, 0], 0.5)]));
    // At position 0, where c (no labels) was, another series.
    const replaced = renderChecked(collection([point({ job: 'z' }, [0, 0, 1], 20)])).text;
    expect(replaced).not.toContain('job="b"');
    expect(replaced).toContain('jobs_duration_count{job="z",otel_scope_name="jobs",otel_scope_version="1.0.0"} 1');
  });

  it('a changed sum with an unchanged count, and changed boundaries with unchanged counts, are written anew', () => {
    renderChecked(collection([point(a, [1, 1, 0], 5.25), point(b, [0, 2, 0], 9)]));
    const sum = renderChecked(collection([point(a, [1, 1, 0], 7.75), point(b, [0, 2, 0], 9)])).text;
    expect(sum).toContain('jobs_duration_sum{job="a",shard="1",otel_scope_name="jobs",otel_scope_version="1.0.0"} 7.75\n');
    // A View's new boundaries (after a restart with another configuration, or from a producer).
    const bounds = renderChecked(collection([point(a, [1, 1, 0], 7.75, [2, 20]), point(b, [0, 2, 0], 9, [2, 20])])).text;
    expect(bounds).toContain('le="20"');
    expect(bounds).not.toContain('le="10"');
  });

  it('another scope, resource, prefix or option on the same series objects changes every line it should', () => {
    const points = [point(a, [1, 0, 0], 0.5), point(b, [0, 2, 0], 9)];
    const variants: Array<[ResourceMetrics, PrometheusSerializerOptions]> = [
      [collection(points), {}],
      [collection(points, { name: 'jobs', version: '2.0.0' }), {}],
      [collection(points, { name: 'other', version: '2.0.0' }), {}],
      [collection(points, undefined, { 'service.name': 'jobs', region: 'eu' }), { withResourceConstantLabels: /region/ }],
      [collection(points), { prefix: 'app' }],
      [collection(points), { withoutScopeInfo: true }],
      [collection(points), { withoutTargetInfo: true, appendTimestamp: true }],
      [collection(points), {}],
    ];
    const texts = new Set<string>();
    for (const [resourceMetrics, options] of variants) texts.add(renderChecked(resourceMetrics, options).text);
    // Every variant but the repeated first one says something different.
    expect(texts.size).toBe(variants.length - 1);
  });

  it('two renderings of different collections of one stream, interleaved chunk by chunk, each write their own series', () => {
    const many = (prefix: string, n: number): Array<DataPoint<Histogram>> =>
      Array.from({ length: n }, (_, i) => point({ job: `${prefix}-${i}`, pad: 'x'.repeat(i % 1000) }, [i % 3, 1, i % 2], i * 0.37));
    // Enough replaced bytes that the table compacts its buffer while the other rendering still reads the old one.
    const collections = [collection(many('first', 3000)), collection(many('second', 2000).reverse()), collection(many('third', 2500))];
    const serializer = new PrometheusTextSerializer({ logger: createMemoryLogger() });
    const generators = collections.map((resourceMetrics) => serializer.chunks(resourceMetrics, 97));
    const parts: Buffer[][] = collections.map(() => []);
    let active = true;
    while (active) {
      active = false;
      generators.forEach((generator, i) => {
        const next = generator.next();
        if (next.done === true) return;
        parts[i]?.push(Buffer.from(next.value));
        active = true;
      });
    }
    collections.forEach((resourceMetrics, i) => {
      expect(Buffer.concat(parts[i] ?? []).toString('utf8'), `collection ${i}`).toBe(upstreamFor({}).serialize(resourceMetrics));
    });
  });
});
