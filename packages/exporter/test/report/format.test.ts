import { describe, expect, it } from 'vitest';
import { renderHtml } from '../../src/report/format/html.js';
import { alignColumns, renderTable } from '../../src/report/format/table.js';
import { humanChange, humanSeconds } from '../../src/report/format/units.js';
import type { GroupReport, HistoryReport, Stats } from '../../src/report/model.js';

const BOUNDS = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

function stats(count: number, p50: number | null): Stats {
  return {
    count,
    dropped_negative: 0,
    dropped_invalid: 0,
    p50_seconds: p50,
    p90_seconds: p50 === null ? null : p50 * 2,
    p95_seconds: p50 === null ? null : p50 * 3,
    p99_seconds: p50 === null ? null : p50 * 4,
    max_seconds: p50 === null ? null : p50 * 5,
    mean_seconds: p50,
    buckets: [...BOUNDS, null].map((le, i) => ({ le, count: i === 3 ? count : 0 })),
  };
}

function group(template: string | null, phase: string, p50: number): GroupReport {
  return {
    template_name: template,
    breakdown: phase,
    current: stats(10, p50),
    previous: stats(8, p50 * 1.1),
    change: { count_ratio: 0.25, p50_ratio: -0.1, p95_ratio: -0.1, p99_ratio: -0.1 },
    trend: [
      { start: '2026-11-01T00:00:00.000Z', end: '2026-11-02T00:00:00.000Z', count: 4, p50_seconds: p50, p90_seconds: p50, p95_seconds: p50, p99_seconds: p50, max_seconds: p50, p95_change_ratio: null },
      { start: '2026-11-02T00:00:00.000Z', end: '2026-11-03T00:00:00.000Z', count: 6, p50_seconds: p50, p90_seconds: p50, p95_seconds: p50, p99_seconds: p50, max_seconds: p50, p95_change_ratio: 0 },
    ],
    slowest: [],
  };
}

/** A report of a family with a breakdown, as the whole start's phases will be. */
const PHASES: HistoryReport = {
  schema_version: 1,
  generated_at: '2026-11-03T00:00:00.000Z',
  range: { since: '2026-11-01T00:00:00.000Z', until: '2026-11-03T00:00:00.000Z', step_seconds: 86_400, previous_since: '2026-10-30T00:00:00.000Z' },
  templates_filter: [],
  families: [
    {
      family: 'start_phase',
      title: 'Start phases',
      metric: 'agentconn_workspace_start_phase_seconds',
      bucket_bounds_seconds: BOUNDS,
      breakdown_label: 'phase',
      groups: ['queued', 'provisioning', 'connecting', 'starting'].flatMap((phase, i) => [group('docker', phase, 2 + i), group('k8s <pod>', phase, 5 + i)]),
      totals: [group(null, 'queued', 3)],
    },
  ],
};

describe('report formats', () => {
  it('human units', () => {
    expect([0.25, 3.456, 12.34, 252, 7500, 200_000, null].map(humanSeconds)).toEqual(['250ms', '3.46s', '12.3s', '4m12s', '2h05m', '2d07h', '-']);
    expect([0.123, -0.03, 0, null].map(humanChange)).toEqual(['+12%', '-3%', '0%', '-']);
  });

  it('aligns columns: text left, numbers right', () => {
    expect(alignColumns(['A', 'N'], [['x', '1'], ['long', '100']], ['left', 'right'])).toBe('A       N\nx       1\nlong  100');
  });

  it('a family with a breakdown: groups named with it in the table, a stacked breakdown chart and escaped names in the HTML', async () => {
    const table = renderTable(PHASES);
    expect(table).toContain('docker phase=provisioning');
    const html = await renderHtml(PHASES);
    expect(html).toContain('<figure class="chart breakdown"><svg');
    expect(html).toContain('Start phases: P50 per phase');
    expect(html).toContain('k8s &#60;pod&#62;');
    expect(html).not.toContain('k8s <pod>');
    expect(html.match(/<section class="group"/g)).toHaveLength(8);
  });
});
