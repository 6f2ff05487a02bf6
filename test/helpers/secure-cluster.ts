/**
 * A PostgreSQL 15 cluster of its own, set up as an operator's would be: password authentication
 * (scram-sha-256) over TCP, and TLS with a server certificate signed by a private CA made here with
 * openssl. The superuser `postgres` logs in over the Unix socket (trust), for setting things up. The
 * cluster tools run as root, as the tests do; the server runs as `postgres`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePortsIn } from './cluster-ports.js';

const run = promisify(execFile);
const VERSION = '15';

export interface SecureCluster {
  readonly port: number;
  /** The private CA's certificate (PEM file): what `sslrootcert=` names. */
  readonly caFile: string;
  /** Another CA's certificate, which did not sign the server's. */
  readonly otherCaFile: string;
  /** A directory for the test's own files; removed by `drop()`. */
  readonly dir: string;
  /** `postgres://USER:PASSWORD@HOST:PORT/DATABASE?PARAMS` (host 127.0.0.1 unless given). */
  url(options: { user: string; password: string; database: string; host?: string; params?: Record<string, string> }): string;
  /** Runs SQL as the superuser in `database` (default `postgres`). */
  sql(text: string, database?: string): Promise<pg.QueryResult>;
  /** Stops and removes the cluster and the files. */
  drop(): Promise<void>;
}

/** A CA, a second CA, and a server certificate from the first for `localhost` (DNS only: not for 127.0.0.1). */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  for (const ca of ['ca', 'other-ca']) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=agentconn ${ca}`);
  }
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
}

/** Creates and starts the cluster on a free port of `range` (inclusive). */
export async function createSecureCluster(range: readonly [number, number]): Promise<SecureCluster> {
  const [port = 0] = await freePortsIn(range, 1);
  const name = `agentconn_secure_${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'agentconn-secure-'));
  const config = `/etc/postgresql/${VERSION}/${name}`;
  let created = false;
  const drop = async (): Promise<void> => {
    if (created) await run('pg_dropcluster', [VERSION, name, '--stop']).catch(() => undefined);
    created = false;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    makeCertificates(dir);
    await run('pg_createcluster', [VERSION, name, '--port', String(port)]);
    created = true;
    for (const file of ['server.crt', 'server.key']) {
      execFileSync('install', ['-o', 'postgres', '-g', 'postgres', '-m', '0600', join(dir, file), join(config, file)]);
    }
    writeFileSync(
      join(config, 'conf.d', 'agentconn-tls.conf'),
      `listen_addresses = '127.0.0.1'\npassword_encryption = 'scram-sha-256'\nssl = on\nssl_cert_file = '${config}/server.crt'\nssl_key_file = '${config}/server.key'\n`,
    );
    writeFileSync(join(config, 'pg_hba.conf'), 'local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n');
    await run('pg_ctlcluster', [VERSION, name, 'start']);
  } catch (error) {
    await drop();
    throw error;
  }
  const socketPort = port;
  return {
    port,
    caFile: join(dir, 'ca.crt'),
    otherCaFile: join(dir, 'other-ca.crt'),
    dir,
    url({ user, password, database, host = '127.0.0.1', params = {} }) {
      const query = new URLSearchParams(params).toString();
      return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${socketPort}/${database}${query === '' ? '' : `?${query}`}`;
    },
    async sql(text, database = 'postgres') {
      const client = new pg.Client({ host: '/var/run/postgresql', port: socketPort, user: 'postgres', database });
      await client.connect();
      try {
        return await client.query(text);
      } finally {
        await client.end();
      }
    },
    drop,
  };
}
