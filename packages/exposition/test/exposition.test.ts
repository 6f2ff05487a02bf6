import { describe, expect, it } from 'vitest';
import type { Attributes } from '@opentelemetry/api';
import { AggregationType, MeterProvider, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter, PrometheusSerializer, type ExporterConfig } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  FIRST_CONNECTION_METRIC_DESCRIPTION,
  FIRST_CONNECTION_METRIC_NAME,
  FIRST_CONNECTION_METRIC_UNIT,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  LABEL_KEYS,
  firstConnectionView,
} from '@agentconn/core';
import { FastPrometheusReader, PrometheusTextSerializer, type PrometheusSerializerOptions } from '../src/index.js';
import { Rng, randomScenario, type Scenario } from './exposition-random.js';
import { metadataSet, parseExposition, sampleSet, type ParsedExposition } from '@agentconn/test-support/exposition-parser';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { promtoolCheckMetrics } from '@agentconn/test-support/promtool';
import { officialText } from './exposition-support.js';

type SharedOptions = Pick<ExporterConfig, 'prefix' | 'withResourceConstantLabels' | 'withoutScopeInfo' | 'withoutTargetInfo'>;

function randomOptions(rng: Rng): SharedOptions {
  const options: SharedOptions = {};
  if (rng.chance(0.2)) options.withoutScopeInfo = true;
  if (rng.chance(0.2)) options.withoutTargetInfo = true;
  if (rng.chance(0.15)) options.prefix = rng.pick(['app', 'agentconn', 'x1']);
  if (rng.chance(0.2)) options.withResourceConstantLabels = rng.pick([/^service/, /deployment|region/, /.*/]);
  return options;
}

interface Scrapes {
  readonly official: string;
  readonly ours: string;
}

/** One MeterProvider, two readers: the official exporter (server never started) and ours. */
async function scrapeBoth(scenario: Scenario, options: SharedOptions): Promise<Scrapes> {
  const official = new PrometheusExporter({ ...options, preventServerStart: true });
  const ours = new FastPrometheusReader({ ...options, logger: createMemoryLogger() });
  const provider = new MeterProvider({
    resource: resourceFromAttributes(scenario.resourceAttributes),
    views: scenario.views,
    // The official exporter is built against sdk-metrics 3.1.0, ours against 3.1.1: same reader contract.
    readers: [official as unknown as IMetricReader, ours],
  });
  try {
    scenario.record(provider);
    // As the bytes on the wire decode: a lone surrogate in a label value goes out as U+FFFD from both.
    return { official: onTheWire(await officialText(official)), ours: await ours.serializeToString() };
  } finally {
    await provider.shutdown();
  }
}

function onTheWire(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8');
}

function expectSameMeaning(ours: ParsedExposition, official: ParsedExposition): void {
  expect(metadataSet(ours)).toEqual(metadataSet(official));
  expect(sampleSet(ours)).toEqual(sampleSet(official));
  expect(ours.comments).toEqual(official.comments);
}

