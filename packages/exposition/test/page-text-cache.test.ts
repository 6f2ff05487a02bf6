import { describe, expect, it } from 'vitest';
import { MeterProvider, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { Attributes } from '@opentelemetry/api';
import { FastPrometheusReader, OpenMetricsSerializer, type Exemplar, type ExemplarLookup } from '../src/index.js';
import { PAGE_ROWS, type RowPage } from '../src/collect/histogram-rows.js';
import { IDLE_MILLIS, PageTexts } from '../src/format/page-text-cache.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { officialText } from './exposition-support.js';

/**
 * The text of unchanged histogram row pages is copied from the last scrape: after any change (a series in the
 * middle page, a new series on the last page, a series moving across a page boundary by growing a digit) every
 * scrape must still be what the official exporter writes, in both formats' text form and in chunks of any size.
 */
describe('histogram text kept by row page between scrapes', () => {
  it('writes the official bytes scrape after scrape while single series in some pages change', async () => {
    const official = new PrometheusExporter({ preventServerStart: true });
    const ours = new FastPrometheusReader({ logger: createMemoryLogger(), chunkBytes: 4096 });
    const provider = new MeterProvider({ readers: [official as unknown as IMetricReader, ours] });
    const histogram = provider.getMeter('m').createHistogram('h', { advice: { explicitBucketBoundaries: [1, 10, 100] } });
    const series = 5 * PAGE_ROWS + 7;
    try {
      for (let i = 0; i < series; i++) histogram.record(i % 50, { series: `s${i}`, workspace: `w-${i}` });
      const quiet = () => {};
      const changes: Array<() => void> = [
        quiet,
        () => histogram.record(5, { series: `s${2 * PAGE_ROWS + 3}`, workspace: `w-${2 * PAGE_ROWS + 3}` }),
        quiet,
        () => histogram.record(500, { series: 'new', workspace: 'w-new' }),
        // Nine more samples: its counts grow a digit, so the text of its page changes length.
        () => {
          for (let k = 0; k < 9; k++) histogram.record(0.5, { series: 's0', workspace: 'w-0' });
        },
        () => {
          for (let i = 0; i < series; i += PAGE_ROWS) histogram.record(50, { series: `s${i}`, workspace: `w-${i}` });
        },
        quiet,
      ];
      let previous: string | undefined;
      for (const [round, change] of changes.entries()) {
        change();
        const text = await ours.serializeToString();
        expect(text, `round ${round}`).toBe(await officialText(official));
        if (round > 0 && change === quiet) expect(text, `round ${round} changed nothing`).toBe(previous);
        previous = text;
      }
    } finally {
      await provider.shutdown();
    }
  });

  it('OpenMetrics: a page whose rows did not change but whose exemplars did is written again', async () => {
    const byWorkspace = new Map<string, Array<Exemplar | undefined>>();
    const exemplars: ExemplarLookup = {
      histogramExemplars: (_name: string, attributes: Attributes) => byWorkspace.get(String(attributes['workspace'])),
    };
    const ours = new FastPrometheusReader({ logger: createMemoryLogger(), chunkBytes: 4096, exemplars });
    const provider = new MeterProvider({ readers: [ours] });
    const histogram = provider.getMeter('m').createHistogram('h', { advice: { explicitBucketBoundaries: [1, 10, 100] } });
    const series = 3 * PAGE_ROWS + 5;
    const exemplar = (value: number, id: string): Exemplar => ({ labels: { agent_id: id }, value, timestampSeconds: 1_700_000_000 });
    const fresh = async () => new OpenMetricsSerializer({ exemplars }).serialize((await ours.collect()).resourceMetrics);
    try {
      for (let i = 0; i < series; i++) {
        histogram.record(5, { workspace: `w-${i}` });
        byWorkspace.set(`w-${i}`, [undefined, exemplar(5, `a-${i}`)]);
      }
      const first = await ours.serializeToString('openmetrics');
      expect(first).toContain('h_bucket{workspace="w-70",otel_scope_name="m",le="10"} 1 # {agent_id="a-70"} 5 1700000000');
      // No sample recorded: the rows and pages stay, only the exemplar of one series changes (and one goes).
      byWorkspace.set('w-70', [undefined, exemplar(6, 'b-70')]);
      byWorkspace.set('w-130', [undefined, undefined]);
      const second = await ours.serializeToString('openmetrics');
      expect(second).toContain('h_bucket{workspace="w-70",otel_scope_name="m",le="10"} 1 # {agent_id="b-70"} 6 1700000000');
      expect(second).not.toContain('a-130');
      expect(second).toBe(await fresh());
      expect(await ours.serializeToString('openmetrics')).toBe(second);
    } finally {
      await provider.shutdown();
    }
  });

  it('a page holds the text of one serializer; another takes it over once the holder has not written for a while', () => {
    const text = new PageTexts();
    const openMetrics = new PageTexts();
    const page = { values: new Float64Array(0), hasSum: new Uint8Array(0), attributes: [] } as RowPage;
    text.use(1_000);
    text.set(page, new Uint8Array([1]), [], 1_000);
    openMetrics.use(2_000);
    openMetrics.set(page, new Uint8Array([2]), [], 2_000);
    expect(text.get(page)?.bytes).toEqual(new Uint8Array([1]));
    expect(openMetrics.get(page)).toBeUndefined();
    openMetrics.set(page, new Uint8Array([2]), [], 1_000 + IDLE_MILLIS + 1);
    expect(text.get(page)).toBeUndefined();
    expect(openMetrics.get(page)?.bytes).toEqual(new Uint8Array([2]));
  });
});
