import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface PrometheusServer {
  readonly url: string;
  /** Instant query through the HTTP API; returns the result vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** Resolves once every target has been scraped successfully at least `times` times after this call. */
  waitForScrapes(times: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function requireBinary(name: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (found.status !== 0) {
    throw new Error(`${name} is not installed: install Debian's prometheus package (apt-get install prometheus); .ci/run does`);
  }
}

/** Starts a real Prometheus on a free loopback port with a temporary data directory, scraping `targets`. */
export async function startPrometheus(targets: string[], options: { scrapeInterval?: string } = {}): Promise<PrometheusServer> {
  requireBinary('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'agentconn-prom-'));
  const port = await freePort();
  const interval = options.scrapeInterval ?? '1s';
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      `  scrape_interval: ${interval}`,
      `  evaluation_interval: ${interval}`,
      'scrape_configs:',
      '  - job_name: agentconn',
      `    scrape_interval: ${interval}`,
      `    scrape_timeout: ${interval}`,
      '    static_configs:',
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${stderr}`);
    try {
      const response = await fetch(`${url}/-/ready`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`prometheus did not become ready: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error ?? response.status}`);
    return body.data;
  };

  return {
    url,
    async query(expr) {
      const data = await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
        `/api/v1/query?query=${encodeURIComponent(expr)}`,
      );
      return data.result;
    },
    async waitForScrapes(times, timeoutMs = 30_000) {
      type Target = { health: string; lastScrape: string; lastError: string; scrapeUrl: string };
      const seen = new Map<string, Set<string>>();
      const end = Date.now() + timeoutMs;
      for (;;) {
        const data = await api<{ activeTargets: Target[] }>('/api/v1/targets');
        for (const target of data.activeTargets) {
          if (target.health !== 'up') continue;
          const scrapes = seen.get(target.scrapeUrl) ?? new Set<string>();
          scrapes.add(target.lastScrape);
          seen.set(target.scrapeUrl, scrapes);
        }
        // The first lastScrape seen may predate this call; count only the ones after it.
        if (targets.every((t) => (seen.get(`http://${t}/metrics`)?.size ?? 0) > times)) return;
        if (Date.now() > end) throw new Error(`targets not scraped ${times} times: ${JSON.stringify(data.activeTargets)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