describe('FastPrometheusReader against @opentelemetry/exporter-prometheus 0.301', () => {
  it('writes the same families, samples and metadata on random workloads', async () => {
    const seen = {
      overflow: 0,
      noSum: 0,
      untyped: 0,
      escapedValue: 0,
      nan: 0,
      inf: 0,
      merged: 0,
      bucketsInf: 0,
      target: 0,
      noMetrics: 0,
    };
    for (let seed = 1; seed <= 300; seed++) {
      const rng = new Rng(seed);
      const scenario = randomScenario(rng, { promtoolSafe: false });
      const options = randomOptions(rng);
      const { official, ours } = await scrapeBoth(scenario, options);
      const context = `seed ${seed}, options ${JSON.stringify(options, (_k, v: unknown) => (v instanceof RegExp ? String(v) : v))}`;
      let parsedOfficial: ParsedExposition;
      let parsedOurs: ParsedExposition;
      try {
        parsedOfficial = parseExposition(official);
        parsedOurs = parseExposition(ours);
        expectSameMeaning(parsedOurs, parsedOfficial);
      } catch (error) {
        throw new Error(`${context}: ${String(error)}`, { cause: error });
      }
      // Same order too: the serializer mirrors upstream family by family, line by line.
      expect(ours, context).toBe(official);

      const samples = parsedOurs.samples;
      if (samples.some((s) => s.labels.some(([k, v]) => k === 'otel_metric_overflow' && v === 'true'))) seen.overflow++;
      if (samples.some((s) => s.labels.some(([, v]) => /["\\\n]/.test(v)))) seen.escapedValue++;
      if (samples.some((s) => s.value === 'NaN')) seen.nan++;
      if (samples.some((s) => s.value === '+Inf' || s.value === '-Inf')) seen.inf++;
      if (samples.some((s) => s.labels.some(([k, v]) => k === 'le' && v === '+Inf'))) seen.bucketsInf++;
      if (samples.some((s) => s.name === 'target_info')) seen.target++;
      if (parsedOurs.comments.includes('# no registered metrics')) seen.noMetrics++;
      for (const [name, meta] of parsedOurs.metadata) {
        if (meta.type === 'untyped') seen.untyped++;
        if (meta.type === 'histogram' && samples.some((s) => s.name === `${name}_count`)) {
          if (!samples.some((s) => s.name === `${name}_sum`)) seen.noSum++;
        }
        const scopes = new Set(
          samples.filter((s) => s.name.startsWith(name)).map((s) => s.labels.find(([k]) => k === 'otel_scope_name')?.[1]),
        );
        if (scopes.size > 1) seen.merged++;
      }
    }
    // The generator must actually reach the cases this test is about.
    for (const [feature, count] of Object.entries(seen)) expect(count, feature).toBeGreaterThan(0);
  });

  it('matches upstream serializer options on one collect, timestamps included', async () => {
    for (let seed = 1000; seed < 1100; seed++) {
      const rng = new Rng(seed);
      const scenario = randomScenario(rng, { promtoolSafe: false });
      const options = randomOptions(rng);
      const appendTimestamp = rng.chance(0.5);
      const reader = new FastPrometheusReader();
      const provider = new MeterProvider({
        resource: resourceFromAttributes(scenario.resourceAttributes),
        views: scenario.views,
        readers: [reader],
      });
      scenario.record(provider);
      const { resourceMetrics } = await reader.collect();
      const upstream = new PrometheusSerializer(
        options.prefix,
        appendTimestamp,
        options.withResourceConstantLabels,
        options.withoutTargetInfo,
        options.withoutScopeInfo,
      );
      const ourOptions: PrometheusSerializerOptions = { ...options, appendTimestamp, logger: createMemoryLogger() };
      const ours = new PrometheusTextSerializer(ourOptions);
      const expected = upstream.serialize(resourceMetrics);
      expect(ours.serialize(resourceMetrics), `seed ${seed}`).toBe(onTheWire(expected));
      // Chunks never split a line and add up to the same bytes.
      const chunks = [...ours.chunks(resourceMetrics, 1 + rng.int(2000))];
      expect(Buffer.concat(chunks).equals(Buffer.from(expected, 'utf8')), `seed ${seed} chunks`).toBe(true);
      for (const chunk of chunks.slice(0, -1)) expect(chunk[chunk.length - 1]).toBe(10);
      await provider.shutdown();
    }
  });

  it('writes "# no registered metrics" like upstream when nothing was recorded', async () => {
    for (const options of [{}, { withoutTargetInfo: true }]) {
      const { official, ours } = await scrapeBoth(
        { resourceAttributes: { 'service.name': 'empty' }, views: [], record: () => {} },
        options,
      );
      expect(ours).toBe(official);
      expect(ours.endsWith('# no registered metrics')).toBe(true);
    }
  });

  it('passes promtool check metrics on random workloads', async () => {
    let checked = 0;
    for (let seed = 5000; seed < 5030; seed++) {
      const rng = new Rng(seed);
      const scenario = randomScenario(rng, { promtoolSafe: true });
      const options = randomOptions(rng);
      const { ours } = await scrapeBoth(scenario, options);
      const { status, output } = promtoolCheckMetrics(ours);
      expect({ seed, status, output }).toEqual({ seed, status: 0, output: '' });
      checked++;
    }
    expect(checked).toBe(30);
  });

  it('promtool rejects what a broken escaper would write (the check has teeth)', () => {
    const { status } = promtoolCheckMetrics('# HELP m x\n# TYPE m gauge\nm{a="un"escaped"} 1\n');
    expect(status).not.toBe(0);
  });
});

describe('edge cases of upstream naming and grouping, byte for byte', () => {
  const cases: Array<{ name: string; options?: SharedOptions; resource?: Attributes; scenario: Scenario['record']; views?: Scenario['views'] }> = [
    {
      name: 'a gauge named target.info joins the target_info family',
      scenario: (provider) => provider.getMeter('a').createGauge('target.info').record(2, { k: 'v' }),
    },
    {
      name: 'a histogram named target_info conflicts with it: the whole family, resource line included, is dropped',
      scenario: (provider) => {
        provider.getMeter('a').createHistogram('target_info').record(2);
        provider.getMeter('a').createCounter('kept').add(1);
      },
    },
    {
      name: 'counter vs gauge on one Prometheus name (jobs + jobs_total) is a TYPE conflict',
      scenario: (provider) => {
        provider.getMeter('a').createCounter('jobs').add(1);
        provider.getMeter('b').createGauge('jobs_total').record(3);
        provider.getMeter('b').createUpDownCounter('jobs').add(-1);
      },
    },
    {
      name: 'a counter already ending in _total gets no second suffix',
      scenario: (provider) => provider.getMeter('a').createCounter('requests_total').add(5),
    },
    {
      name: 'HELP and UNIT conflicts keep the first',
      scenario: (provider) => {
        provider.getMeter('a').createCounter('hits', { description: 'first', unit: 's' }).add(1);
        provider.getMeter('b').createCounter('hits', { description: 'second', unit: 'ms' }).add(2);
        provider.getMeter('c').createCounter('hits').add(3);
      },
    },
    {
      name: 'View names: a leading digit gets an underscore, a name that sanitizes to "_" is dropped',
      views: [
        { instrumentName: 'one', name: '1st.metric' },
        { instrumentName: 'two', name: '..' },
      ],
      scenario: (provider) => {
        provider.getMeter('a').createGauge('one').record(1);
        provider.getMeter('a').createGauge('two').record(2);
      },
    },
    {
      name: 'boundaries with Infinity, and no boundaries at all',
      views: [
        { instrumentName: 'with_inf', aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [1, Infinity] } } },
        { instrumentName: 'no_bounds', aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [] } } },
      ],
      scenario: (provider) => {
        const meter = provider.getMeter('a');
        for (const v of [0.5, 3, Infinity]) meter.createHistogram('with_inf').record(v);
        meter.createHistogram('no_bounds').record(7, { k: 'v' });
      },
    },
    {
      name: 'an empty resource, a prefix and resource constant labels',
      options: { prefix: '9lives', withResourceConstantLabels: /.*/ },
      resource: {},
      scenario: (provider) => provider.getMeter('a').createCounter('c').add(1),
    },
    {
      name: 'attribute keys that collide with scope labels after sanitization (upstream writes both)',
      scenario: (provider) => provider.getMeter('a', '1').createGauge('g').record(1, { 'otel.scope.name': 'x', otel_scope_version: 'y' }),
    },
  ];
  for (const testCase of cases) {
    it(testCase.name, async () => {
      const { official, ours } = await scrapeBoth(
        { resourceAttributes: testCase.resource ?? { 'service.name': 'edge' }, views: testCase.views ?? [], record: testCase.scenario },
        testCase.options ?? {},
      );
      expect(ours).toBe(official);
    });
  }
});

