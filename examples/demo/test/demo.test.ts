import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '@agentconn/test-support/ports';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';

const DEMO = fileURLToPath(new URL('../dist/main.js', import.meta.url));

type Vector = Array<{ metric: Record<string, string>; value: [number, string] }>;
const finite = (v: Vector): boolean => v.length > 0 && v.every((q) => Number.isFinite(Number(q.value[1])));
const keys = (v: Vector, labels: readonly string[]): string[] => v.map((q) => labels.map((l) => q.metric[l]).join('/')).sort();

/** Each value of a label that must show on a family's samples in /metrics, for every kind of start the demo plays. */
const START_SERIES: ReadonlyArray<readonly [family: string, label: string, values: readonly string[]]> = [
  [
    'agentconn_workspace_start_seconds_count',
    'outcome',
    ['ready', 'start_error', 'start_timeout', 'build_failed', 'canceled', 'connect_timeout'],
  ],
  ['agentconn_workspace_start_seconds_count', 'is_prebuild', ['true', 'false']],
  ['agentconn_workspace_start_phase_seconds_count', 'phase', ['queued', 'provisioning', 'connecting', 'starting']],
  ['agentconn_workspace_start_phase_seconds_count', 'is_prebuild', ['true', 'false']],
  ['agentconn_provisioner_stage_seconds_count', 'stage', ['init', 'plan', 'graph', 'apply']],
  ['agentconn_agent_startup_script_seconds_count', 'status', ['ok', 'exit_failure', 'timed_out']],
  ['agentconn_workspace_starts_in_progress', 'phase', ['connecting']],
  ['agentconn_workspace_starts_in_progress_oldest_seconds', 'phase', ['connecting']],
];

/** The label values of `label` on the samples of `family` with a value above 0. */
function labelValues(text: string, family: string, label: string): Set<string> {
  const values = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${family}{`) || !(Number(line.split(' ').pop()) > 0)) continue;
    const value = new RegExp(`[{,]${label}="([^"]*)"`).exec(line)?.[1];
    if (value !== undefined) values.add(value);
  }
  return values;
}

function missingStartSeries(text: string): string[] {
  return START_SERIES.flatMap(([family, label, values]) => {
    const seen = labelValues(text, family, label);
    return values.filter((v) => !seen.has(v)).map((v) => `${family}{${label}="${v}"}`);
  });
}

