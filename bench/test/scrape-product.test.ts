/**
 * `pnpm bench:scrape` end to end at a tiny size on the real PostgreSQL server: the compiled script generates its
 * database, starts the exporter binary, scrapes it and the plain server holding its bytes, reports, and drops the
 * database. Timings are never asserted: the figures live in bench/RESULTS.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const SCRIPT = join(REPO, 'bench/dist/scrape-product.js');
const DATABASE_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const AGENTS = 300;

const out = mkdtempSync(join(tmpdir(), 'agentconn-scrape-test-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function run(...args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, DATABASE_URL } });
}

interface Figures {
  sizes: Array<{ agents: number; series: number; variants: Array<{ variant: string; bytes: number[]; exporterMs: number[][]; prerenderedMs: number[] }> }>;
}

describe('pnpm bench:scrape', () => {
  it('scrapes the exporter and the same bytes prerendered in each variant, then drops its database', async () => {
    const result = run('--agents', String(AGENTS), '--rounds', '1', '--variants', 'plain,openmetrics-gzip', '--out', out);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`\\| ${AGENTS} \\(${AGENTS}\\) \\| plain \\| \\[1\\] \\|`));
    expect(result.stdout).toMatch(new RegExp(`\\| ${AGENTS} \\(${AGENTS}\\) \\| openmetrics-gzip \\| \\[1\\] \\|`));
    const [dir] = readdirSync(out);
    const figures = JSON.parse(readFileSync(join(out, dir!, 'scrape.json'), 'utf8')) as Figures;
    const size = figures.sizes[0]!;
    expect(size.series).toBe(AGENTS);
    for (const variant of size.variants) {
      expect(variant.exporterMs[0]).toHaveLength(1);
      expect(variant.prerenderedMs).toHaveLength(1);
      expect(variant.bytes[0]).toBeGreaterThan(0);
    }
    const plain = size.variants.find((v) => v.variant === 'plain')!;
    const gzip = size.variants.find((v) => v.variant === 'openmetrics-gzip')!;
    expect(gzip.bytes[0]).toBeLessThan(plain.bytes[0]! / 5);

    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    try {
      // Its database was its own (named for its process), and it is gone.
      const left = await admin.query('SELECT datname FROM pg_database WHERE datname = $1', [`agentconn_scrape_${AGENTS}_${result.pid}`]);
      expect(left.rows).toEqual([]);
      expect(result.stderr).toContain(`agentconn_scrape_${AGENTS}_${result.pid}`);
    } finally {
      await admin.end();
    }
  });

  it('a bad flag exits 2 naming it, with the usage', () => {
    const result = run('--variants', 'plain,nope');
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown variant "nope"');
    expect(result.stderr).toContain('usage: pnpm bench:scrape');
  });
});
