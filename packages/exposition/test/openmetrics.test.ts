import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Attributes } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { FIRST_CONNECTION_METRIC_NAME, FirstConnectionRecorder, firstConnectionView } from '@agentconn/core';
import {
  FastPrometheusReader,
  negotiateExpositionFormat,
  OPENMETRICS_CONTENT_TYPE,
  openMetricsUnit,
  PROMETHEUS_TEXT_CONTENT_TYPE,
  type Exemplar,
  type ExemplarLookup,
} from '../src/index.js';
import { Rng, randomScenario } from './exposition-random.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';

const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

const providers: MeterProvider[] = [];
afterEach(async () => {
  for (const provider of providers.splice(0)) await provider.shutdown();
});

function setup(exemplars?: ExemplarLookup): { reader: FastPrometheusReader; provider: MeterProvider } {
  const reader = new FastPrometheusReader({ logger: createMemoryLogger(), ...(exemplars !== undefined && { exemplars }) });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'om-test' }),
    readers: [reader],
    views: [firstConnectionView()],
  });
  providers.push(provider);
  return { reader, provider };
}

const sampleLines = (text: string) => text.split('\n').filter((l) => l.length > 0 && !l.startsWith('#'));
const withoutExemplar = (line: string) => line.replace(/ # \{.*$/, '');

/**
 * The OpenMetrics rules a parser enforces on structure: one HELP/TYPE per family before its samples, families
 * not interleaved, counter samples `_total`, UNIT a suffix of the family name, `# EOF` last and only once.
 */
function checkStructure(text: string): void {
  expect(text.endsWith('# EOF\n')).toBe(true);
  expect(text.indexOf('# EOF')).toBe(text.length - '# EOF\n'.length);
  const lines = text.slice(0, -'# EOF\n'.length).split('\n').filter((l) => l.length > 0);
  const done = new Set<string>();
  let family: { name: string; type: string } | undefined;
  for (const line of lines) {
    const meta = /^# (HELP|TYPE|UNIT) (\S+)(?: (.*))?$/.exec(line);
    if (meta !== null) {
      const [, kind, name = '', rest = ''] = meta;
      if (family?.name !== name) {
        if (family !== undefined) done.add(family.name);
        expect(done.has(name), `family ${name} interleaved`).toBe(false);
        family = { name, type: 'unknown' };
      }
      if (kind === 'TYPE') family.type = rest;
      if (kind === 'UNIT') expect(name.endsWith('_' + rest), `UNIT ${rest} of ${name}`).toBe(true);
      continue;
    }
    expect(line.startsWith('#'), line).toBe(false);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line)?.[1] ?? '';
    expect(family, `sample before metadata: ${line}`).toBeDefined();
    const f = family!;
    const allowed =
      f.type === 'counter' ? [f.name + '_total'] :
      f.type === 'histogram' ? [f.name + '_bucket', f.name + '_count', f.name + '_sum'] :
      f.type === 'info' ? [f.name + '_info'] : [f.name];
    expect(allowed, `${sample} in ${f.type} family ${f.name}`).toContain(sample);
  }
}

describe('Accept negotiation', () => {
  it.each([
    [PROMETHEUS_ACCEPT, 'openmetrics'],
    ['application/openmetrics-text', 'openmetrics'],
    ['application/openmetrics-text; version=0.0.1', 'openmetrics'],
    [undefined, 'prometheus-text'],
    ['', 'prometheus-text'],
    ['text/plain;version=0.0.4', 'prometheus-text'],
    ['*/*', 'prometheus-text'],
    ['application/openmetrics-text;q=0.3,text/plain;q=0.9', 'prometheus-text'],
    ['application/openmetrics-text;version=2.0.0', 'prometheus-text'],
    ['application/openmetrics-text;q=0', 'prometheus-text'],
    ['application/json', 'prometheus-text'],
  ] as const)('%s → %s', (accept, format) => {
    expect(negotiateExpositionFormat(accept)).toBe(format);
  });
});

