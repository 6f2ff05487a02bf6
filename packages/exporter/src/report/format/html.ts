/**
 * `--format html`: one self-contained page (inline CSS and SVG, no script, no external resource), so it
 * can be mailed, archived or opened offline, and read with JavaScript off.
 */
import { formatDurationMs } from '../../duration.js';
import type { FamilyReport, GroupReport, HistoryReport } from '../model.js';
import { breakdownSpec, histogramSpec, renderSvg, trendSpec } from './charts.js';
import { humanInstant, humanSeconds, SUMMARY_COLUMNS, summaryCells } from './units.js';

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #111827; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; } h3 { font-size: 1rem; margin: 1.8rem 0 .4rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0 1rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e5e7eb; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #4b5563; font-size: .9rem; }
figure { margin: .5rem 0 1rem; } figcaption { font-size: .8rem; color: #4b5563; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
`;

function groupTitle(group: GroupReport, family: FamilyReport): string {
  const template = group.template_name ?? 'all templates';
  return family.breakdown_label === null || group.breakdown === null ? template : `${template} (${family.breakdown_label} ${group.breakdown})`;
}

function summaryTable(family: FamilyReport): string {
  const head = ['template', ...SUMMARY_COLUMNS];
  const rows = [...family.groups, ...family.totals].map((g) => {
    const cells = summaryCells(g);
    return `<tr><td>${escapeHtml(groupTitle(g, family))}</td>${cells.map((c) => `<td class="n">${escapeHtml(c)}</td>`).join('')}</tr>`;
  });
  return `<table><thead><tr>${head.map((h, i) => `<th${i > 0 ? ' class="n"' : ''}>${h}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function slowestTable(group: GroupReport): string {
  if (group.slowest.length === 0) return '';
  const rows = group.slowest.map(
    (s) =>
      `<tr><td class="n">${escapeHtml(humanSeconds(s.duration_seconds))}</td><td>${escapeHtml(s.workspace_name)}</td><td>${escapeHtml(s.username)}</td><td>${escapeHtml(s.agent_name ?? '-')}</td><td>${escapeHtml(humanInstant(s.at))}</td></tr>`,
  );
  return `<table><thead><tr><th class="n">duration</th><th>workspace</th><th>user</th><th>agent</th><th>at</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

async function groupSection(group: GroupReport, family: FamilyReport): Promise<string> {
  const title = groupTitle(group, family);
  const [trend, histogram] = await Promise.all([renderSvg(trendSpec(group, `${title}: percentiles per period`)), renderSvg(histogramSpec(group, `${title}: samples per bucket`))]);
  return `<section class="group" data-family="${escapeHtml(family.family)}" data-template="${escapeHtml(group.template_name ?? '')}">
<h3>${escapeHtml(title)}</h3>
<div class="charts">
<figure class="chart trend">${trend}<figcaption>Exact P50, P95 and P99 of each period (UTC).</figcaption></figure>
<figure class="chart histogram">${histogram}<figcaption>Samples per histogram bucket in the range and in the period of the same length before it.</figcaption></figure>
</div>
${slowestTable(group)}
</section>`;
}

export async function renderHtml(report: HistoryReport): Promise<string> {
  const { range } = report;
  const sections: string[] = [];
  for (const family of report.families) {
    const parts = [`<h2>${escapeHtml(family.title)} <code>${escapeHtml(family.metric)}</code></h2>`];
    if (family.groups.every((g) => g.current.count === 0)) {
      parts.push('<p class="nodata">No data: no sample in this range.</p>');
    } else {
      parts.push(summaryTable(family));
      if (family.breakdown_label !== null) parts.push(`<figure class="chart breakdown">${await renderSvg(breakdownSpec(family))}</figure>`);
      for (const group of family.groups) parts.push(await groupSection(group, family));
    }
    sections.push(`<section class="family" id="${escapeHtml(family.family)}">${parts.join('\n')}</section>`);
  }
  const filter = report.templates_filter.length > 0 ? ` Templates: ${escapeHtml(report.templates_filter.join(', '))}.` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>agentconn report ${escapeHtml(humanInstant(range.since))} to ${escapeHtml(humanInstant(range.until))}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Workspace history: ${escapeHtml(humanInstant(range.since))} to ${escapeHtml(humanInstant(range.until))}</h1>
<p class="meta">Periods of ${escapeHtml(formatDurationMs(range.step_seconds * 1000))}, compared with the ${escapeHtml(humanSeconds((Date.parse(range.until) - Date.parse(range.since)) / 1000))} before ${escapeHtml(humanInstant(range.since))}. Percentiles are exact. Read from the database at ${escapeHtml(humanInstant(report.generated_at))}.${filter}</p>
${sections.join('\n')}
</body>
</html>
`;
}
