import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface PrometheusServer {
  readonly url: string;
  /** Instant query through the HTTP API; returns the result vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** `/api/v1/query_exemplars` over all time (needs `--enable-feature=exemplar-storage`). */
  queryExemplars(selector: string): Promise<ExemplarSeries[]>;
  /** Resolves once every target has been scraped successfully at least `times` times after this call. */
  waitForScrapes(times: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ExemplarSeries {
  readonly seriesLabels: Record<string, string>;
  readonly exemplars: Array<{ labels: Record<string, string>; value: string; timestamp: number }>;
}

export interface PrometheusOptions {
  readonly scrapeInterval?: string;
  /** Extra command-line flags, e.g. `--enable-feature=exemplar-storage`. */
  readonly flags?: readonly string[];
  /** The scrape job's scheme. Default `http`. */
  readonly scheme?: 'http' | 'https';
  /** Extra lines of the scrape job (e.g. `tls_config:` and `basic_auth:` blocks). */
  readonly jobLines?: readonly string[];
  /** Rule files' contents, written next to the configuration. */
  readonly rules?: readonly string[];
  /** The TSDB directory (e.g. with blocks made by `promtool tsdb create-blocks-from`); the caller removes it. Default: a temporary one. */
  readonly storagePath?: string;
}

function requireBinary(name: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (found.status !== 0) {
    throw new Error(`${name} is not installed: install Debian's prometheus package (apt-get install prometheus); .ci/run does`);
  }
}

/** Starts a real Prometheus on a free loopback port with a temporary data directory, scraping `targets`. */
export async function startPrometheus(targets: string[], options: PrometheusOptions = {}): Promise<PrometheusServer> {
  requireBinary('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'agentconn-prom-'));
  const port = await freePort();
  const interval = options.scrapeInterval ?? '1s';
  const ruleFiles = (options.rules ?? []).map((text, i) => {
    const file = join(dir, `rules-${i}.yml`);
    writeFileSync(file, text);
    return file;
  });
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      `  scrape_interval: ${interval}`,
      `  evaluation_interval: ${interval}`,
      ...(ruleFiles.length > 0 ? ['rule_files:', ...ruleFiles.map((f) => `  - ${JSON.stringify(f)}`)] : []),
      'scrape_configs:',
      '  - job_name: agentconn',
      `    scrape_interval: ${interval}`,
      `    scrape_timeout: ${interval}`,
      `    scheme: ${options.scheme ?? 'http'}`,
      ...(options.jobLines ?? []).map((line) => `    ${line}`),
      '    static_configs:',
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${options.storagePath ?? join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
      ...(options.flags ?? []),
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
    async queryExemplars(selector) {
      return api<ExemplarSeries[]>(`/api/v1/query_exemplars?query=${encodeURIComponent(selector)}`);
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
        if (targets.every((t) => (seen.get(`${options.scheme ?? 'http'}://${t}/metrics`)?.size ?? 0) > times)) return;
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