describe('the metric contract of Coder PR #24179, byte for byte', () => {
  it('writes coderd_agents_first_connection_seconds with its HELP, UNIT, TYPE, buckets and escaped labels', async () => {
    const reader = new FastPrometheusReader();
    const provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': 'agentconn-exporter' }),
      // Coder PR #24179's four labels (the default is Coder #24355's two), to check every one is escaped.
      views: [firstConnectionView({ labels: [...LABEL_KEYS] })],
      readers: [reader],
    });
    const histogram = provider
      .getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION)
      .createHistogram(FIRST_CONNECTION_METRIC_NAME, {
        description: FIRST_CONNECTION_METRIC_DESCRIPTION,
        unit: FIRST_CONNECTION_METRIC_UNIT,
      });
    const labels: Attributes = {};
    const values = ['docker "dev"', 'main', 'ünïcode\\user', 'ws\nnewline'];
    LABEL_KEYS.forEach((key, i) => {
      labels[key] = values[i];
    });
    for (const seconds of [1, 1.000001, 4000]) histogram.record(seconds, labels);
    const text = await reader.serializeToString();
    await provider.shutdown();

    const series =
      'template_name="docker \\"dev\\"",agent_name="main",username="ünïcode\\\\user",workspace_name="ws\\nnewline",' +
      'otel_scope_name="@agentconn/core",otel_scope_version="0.1.0"';
    const name = 'coderd_agents_first_connection_seconds';
    const cumulative = [1, 2, 2, 2, 2, 2, 2, 2, 2];
    const bounds = ['1', '10', '30', '60', '120', '300', '600', '1800', '3600'];
    expect(text).toBe(
      [
        '# HELP target_info Target metadata',
        '# TYPE target_info gauge',
        'target_info{service_name="agentconn-exporter"} 1',
        `# HELP ${name} Duration from agent creation to first connection to the control plane in seconds.`,
        `# UNIT ${name} s`,
        `# TYPE ${name} histogram`,
        `${name}_count{${series}} 3`,
        `${name}_sum{${series}} ${0 + 1 + 1.000001 + 4000}`,
        ...bounds.map((le, i) => `${name}_bucket{${series},le="${le}"} ${cumulative[i]}`),
        `${name}_bucket{${series},le="+Inf"} 3`,
        '',
      ].join('\n'),
    );
  });
});
