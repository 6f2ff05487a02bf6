/**
 * The scrape benchmark's command line (`packages/exposition/bench/exposition.bench.mjs`): `--help` answers, and a
 * bad option exits 2 with its message and the usage. Before, `--node-arg --cpu-prof` (a value starting with a
 * dash, without `=`) ended in a stack trace from `parseArgs` with exit code 1.
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const SCRIPT = join(REPO, 'packages/exposition/bench/exposition.bench.mjs');

function run(...args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 30_000 });
}

describe('exposition.bench.mjs options', () => {
  it('--help prints the usage and exits 0', () => {
    const result = run('--help');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^Usage: node packages\/exposition\/bench\/exposition\.bench\.mjs/);
    expect(result.stdout).toContain('--node-arg=ARG');
  });

  it.each([[['--node-arg', '--cpu-prof'], /--node-arg/], [['--no-such-option'], /--no-such-option/]])(
    '%j exits 2 with one message and the usage, no stack trace',
    (args, named) => {
      const result = run(...args);
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(named);
      expect(result.stderr).toContain('Usage:');
      expect(result.stderr).not.toMatch(/\n\s+at /);
    },
  );
});
