import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI; `AGENTCONN_EXPORTER_CLI` points the suites at another build (e.g. an older one, to reproduce a defect). */
export const EXPORTER_CLI = process.env['AGENTCONN_EXPORTER_CLI'] ?? fileURLToPath(new URL('../../packages/exporter/dist/cli.js', import.meta.url));

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface ExporterProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  /** Resolves with the metrics URL once the exporter logged that it started. */
  readonly started: Promise<string>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends the signal and resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/** The lines of a stderr text that are not JSON objects (the exporter's log is JSON lines only). */
export function nonJsonLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((line) => line !== '')
    .filter((line) => {
      try {
        const parsed: unknown = JSON.parse(line);
        return typeof parsed !== 'object' || parsed === null || !('msg' in parsed) || !('level' in parsed);
      } catch {
        return true;
      }
    });
}

/** Runs the built exporter CLI (`packages/exporter/dist/cli.js`) as a child process. */
export function spawnExporter(args: string[], env: NodeJS.ProcessEnv = {}): ExporterProcess {
  const child = spawn(process.execPath, [EXPORTER_CLI, ...args], {
    env: { PATH: process.env['PATH'], ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let stderrText = '';
  let pending = '';
  const waiters = new Set<() => void>();
  child.stderr.on('data', (chunk: Buffer) => {
    stderrText += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 'raw', msg: line });
      }
    }
    for (const wake of waiters) wake();
  });
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = logs.find(predicate);
        if (found) {
          cleanup();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`log line not seen within ${timeoutMs} ms; stderr:\n${stderrText}`));
      }, timeoutMs);
      const onExit = () => {
        check();
        cleanup();
        reject(new Error(`exporter exited (${String(child.exitCode)}) before the log line; stderr:\n${stderrText}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
        child.off('exit', onExit);
      };
      waiters.add(check);
      child.once('exit', onExit);
      check();
    });

  const started = waitForLog((l) => l.msg === 'agentconn exporter started').then((l) => String(l['metrics_url']));
  started.catch(() => undefined);
  return {
    child,
    logs,
    stderr: () => stderrText,
    started,
    waitForLog,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
