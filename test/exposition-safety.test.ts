import { afterEach, describe, expect, it } from 'vitest';
import { connectNow, createCoderFixture, observedCount, scrape, waitFor, type CoderFixture } from './helpers/coder-data.js';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { promtoolCheckMetrics } from '@agentconn/test-support/promtool';

/** Coder PR #24179's four labels: one series per workspace (the default is Coder #24355's two). */
const FOUR_LABELS = 'template_name,agent_name,username,workspace_name';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function setup(options: Parameters<typeof createCoderFixture>[0], flags: string[]): Promise<{ f: CoderFixture; exp: ExporterProcess; url: string }> {
  const f = await createCoderFixture(options);
  cleanups.push(() => f.close());
  const port = await freePort();
  const exp = spawnExporter(['--database-url', f.database.url, '--listen', `127.0.0.1:${port}`, '--interval', '500ms', ...flags]);
  cleanups.push(async () => {
    exp.child.kill('SIGKILL');
    await exp.exited;
  });
  return { f, exp, url: await exp.started };
}

/** Label values of a family's `_count` lines, unescaped as the text format defines. */
function countLabelSets(text: string): Array<Record<string, string>> {
  const sets: Array<Record<string, string>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('coderd_agents_first_connection_seconds_count{')) continue;
    const labels: Record<string, string> = {};
    const pattern = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const match of line.slice(line.indexOf('{'), line.lastIndexOf('}') + 1).matchAll(pattern)) {
      labels[match[1]!] = match[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    sets.push(labels);
  }
  return sets;
}

describe('label values and cardinality through the exporter', () => {
  it('hostile label values (quotes, backslashes, newlines, Unicode) come out escaped, round-trip, and pass promtool', async () => {
    const { f, url } = await setup({ specialLabels: true, workspaces: 12 }, ['--labels', FOUR_LABELS]);
    const agents = f.counting.slice(0, 8);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: \x00-\x7f is the ASCII range; the test wants a name outside it.
    expect(agents.some((a) => /["\\\n]/.test(a.workspaceName) && /[^\x00-\x7f]/.test(a.workspaceName))).toBe(true);
    await new Promise((r) => setTimeout(r, 700));
    await connectNow(f.db, agents);
    await waitFor(async () => (await observedCount(url)) === agents.length, 15_000, 'observed');
    const text = await scrape(url);
    const check = promtoolCheckMetrics(text);
    expect(check.output).toBe('');
    expect(check.status).toBe(0);
    const seen = countLabelSets(text).map((l) => `${l['template_name']}|${l['agent_name']}|${l['username']}|${l['workspace_name']}`);
    const expected = agents.map((a) => `${a.templateName}|${a.name}|${a.username}|${a.workspaceName}`);
    expect(seen.sort()).toEqual(expected.sort());
  });

  it('past --cardinality-limit new label sets go to one overflow series, logged once and counted', async () => {
    const { f, exp, url } = await setup({ workspaces: 30 }, ['--labels', FOUR_LABELS, '--cardinality-limit', '5']);
    await new Promise((r) => setTimeout(r, 700));
    const agents = f.counting.slice(0, 12);
    await connectNow(f.db, agents);
    await waitFor(async () => (await observedCount(url)) === agents.length, 15_000, 'observed');
    const text = await scrape(url);
    const sets = countLabelSets(text);
    expect(sets).toHaveLength(5);
    const overflow = sets.filter((l) => l['otel_metric_overflow'] === 'true');
    expect(overflow).toHaveLength(1);
    const overflowLine = text.split('\n').find((l) => l.startsWith('coderd_agents_first_connection_seconds_count{') && l.includes('otel_metric_overflow'));
    expect(Number(overflowLine?.split(' ').pop())).toBe(agents.length - 4);
    expect(text).toMatch(
      new RegExp(`agentconn_label_set_overflow_samples_total\\{[^}]*instrument="coderd_agents_first_connection_seconds"[^}]*\\} ${agents.length - 4}\\n`),
    );
    // The awaiting gauge of the agents still waiting keeps the same limit: at most 4 label sets of their own (a slot
    // stays with the label set that took it, which may have connected since) and the overflow; the sum is exact.
    const awaiting = text.split('\n').filter((l) => l.startsWith('coderd_agents_awaiting_first_connection{'));
    expect(awaiting.length).toBeLessThanOrEqual(5);
    expect(awaiting.filter((l) => l.includes('otel_metric_overflow="true"'))).toHaveLength(1);
    expect(awaiting.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)).toBe(f.counting.length - agents.length);
    const warnings = exp.logs.filter((l) => String(l.msg).startsWith('cardinality limit'));
    expect(warnings.filter((l) => l['metric'] === 'coderd_agents_first_connection_seconds')).toHaveLength(1);
    // The awaiting gauges of the 18 agents still waiting reach the same limit: logged once each, too.
    expect(warnings.map((l) => l['metric']).sort()).toEqual([...new Set(warnings.map((l) => l['metric']))].sort());
    expect(promtoolCheckMetrics(text).status).toBe(0);
  });
});
