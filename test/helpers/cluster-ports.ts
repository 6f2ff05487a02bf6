import { createServer } from 'node:net';

async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** `count` ports of `range` (inclusive) free on 127.0.0.1 now, for test clusters (their ports are fixed at creation). */
export async function freePortsIn(range: readonly [number, number], count: number): Promise<number[]> {
  const free: number[] = [];
  for (let port = range[0]; port <= range[1] && free.length < count; port++) {
    if (await portIsFree(port)) free.push(port);
  }
  if (free.length < count) throw new Error(`no ${count} free ports in ${range[0]}-${range[1]}`);
  return free;
}
