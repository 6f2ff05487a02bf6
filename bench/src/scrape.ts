/**
 * The /metrics half of the benchmark lives in the exposition package (`packages/exposition/bench/exposition.bench.mjs`,
 * flags `--sizes LIST --json FILE`). When that script is present, the bench runs it after the tick
 * benchmark and carries its JSON into the report, so one `pnpm bench` gives both halves.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { BenchOptions } from './options.js';
import { progress } from './progress.js';

export const DEFAULT_SCRAPE_SCRIPT = 'packages/exposition/bench/exposition.bench.mjs';
/** The scrape benchmark's slow variants (the stock exporter) need gigabytes beyond this. */
const MAX_DEFAULT_SCRAPE_SERIES = 100_000;

export interface ScrapeResult {
  readonly script: string;
  readonly args: readonly string[];
  readonly exitCode: number | null;
  readonly elapsedMs: number;
  /** The script's JSON (for exposition.bench.mjs: one entry per variant and size). */
  readonly results: unknown;
  readonly error?: string;
  /** Its stdout, saved beside the results. */
  readonly stdoutFile: string;
}

export async function runScrapeBenchmark(options: BenchOptions, repoRoot: string, outDir: string): Promise<ScrapeResult | undefined> {
  if (options.scrape === 'off') return undefined;
  const script = resolve(repoRoot, options.scrapeScript ?? DEFAULT_SCRAPE_SCRIPT);
  if (!existsSync(script)) {
    if (options.scrape === 'on') throw new Error(`--scrape on: no scrape benchmark at ${script}`);
    progress(`no scrape benchmark at ${script}; skipping the /metrics half (--scrape on makes this an error)`);
    return undefined;
  }
  const sizes = options.scrapeSizes ?? options.agents.filter((n) => n <= MAX_DEFAULT_SCRAPE_SERIES);
  if (sizes.length === 0) {
    progress(`no scrape sizes up to ${MAX_DEFAULT_SCRAPE_SERIES} series; pass --scrape-sizes to choose some`);
    return undefined;
  }
  const jsonFile = join(outDir, 'scrape.json');
  const stdoutFile = join(outDir, 'scrape.md');
  const args = [script, '--sizes', sizes.join(','), '--json', jsonFile];
  progress(`scrape benchmark: node ${args.join(' ')}`);
  const started = performance.now();
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.once('error', reject);
    child.once('close', (exitCode) => resolvePromise({ code: exitCode, stdout: out }));
  });
  await writeFile(stdoutFile, stdout);
  const elapsedMs = performance.now() - started;
  let results: unknown;
  let error: string | undefined;
  try {
    results = JSON.parse(readFileSync(jsonFile, 'utf8'));
  } catch (caught) {
    error = `no JSON from the scrape benchmark (exit ${String(code)}): ${caught instanceof Error ? caught.message : String(caught)}`;
  }
  if (code !== 0) error = `scrape benchmark exited with ${String(code)}${error === undefined ? '' : `; ${error}`}`;
  if (error !== undefined) {
    if (options.scrape === 'on') throw new Error(error);
    progress(error);
  }
  return { script, args: args.slice(1), exitCode: code, elapsedMs, results, stdoutFile, ...(error !== undefined && { error }) };
}
