/**
 * Static SVG charts from Vega-Lite specifications, rendered in Node by Vega's headless view
 * (`renderer: 'none'`, `toSVG()`): no canvas, no DOM, no network. Fonts are generic families, so the
 * file needs nothing beyond itself.
 */
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { FamilyReport, GroupReport } from '../model.js';

const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const CONFIG = {
  font: FONT,
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 11, gridColor: '#e5e7eb' },
  legend: { labelFontSize: 11, titleFontSize: 11 },
} as const;

/** An axis label in human units (a Vega expression): `30s`, `5m`, `1h`, `1d`. */
const HUMAN_SECONDS =
  "datum.value < 60 ? datum.value + 's' : datum.value < 3600 ? datum.value / 60 + 'm' : datum.value < 86400 ? datum.value / 3600 + 'h' : datum.value / 86400 + 'd'";

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** P50, P95 and P99 per trend period, in seconds. */
export function trendSpec(group: GroupReport, title: string): TopLevelSpec {
  const values = group.trend.flatMap((p) =>
    (
      [
        ['P50', p.p50_seconds],
        ['P95', p.p95_seconds],
        ['P99', p.p99_seconds],
      ] as const
    ).map(([percentile, seconds]) => ({ start: p.start, percentile, seconds })),
  );
  return {
    width: 560,
    height: 200,
    config: CONFIG,
    title: { text: title, anchor: 'start', fontSize: 13 },
    data: { values },
    // Periods without samples have no percentile, and a log scale has no 0.
    transform: [{ filter: 'isValid(datum.seconds) && datum.seconds > 0' }],
    mark: { type: 'line', point: { size: 24 }, interpolate: 'linear' },
    encoding: {
      x: { field: 'start', type: 'temporal', title: 'period start (UTC)', axis: { format: '%b %d', labelAngle: 0 } },
      // Log scale: a P50 of seconds and a P99 of an hour both readable; ticks on the bucket bounds.
      y: {
        field: 'seconds',
        type: 'quantitative',
        title: 'log scale',
        scale: { type: 'log' },
        axis: { values: [0.1, 1, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 86_400], labelExpr: HUMAN_SECONDS },
      },
      color: { field: 'percentile', type: 'nominal', title: null, scale: { domain: ['P50', 'P95', 'P99'], range: ['#2563eb', '#d97706', '#dc2626'] } },
    },
  };
}

/** Samples per bucket, the range against the period before. */
export function histogramSpec(group: GroupReport, title: string): TopLevelSpec {
  const label = (le: number | null) => (le === null ? '+Inf' : `≤${le}s`);
  const order = group.current.buckets.map((b) => label(b.le));
  const values = [
    ...group.current.buckets.map((b) => ({ bucket: label(b.le), period: 'range', count: b.count })),
    ...group.previous.buckets.map((b) => ({ bucket: label(b.le), period: 'period before', count: b.count })),
  ];
  return {
    width: 560,
    height: 160,
    config: CONFIG,
    title: { text: title, anchor: 'start', fontSize: 13 },
    data: { values },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'bucket', type: 'ordinal', sort: order, title: 'bucket (upper bound)', axis: { labelAngle: 0 } },
      xOffset: { field: 'period', sort: ['range', 'period before'] },
      y: { field: 'count', type: 'quantitative', title: 'samples' },
      color: { field: 'period', type: 'nominal', title: null, sort: ['range', 'period before'], scale: { range: ['#2563eb', '#cbd5e1'] } },
    },
  };
}

/** For families with a breakdown (a start's phases, its outcomes): P50 per value, stacked per template. */
export function breakdownSpec(family: FamilyReport): TopLevelSpec {
  const values = family.groups.map((g) => ({ template: g.template_name ?? '', value: g.breakdown ?? '', seconds: g.current.p50_seconds ?? 0 }));
  return {
    width: 560,
    config: CONFIG,
    title: { text: `${family.title}: P50 per ${family.breakdown_label ?? 'breakdown'}`, anchor: 'start', fontSize: 13 },
    data: { values },
    mark: { type: 'bar' },
    encoding: {
      y: { field: 'template', type: 'nominal', title: null },
      x: { field: 'seconds', type: 'quantitative', title: 'seconds', stack: 'zero' },
      color: { field: 'value', type: 'nominal', title: family.breakdown_label },
    },
  };
}
