import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '@agentconn/test-support/ports';

const DEMO = fileURLToPath(new URL('../dist/main.js', import.meta.url));

describe('pnpm demo (the README\'s first command)', () => {
  it('serves the histogram on the embedded database, keeps changing, and stops on SIGINT', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [DEMO, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
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
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);
});
