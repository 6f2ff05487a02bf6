/**
 * libpq's `sslmode=prefer` for `pg`, which has no such mode: its TLS either is required or is off. A
 * `PreferTlsSocket` is the stream `pg` connects through (its `stream` option, one per connection, with
 * `ssl: false`): it asks the server for TLS itself and hands `pg` a connection that is encrypted when the
 * server offers TLS and plain when the server answers that it has none, as libpq does.
 */
import { isIP, Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';

/** The protocol's SSLRequest: length 8, then the code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * A Duplex that behaves as the `net.Socket` `pg` would make (`connect(port, host)`, then `connect`, `data`,
 * `error`, `close`), after settling TLS the way libpq's `prefer` does: the server's `S` starts a TLS handshake
 * with `tls`; its `N` means the same connection goes on unencrypted; a handshake that fails is retried once
 * on a new connection without TLS. A Unix socket is never asked, as libpq never asks one. Any other answer, or
 * bytes sent along with it (which would be read as the server's, unencrypted), fail the connection.
 */
export class PreferTlsSocket extends Duplex {
  readonly #tls: ConnectionOptions;
  #raw: Socket | undefined;
  /** The raw socket or the TLS socket over it, once settled: where the bytes go. */
  #socket: Socket | undefined;
  #noDelay = false;
  #keepAlive: { enable: boolean; delay: number } | undefined;
  #unref = false;
  #handshaking = false;

  constructor(tls: ConnectionOptions) {
    super({ allowHalfOpen: false });
    this.#tls = tls;
  }

  /** As `net.Socket#connect` as `pg` calls it: a port and a host, or the path of a Unix socket. */
  connect(portOrPath: number | string, host?: string): this {
    if (host === undefined) {
      const raw = this.#open();
      raw.connect(String(portOrPath), () => this.#settled(raw));
    } else this.#ask(Number(portOrPath), host);
    return this;
  }

  setNoDelay(noDelay = true): this {
    this.#noDelay = noDelay;
    this.#raw?.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable = false, delay = 0): this {
    this.#keepAlive = { enable, delay };
    this.#raw?.setKeepAlive(enable, delay);
    return this;
  }

  ref(): this {
    this.#unref = false;
    this.#raw?.ref();
    return this;
  }

  unref(): this {
    this.#unref = true;
    this.#raw?.unref();
    return this;
  }

  /**
   * A new TCP or Unix socket (the one before it, if any, is given up). Until it is settled, its errors end this
   * stream, and so does its closing (as `pg` sees a socket that closes); during a TLS handshake the TLS socket
   * over it speaks for it.
   */
  #open(): Socket {
    const raw = new Socket();
    this.#raw = raw;
    this.#handshaking = false;
    raw.setNoDelay(this.#noDelay);
    if (this.#unref) raw.unref();
    const current = (): boolean => this.#raw === raw && this.#socket === undefined && !this.#handshaking;
    raw.on('error', (error) => {
      if (current()) this.destroy(error);
    });
    raw.on('close', () => {
      if (current()) this.destroy();
    });
    return raw;
  }

  /** Sends the TLS request and acts on the one-byte answer. */
  #ask(port: number, host: string): void {
    const raw = this.#open();
    raw.connect(port, host, () => raw.write(SSL_REQUEST));
    raw.once('data', (answer: Buffer) => {
      if (answer.length !== 1) {
        this.destroy(new Error('the server sent more than its one-byte answer to the request for TLS; not connecting'));
      } else if (answer[0] === 0x4e /* N */) {
        this.#settled(raw);
      } else if (answer[0] === 0x53 /* S */) {
        this.#handshake(raw, port, host);
      } else {
        this.destroy(new Error(`the server answered the request for TLS with neither S nor N (0x${answer.toString('hex')}); is it PostgreSQL?`));
      }
    });
  }

  #handshake(raw: Socket, port: number, host: string): void {
    this.#handshaking = true;
    const secure = connectTls({ ...this.#tls, socket: raw, host, ...(isIP(host) === 0 && { servername: host }) });
    let done = false;
    secure.on('error', () => {
      if (done) return;
      done = true;
      secure.destroy();
      if (this.destroyed) return;
      // libpq's prefer: a handshake that fails is tried again without TLS, on a connection of its own.
      const plain = this.#open();
      raw.destroy();
      plain.connect(port, host, () => this.#settled(plain));
    });
    secure.once('secureConnect', () => {
      if (done) return;
      done = true;
      this.#settled(secure);
    });
  }

  /** From here on, bytes go through `socket`; `pg` is told it is connected. */
  #settled(socket: Socket): void {
    if (this.destroyed) {
      socket.destroy();
      return;
    }
    this.#socket = socket;
    this.#handshaking = false;
    if (this.#keepAlive !== undefined) this.#raw?.setKeepAlive(this.#keepAlive.enable, this.#keepAlive.delay);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy());
    socket.resume();
    this.emit('connect');
  }

  override _read(): void {
    this.#socket?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const socket = this.#socket;
    if (socket === undefined) {
      callback(new Error('write before the connection was made'));
    } else if (socket.write(chunk)) {
      callback();
    } else {
      socket.once('drain', () => callback());
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#socket === undefined) callback();
    else this.#socket.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket?.destroy();
    this.#raw?.destroy();
    callback(error);
  }
}
