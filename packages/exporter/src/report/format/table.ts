/** `--format table`: aligned columns in human units, one section per family. */
import { formatDurationMs } from '../../duration.js';
import type { FamilyReport, GroupReport, HistoryReport } from '../model.js';
import { humanChange, humanCount, humanInstant, humanSeconds, SUMMARY_COLUMNS, summaryCells } from './units.js';

type Align = 'left' | 'right';

/** Columns padded to their widest cell; numbers right-aligned. */
export function alignColumns(header: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (align[i] === 'right' ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function groupName(group: GroupReport, family: FamilyReport): string {
  const template = group.template_name ?? '(all templates)';
  return family.breakdown_label === null || group.breakdown === null ? template : `${template} ${family.breakdown_label}=${group.breakdown}`;
}

function summary(family: FamilyReport): string {
  const header = ['TEMPLATE', ...SUMMARY_COLUMNS.map((c) => c.toUpperCase().replace('BEFORE', 'PREV'))];
  const rows = [...family.groups, ...family.totals].map((g) => [groupName(g, family), ...summaryCells(g)]);
  return alignColumns(header, rows, ['left', ...header.slice(1).map((): Align => 'right')]);
}

function trend(family: FamilyReport): string {
  const header = ['TEMPLATE', 'PERIOD', 'COUNT', 'P50', 'P95', 'P99', 'MAX', 'P95 VS PREV'];
  const rows = family.groups.flatMap((g) =>
    g.trend.map((p) => [
      groupName(g, family),
      humanInstant(p.start),
      humanCount(p.count),
      humanSeconds(p.p50_seconds),
      humanSeconds(p.p95_seconds),
      humanSeconds(p.p99_seconds),
      humanSeconds(p.max_seconds),
      humanChange(p.p95_change_ratio),
    ]),
  );
  return alignColumns(header, rows, ['left', 'left', ...header.slice(2).map((): Align => 'right')]);
}

function slowest(family: FamilyReport): string | undefined {
  const header = ['TEMPLATE', 'DURATION', 'WORKSPACE', 'USER', 'AGENT', 'AT'];
  const rows = family.groups.flatMap((g) =>
    g.slowest.map((s) => [groupName(g, family), humanSeconds(s.duration_seconds), s.workspace_name, s.username, s.agent_name ?? '-', humanInstant(s.at)]),
  );
  if (rows.length === 0) return undefined;
  return alignColumns(header, rows.map((r) => r.map(printable)), ['left', 'right', 'left', 'left', 'left', 'left']);
}

/** Names may hold anything; a table cell must stay on its line. */
function printable(text: string): string {
  let out = '';
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    out += code < 0x20 || code === 0x7f ? JSON.stringify(ch).slice(1, -1) : ch;
  }
  return out;
}

function dropped(family: FamilyReport): string | undefined {
  const negative = family.totals.reduce((n, t) => n + t.current.dropped_negative, 0);
  const invalid = family.totals.reduce((n, t) => n + t.current.dropped_invalid, 0);
  if (negative === 0 && invalid === 0) return undefined;
  return `Not counted, as the exporter drops them: ${humanCount(negative)} negative durations (clock skew), ${humanCount(invalid)} unreadable timestamps.`;
}

export function renderTable(report: HistoryReport): string {
  const { range } = report;
  const out: string[] = [];
  for (const family of report.families) {
    out.push(`${family.title} (${family.metric}) from ${humanInstant(range.since)} to ${humanInstant(range.until)}, compared with the ${humanSeconds((Date.parse(range.until) - Date.parse(range.since)) / 1000)} before`);
    if (report.templates_filter.length > 0) out.push(`Templates: ${report.templates_filter.join(', ')}`);
    out.push('');
    if (family.groups.every((g) => g.current.count === 0)) {
      out.push('No data: no sample in this range.', '');
      continue;
    }
    out.push(summary(family), '');
    const droppedLine = dropped(family);
    if (droppedLine !== undefined) out.push(droppedLine, '');
    out.push(`Trend per ${formatDurationMs(range.step_seconds * 1000)}:`, trend(family), '');
    const slow = slowest(family);
    if (slow !== undefined) out.push('Slowest:', slow, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
