import { fork, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { FastPrometheusReaderOptions, MetricsServerOptions } from '../src/index.js';

const TARGET = fileURLToPath(new URL('./fixtures/scrape-target.mjs', import.meta.url));

/** Steps a test's `afterEach` runs, last first. */
export type Cleanup = Array<() => unknown>;

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** One request (a GET unless told) on a connection of its own. */
export function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, method, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface SlowReader {
  readonly socket: Socket;
  /** Bytes taken so far. */
  received(): number;
  /** Resolves when the connection closed. */
  readonly closed: Promise<void>;
}

/**
 * A client that sends `requests` (default one `GET /metrics`, more are pipelined on the one connection) and then
 * takes `bytesPerSecond` of the answer (0: none at all).
 */
export function slowReader(port: number, bytesPerSecond: number, cleanup: Cleanup, requests = 1): SlowReader {
  const socket = connect(port, '127.0.0.1');
  let received = 0;
  socket.on('error', () => {});
  socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(requests));
  socket.pause();
  const perTick = Math.floor(bytesPerSecond / 10);
  const timer = setInterval(() => {
    for (let taken = 0; taken < perTick; ) {
      const part = socket.read() as Buffer | null;
      if (part === null) break;
      taken += part.length;
      received += part.length;
    }
    // The first bytes (status line) are seen even at 0 B/s (read(0) fills the buffer without consuming it).
    if (received === 0) {
      socket.read(0);
      received = socket.readableLength;
    }
  }, 100);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => clearInterval(timer));
  cleanup.push(() => {
    clearInterval(timer);
    socket.destroy();
  });
  return { socket, received: () => received, closed };
}

export interface Target {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  ask<T>(message: string): Promise<T>;
}

/** The fixture `scrape-target.mjs` in a child process of its own (its RSS is the server's alone). */
export async function startTarget(
  series: number,
  options: { reader?: FastPrometheusReaderOptions; server?: Partial<MetricsServerOptions>; healthz?: boolean },
  cleanup: Cleanup,
): Promise<Target> {
  const child = fork(TARGET, [String(series), JSON.stringify(options)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cleanup.push(() => child.kill('SIGKILL'));
  const next = <T>(): Promise<T> =>
    new Promise((resolve, reject) => {
      child.once('message', (message) => resolve(message as T));
      child.once('exit', (code) => reject(new Error(`scrape target exited with ${code}`)));
    });
  const { port } = await next<{ port: number }>();
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}/metrics`,
    ask<T>(message: string) {
      const answer = next<T>();
      child.send(message);
      return answer;
    },
  };
}