describe('OpenMetrics writer', () => {
  it('UNIT only where the name ends with the unit word', () => {
    expect(openMetricsUnit('coderd_agents_first_connection_seconds', 's')).toBe('seconds');
    expect(openMetricsUnit('agentconn_samples_observed', '{sample}')).toBeUndefined();
    expect(openMetricsUnit('agentconn_leader', '1')).toBeUndefined();
    expect(openMetricsUnit('cache_hit_ratio', '1')).toBe('ratio');
  });

  it('counters as counter families, the histogram with # UNIT and its exemplars on bucket lines, # EOF', async () => {
    let recorder: FirstConnectionRecorder | undefined;
    const { reader, provider } = setup({ histogramExemplars: (n, a) => recorder?.exemplars.histogramExemplars(n, a) });
    recorder = new FirstConnectionRecorder({ meterProvider: provider, logger: createMemoryLogger() });
    const labels = { template_name: 'docker', agent_name: 'main' };
    recorder.record({
      agentId: 'a-fast',
      createdAt: '2026-11-25 10:00:00+00',
      firstConnectedAt: '2026-11-25 10:00:05.000001+00',
      labels: { ...labels, username: 'al"ice', workspace_name: 'dev\\n\n🚀' },
    });
    recorder.record({
      agentId: 'a-slow',
      createdAt: '2026-11-25 10:00:00+00',
      firstConnectedAt: '2026-11-25 10:20:34.567891+00',
      labels: { ...labels, username: 'bob', workspace_name: 'big' },
    });
    const text = await reader.serializeToString('openmetrics');
    checkStructure(text);
    expect(text).toContain('# TYPE agentconn_samples_observed counter\nagentconn_samples_observed_total{');
    expect(text).toContain('# TYPE target info\ntarget_info{service_name="om-test"');
    expect(text).toContain(
      `# HELP ${FIRST_CONNECTION_METRIC_NAME} Duration from agent creation to first connection to the control plane in seconds.\n` +
        `# TYPE ${FIRST_CONNECTION_METRIC_NAME} histogram\n# UNIT ${FIRST_CONNECTION_METRIC_NAME} seconds\n`,
    );
    const series = 'template_name="docker",agent_name="main",otel_scope_name="@agentconn/core",otel_scope_version="0.1.0"';
    const fastAt = String((Date.parse('2026-11-25T10:00:05Z') * 1000 + 1) / 1e6);
    expect(text).toContain(
      `${FIRST_CONNECTION_METRIC_NAME}_bucket{${series},le="10"} 1 # {agent_id="a-fast",workspace_name="dev\\\\n\\n🚀",username="al\\"ice"} 5.000001 ${fastAt}\n`,
    );
    expect(text).toContain(
      `${FIRST_CONNECTION_METRIC_NAME}_bucket{${series},le="1800"} 2 # {agent_id="a-slow",workspace_name="big",username="bob"} 1234.567891 `,
    );
    // Buckets without an observation of their own carry no exemplar.
    expect(text).toContain(`${FIRST_CONNECTION_METRIC_NAME}_bucket{${series},le="30"} 1\n`);
    expect(text.match(/ # \{/g)).toHaveLength(2);
    expect(text).toContain(`${FIRST_CONNECTION_METRIC_NAME}_count{${series}} 2\n`);
  });

  it('with appendTimestamp, counters and gauges end with the collection time in seconds, as the text format has it in ms', async () => {
    const reader = new FastPrometheusReader({ appendTimestamp: true, logger: createMemoryLogger() });
    const provider = new MeterProvider({ readers: [reader] });
    providers.push(provider);
    const meter = provider.getMeter('m');
    meter.createCounter('jobs').add(3, { queue: 'a' });
    meter.createGauge('depth').record(7);
    const before = Date.now() / 1000;
    const text = await reader.serializeToString('openmetrics');
    const after = Date.now() / 1000;
    checkStructure(text);
    const counter = /^jobs_total\{queue="a",otel_scope_name="m"\} 3 (\d+(?:\.\d+)?)$/m.exec(text);
    const gauge = /^depth\{otel_scope_name="m"\} 7 (\d+(?:\.\d+)?)$/m.exec(text);
    expect(counter, text).not.toBeNull();
    expect(gauge, text).not.toBeNull();
    for (const match of [counter, gauge]) {
      const seconds = Number(match?.[1]);
      expect(seconds).toBeGreaterThanOrEqual(Math.floor(before) - 1);
      expect(seconds).toBeLessThanOrEqual(after + 1);
    }
    const textFormat = await reader.serializeToString('prometheus-text');
    expect(textFormat).toMatch(/^jobs_total\{queue="a",otel_scope_name="m"\} 3 \d{13}/m);
  });

  it('leaves out an exemplar whose value is not in its bucket, and exemplars of other metrics', async () => {
    const bad: Exemplar = { labels: { agent_id: 'x' }, value: 50, timestampSeconds: 1 };
    const good: Exemplar = { labels: { agent_id: 'y' }, value: 0.5 };
    const lookup: ExemplarLookup = { histogramExemplars: (name) => (name === 'h' ? [good, bad] : [good]) };
    const { reader, provider } = setup(lookup);
    const h = provider.getMeter('m').createHistogram('h', { advice: { explicitBucketBoundaries: [1, 10] } });
    h.record(0.5);
    h.record(5);
    provider.getMeter('m').createHistogram('other', { advice: { explicitBucketBoundaries: [1] } }).record(2);
    const text = await reader.serializeToString('openmetrics');
    checkStructure(text);
    expect(text).toContain('h_bucket{otel_scope_name="m",le="1"} 1 # {agent_id="y"} 0.5\n');
    expect(text).toContain('h_bucket{otel_scope_name="m",le="10"} 2\n');
    // `other` got [good] for bucket 0, where 0.5 lies; its +Inf bucket has none.
    expect(text).toContain('other_bucket{otel_scope_name="m",le="1"} 0 # {agent_id="y"} 0.5\n');
    expect(text).not.toContain('agent_id="x"');
  });

  it('says the same as the Prometheus text format on 200 random registries (samples, order aside)', async () => {
    let collisions = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const rng = new Rng(seed);
      const scenario = randomScenario(rng, { promtoolSafe: false });
      const logger = createMemoryLogger();
      const reader = new FastPrometheusReader({ logger });
      const provider = new MeterProvider({ resource: resourceFromAttributes(scenario.resourceAttributes), views: scenario.views, readers: [reader] });
      try {
        scenario.record(provider);
        const text = await reader.serializeToString('prometheus-text');
        const om = await reader.serializeToString('openmetrics');
        // A counter `x` (`x_total`) and a metric named `x` are two families in the text format but one name
        // in OpenMetrics: the second is left out of OpenMetrics, with a warning.
        const dropped = new Set(
          logger.records.filter((e) => e.message.startsWith('OpenMetrics family name already taken')).map((e) => String(e.fields?.['metric_name'])),
        );
        if (dropped.size > 0) collisions++;
        const kept = sampleLines(text).filter((line) => {
          const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? '';
          return ![...dropped].some((d) => name === d || name === d + '_bucket' || name === d + '_count' || name === d + '_sum');
        });
        expect(sampleLines(om).map(withoutExemplar).sort(), `seed ${seed}`).toEqual(kept.sort());
        try {
          checkStructure(om);
        } catch (error) {
          throw new Error(`seed ${seed}: ${String(error)}`, { cause: error });
        }
      } finally {
        await provider.shutdown();
      }
    }
    expect(collisions, 'the generator reaches a name collision').toBeGreaterThan(0);
  });

  it('an empty registry is just # EOF', async () => {
    const reader = new FastPrometheusReader({ withoutTargetInfo: true });
    providers.push(new MeterProvider({ readers: [reader] }));
    expect(await reader.serializeToString('openmetrics')).toBe('# EOF\n');
  });
});

describe('over HTTP', () => {
  it('answers OpenMetrics to an OpenMetrics Accept (GET and HEAD) and the text format otherwise', async () => {
    const exemplar: Exemplar = { labels: { agent_id: 'z' }, value: 3, timestampSeconds: 1700000000.5 };
    const { reader, provider } = setup({ histogramExemplars: (_n: string, _a: Attributes) => [undefined, exemplar] });
    provider.getMeter('m').createHistogram('h', { advice: { explicitBucketBoundaries: [1, 10] } }).record(3);
    const server = createServer(reader.handleMetricsRequest);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
      const om = await fetch(url, { headers: { accept: PROMETHEUS_ACCEPT } });
      expect(om.headers.get('content-type')).toBe(OPENMETRICS_CONTENT_TYPE);
      expect(om.headers.get('vary')).toBe('Accept, Accept-Encoding');
      const body = await om.text();
      expect(body).toContain('h_bucket{otel_scope_name="m",le="10"} 1 # {agent_id="z"} 3 1700000000.5\n');
      expect(body.endsWith('# EOF\n')).toBe(true);
      const head = await fetch(url, { method: 'HEAD', headers: { accept: 'application/openmetrics-text' } });
      expect(head.headers.get('content-type')).toBe(OPENMETRICS_CONTENT_TYPE);
      const text = await fetch(url);
      expect(text.headers.get('content-type')).toBe(PROMETHEUS_TEXT_CONTENT_TYPE);
      const textBody = await text.text();
      expect(textBody).not.toContain('# {');
      expect(textBody).toBe(await reader.serializeToString());
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