describe("pnpm demo (the README's first command)", () => {
  it('serves the histogram and the whole start, its printed queries answer with numbers and slow workspaces in a real Prometheus, and stops on SIGINT', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [DEMO, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    let prometheus: PrometheusServer | undefined;
    try {
      const url = `http://127.0.0.1:${port}/metrics`;
      const deadline = Date.now() + 60_000;
      while (!stdout.includes(url)) {
        if (child.exitCode !== null) throw new Error(`demo exited ${child.exitCode}: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`demo did not print ${url}: ${stdout}${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(stdout).toContain(
        'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))',
      );

      const count = async () => {
        const text = await (await fetch(url)).text();
        expect(text).toContain('# TYPE coderd_agents_first_connection_seconds histogram');
        return text
          .split('\n')
          .filter((l) => l.startsWith('coderd_agents_first_connection_seconds_count'))
          .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
      };
      // The history is observed on the first poll.
      let first = 0;
      while (first === 0 && Date.now() < deadline) {
        first = await count();
        if (first === 0) await new Promise((r) => setTimeout(r, 200));
      }
      expect(first).toBeGreaterThan(50);
      // Agents keep connecting: a later poll (every 5 s) adds samples.
      let later = first;
      while (later === first && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        later = await count();
      }
      expect(later).toBeGreaterThan(first);

      // Every family of the whole start, with every kind of start the demo plays, within a minute.
      let missing = missingStartSeries(await (await fetch(url)).text());
      while (missing.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        missing = missingStartSeries(await (await fetch(url)).text());
      }
      expect(missing).toEqual([]);

      // What the demo tells the user to run, against a real Prometheus scraping it.
      const promql = /P95 by template: +(.+)$/m.exec(stdout)?.[1];
      const startPromql = /ready start P95: +(.+)$/m.exec(stdout)?.[1];
      const phasePromql = /phase P95: +(.+)$/m.exec(stdout)?.[1];
      const outcomesPromql = /starts by outcome: +(.+)$/m.exec(stdout)?.[1];
      expect(startPromql).toBe(
        'histogram_quantile(0.95, sum by (le, template_name) (rate(agentconn_workspace_start_seconds_bucket{outcome="ready"}[1h])))',
      );
      expect(phasePromql).toBe(
        'histogram_quantile(0.95, sum by (le, template_name, phase) (rate(agentconn_workspace_start_phase_seconds_bucket[1h])))',
      );
      expect(outcomesPromql).toBe('sum by (outcome, is_prebuild) (agentconn_workspace_start_seconds_count)');
      const selector = /query_exemplars --data-urlencode 'query=([^']+)'/.exec(stdout)?.[1];
      expect(promql).toBe(
        'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))',
      );
      expect(selector).toBeDefined();
      prometheus = await startPrometheus([`127.0.0.1:${port}`], { flags: ['--enable-feature=exemplar-storage'] });
      const promStarted = Date.now();
      const templates = async () =>
        (await prometheus!.query('count by (template_name) (coderd_agents_first_connection_seconds_count)')).length;
      // Every template (and every template and phase) that has samples.
      const startTemplates = async () =>
        keys(await prometheus!.query('count by (template_name) (agentconn_workspace_start_seconds_count{outcome="ready"})'), [
          'template_name',
        ]);
      const phaseKeys = async () =>
        keys(await prometheus!.query('count by (template_name, phase) (agentconn_workspace_start_phase_seconds_count)'), [
          'template_name',
          'phase',
        ]);
      let answer: Vector = [];
      let startAnswer: Vector = [];
      let phaseAnswer: Vector = [];
      const answered = async (): Promise<boolean> =>
        answer.length === (await templates()) &&
        finite(answer) &&
        finite(startAnswer) &&
        keys(startAnswer, ['template_name']).join() === (await startTemplates()).join() &&
        finite(phaseAnswer) &&
        keys(phaseAnswer, ['template_name', 'phase']).join() === (await phaseKeys()).join();
      // "Within a minute": every template gets a finite P95, of its first connections, its ready starts and each phase.
      while (Date.now() - promStarted < 60_000) {
        answer = await prometheus.query(promql!);
        startAnswer = await prometheus.query(startPromql!);
        phaseAnswer = await prometheus.query(phasePromql!);
        if (answer.length > 0 && (await answered())) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      expect(answer.length).toBeGreaterThan(0);
      for (const q of answer)
        expect(Number.isFinite(Number(q.value[1])), `P95 of ${q.metric['template_name']}: ${q.value[1]}`).toBe(true);
      expect(answer.length).toBe(await templates());
      expect(keys(startAnswer, ['template_name'])).toEqual(await startTemplates());
      expect(startAnswer.length).toBe(4);
      for (const q of startAnswer)
        expect(Number.isFinite(Number(q.value[1])), `start P95 of ${q.metric['template_name']}: ${q.value[1]}`).toBe(true);
      expect(keys(phaseAnswer, ['template_name', 'phase'])).toEqual(await phaseKeys());
      expect(new Set(phaseAnswer.map((q) => q.metric['phase']))).toEqual(
        new Set(['queued', 'provisioning', 'connecting', 'starting']),
      );
      for (const q of phaseAnswer) {
        expect(
          Number.isFinite(Number(q.value[1])),
          `P95 of ${q.metric['template_name']} ${q.metric['phase']}: ${q.value[1]}`,
        ).toBe(true);
      }
      const outcomes = keys(await prometheus.query(outcomesPromql!), ['outcome', 'is_prebuild']);
      expect(outcomes).toEqual(
        expect.arrayContaining([
          'build_failed/false',
          'canceled/false',
          'connect_timeout/false',
          'ready/false',
          'ready/true',
          'start_error/false',
          'start_timeout/false',
        ]),
      );

      // The exemplar query names slow workspaces: agents that took more than 60 s, with workspace and user.
      let slow: Array<{ labels: Record<string, string>; value: string }> = [];
      while (slow.length === 0 && Date.now() - promStarted < 90_000) {
        slow = (await prometheus.queryExemplars(selector!)).flatMap((s) => s.exemplars);
        if (slow.length === 0) await new Promise((r) => setTimeout(r, 1000));
      }
      expect(slow.length).toBeGreaterThan(0);
      for (const e of slow) {
        expect(Number(e.value)).toBeGreaterThan(60);
        expect(e.labels['workspace_name']).toMatch(/\S/);
        expect(e.labels['username']).toMatch(/\S/);
        expect(e.labels['agent_id']).toMatch(/^[0-9a-f-]{36}$/);
      }
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      await prometheus?.stop();
      child.kill('SIGKILL');
    }
  }, 180_000);
});
