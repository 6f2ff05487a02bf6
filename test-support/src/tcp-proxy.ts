import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';

export interface TcpProxy {
  readonly port: number;
  /** Drops every open connection and refuses new ones (the port stops listening). */
  block(): Promise<void>;
  /** Listens again on the same port. */
  unblock(): Promise<void>;
  /**
   * Stops forwarding on every open connection without closing it (no FIN, no RST: as behind a dead
   * NAT); new connections still pass.
   */
  freeze(): void;
  /** Like `freeze()`, and new connections are accepted but never forwarded either (a black hole). */
  blackhole(): void;
  /** Forwards again on every frozen connection (what was held is delivered) and ends the black hole. */
  heal(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  frozen: boolean;
}

/** A loopback TCP proxy to `target`, owned by the test, to cut the exporter off its database. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const port = await freePort();
  const pairs = new Set<Pair>();
  let server: Server | undefined;
  let blackholed = false;

  const freezePair = (pair: Pair) => {
    if (pair.frozen) return;
    pair.frozen = true;
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
    pair.client.pause();
    pair.upstream.pause();
  };
  const thawPair = (pair: Pair) => {
    if (!pair.frozen) return;
    pair.frozen = false;
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = createConnection(target.port, target.host);
        const pair: Pair = { client, upstream, frozen: true };
        pairs.add(pair);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          pairs.delete(pair);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        client.pause();
        upstream.pause();
        if (!blackholed) thawPair(pair);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        server = s;
        resolve();
      });
    });

  const stopListening = () =>
    new Promise<void>((resolve) => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
      if (server === undefined) return resolve();
      server.close(() => resolve());
      server = undefined;
    });

  await listen();
  return {
    port,
    block: stopListening,
    unblock: listen,
    freeze() {
      for (const pair of pairs) freezePair(pair);
    },
    blackhole() {
      blackholed = true;
      for (const pair of pairs) freezePair(pair);
    },
    heal() {
      blackholed = false;
      for (const pair of pairs) thawPair(pair);
    },
    close() {
      blackholed = false;
      return stopListening();
    },
  };
}
