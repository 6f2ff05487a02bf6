/**
 * A primary and a streaming hot standby of PostgreSQL 15, each its own Debian cluster on loopback,
 * made with `pg_basebackup -R`. The cluster tools run as the `postgres` user (the tests run as root).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile, rm, readdir } from 'node:fs/promises';
import { freePortsIn } from './cluster-ports.js';
import { promisify } from 'node:util';

const run = promisify(execFile);
const VERSION = '15';
const TRUST_HBA = 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n';

export interface StreamingPair {
  readonly primaryPort: number;
  readonly standbyPort: number;
  /** `postgres://USER@127.0.0.1:PORT/DATABASE` of the primary or the standby. */
  url(server: 'primary' | 'standby', database: string, user?: string): string;
  /** Takes the standby's base backup from the primary and starts it streaming. */
  startStandby(): Promise<void>;
  /** Stops and removes both clusters. */
  drop(): Promise<void>;
}

async function createCluster(name: string, port: number, hba: string): Promise<void> {
  await run('pg_createcluster', [VERSION, name, '--port', String(port), '-o', 'wal_level=replica', '-o', 'max_wal_senders=5']);
  await writeFile(`/etc/postgresql/${VERSION}/${name}/pg_hba.conf`, hba);
}

/** Creates and starts the primary (ports from `range`); the standby comes with `startStandby()`. */
export async function createStreamingPair(range: readonly [number, number]): Promise<StreamingPair> {
  const suffix = randomBytes(3).toString('hex');
  const primary = `agentconn_primary_${suffix}`;
  const standby = `agentconn_standby_${suffix}`;
  const [primaryPort = 0, standbyPort = 0] = await freePortsIn(range, 2);
  const created: string[] = [];
  const drop = async (): Promise<void> => {
    for (const name of created.splice(0).reverse()) {
      await run('pg_dropcluster', [VERSION, name, '--stop']).catch(() => undefined);
    }
  };
  try {
    created.push(primary);
    await createCluster(primary, primaryPort, `${TRUST_HBA}host replication all 127.0.0.1/32 trust\n`);
    await run('pg_ctlcluster', [VERSION, primary, 'start']);
  } catch (error) {
    await drop();
    throw error;
  }
  return {
    primaryPort,
    standbyPort,
    url: (server, database, user = 'postgres') =>
      `postgres://${user}@127.0.0.1:${server === 'primary' ? primaryPort : standbyPort}/${database}`,
    async startStandby() {
      created.push(standby);
      await createCluster(standby, standbyPort, TRUST_HBA);
      const dataDirectory = `/var/lib/postgresql/${VERSION}/${standby}`;
      for (const entry of await readdir(dataDirectory)) await rm(`${dataDirectory}/${entry}`, { recursive: true, force: true });
      await run('runuser', ['-u', 'postgres', '--', 'pg_basebackup', '-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', dataDirectory, '-R', '-X', 'stream', '--checkpoint=fast']);
      await run('pg_ctlcluster', [VERSION, standby, 'start']);
    },
    drop,
  };
}
