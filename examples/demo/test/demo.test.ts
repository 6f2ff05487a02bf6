import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '@agentconn/test-support/ports';
import { startPrometheus, type PrometheusServer } from '@agentconn/test-support/prometheus-server';

const DEMO = fileURLToPath(new URL('../dist/main.js', import.meta.url));

describe('pnpm demo (the README\'s first command)', () => {
  it('serves the histogram, its printed queries answer with numbers and slow workspaces in a real Prometheus, and stops on SIGINT', async () => {
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
      expect(stdout).toContain('histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))');

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

      // What the demo tells the user to run, against a real Prometheus scraping it.
      const promql = /P95 by template: +(.+)$/m.exec(stdout)?.[1];
      const selector = /query_exemplars --data-urlencode 'query=([^']+)'/.exec(stdout)?.[1];
      expect(promql).toBe('histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))');
      expect(selector).toBeDefined();
      prometheus = await startPrometheus([`127.0.0.1:${port}`], { flags: ['--enable-feature=exemplar-storage'] });
      const promStarted = Date.now();
      const templates = async () => (await prometheus!.query('count by (template_name) (coderd_agents_first_connection_seconds_count)')).length;
      let answer: Array<{ metric: Record<string, string>; value: [number, string] }> = [];
      // "Within a minute": every template gets a finite P95.
      while (Date.now() - promStarted < 60_000) {
        answer = await prometheus.query(promql!);
        const expected = await templates();
        if (expected > 0 && answer.length === expected && answer.every((q) => Number.isFinite(Number(q.value[1])))) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      expect(answer.length).toBeGreaterThan(0);
      for (const q of answer) expect(Number.isFinite(Number(q.value[1])), `P95 of ${q.metric['template_name']}: ${q.value[1]}`).toBe(true);
      expect(answer.length).toBe(await templates());

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
