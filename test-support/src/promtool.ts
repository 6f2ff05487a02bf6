import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface PromtoolResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The promtool binary: `$PROMTOOL`, else the first `promtool` on PATH. Throws (never skips) when there is
 * none, because CI installs it and a silently skipped check is a check that does not exist.
 */
export function findPromtool(): string {
  const fromEnv = process.env['PROMTOOL'];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`PROMTOOL=${fromEnv} is not an executable file`);
  }
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'promtool');
    if (isExecutable(candidate)) return candidate;
  }
  throw new Error(
    'promtool not found on PATH: the tests check exposition text, the Prometheus rules and the Grafana dashboard with it and do not skip. ' +
      'Install it (Debian/Ubuntu: apt-get install prometheus; or the promtool binary from a Prometheus release) or set PROMTOOL=/path/to/promtool.',
  );
}

/** Runs promtool; resolves with its exit code and output whatever the code (a non-zero code is a result to assert on). */
export function runPromtool(args: readonly string[], options: { readonly cwd?: string } = {}): Promise<PromtoolResult> {
  const binary = findPromtool();
  return new Promise((resolve, reject) => {
    execFile(binary, [...args], { cwd: options.cwd, timeout: 20_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(error);
        return;
      }
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });
}

/** `promtool check metrics` with the text on stdin: its exit status and everything it printed. */
export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const run = spawnSync(findPromtool(), ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.error !== undefined) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** One readable message for an assertion on a promtool run. */
export function describeRun(args: readonly string[], result: PromtoolResult): string {
  return `promtool ${args.join(' ')} exited ${result.code}\n${result.stdout}${result.stderr}`;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
