import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PgBouncer {
  readonly port: number;
  /** `url` with its host and port replaced by this PgBouncer's. */
  via(url: string): string;
  stop(): Promise<void>;
}

/** A free port in 6440-6449 (the range this repository's tests use for PgBouncer). */
async function freePgBouncerPort(): Promise<number> {
  for (let port = 6440; port <= 6449; port++) {
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port in 6440-6449 for PgBouncer');
}

/**
 * A real PgBouncer (Debian `pgbouncer`) on loopback in front of `target`, with its own ini in a temp
 * directory, run as user postgres when this process is root (PgBouncer refuses to run as root).
 */
export async function startPgBouncer(target: string, poolMode: 'transaction' | 'session'): Promise<PgBouncer> {
  const server = new URL(target);
  const port = await freePgBouncerPort();
  const dir = mkdtempSync(join(tmpdir(), 'agentconn-pgbouncer-'));
  chmodSync(dir, 0o755);
  const user = decodeURIComponent(server.username || 'postgres');
  writeFileSync(join(dir, 'users.txt'), `"${user}" ""\n`);
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || '5432'}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      `pool_mode = ${poolMode}`,
      'default_pool_size = 20',
      'max_client_conn = 200',
      'ignore_startup_parameters = extra_float_digits,statement_timeout',
      '',
    ].join('\n'),
  );
  const command = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', 'pgbouncer'] : ['pgbouncer'];
  const child: ChildProcess = spawn(command[0]!, [...command.slice(1), join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const via = (url: string) => {
    const u = new URL(url);
    u.host = `127.0.0.1:${port}`;
    return u.toString();
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = new pg.Client({ connectionString: via(target) });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      break;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`PgBouncer did not start: ${String(error)}\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port,
    via,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
