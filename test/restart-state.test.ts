/** Restarts with --state-file against the real server: no hole for the downtime, nothing counted twice. */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { connectNow, createCoderFixture, observedCount, scrape, waitFor, type CoderFixture, afterPolls } from './helpers/coder-data.js';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';

const INTERVAL_MS = 1000;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function fixture(): Promise<CoderFixture> {
  const f = await createCoderFixture({ workspaces: 90 });
  cleanups.push(() => f.close());
  return f;
}

async function stateDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'agentconn-state-'));
  cleanups.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function exporter(databaseUrl: string, extra: string[]): Promise<{ process: ExporterProcess; url: string }> {
  const port = await freePort();
  const process = spawnExporter(['--database-url', databaseUrl, '--listen', `127.0.0.1:${port}`, '--interval', `${INTERVAL_MS}ms`, ...extra]);
  cleanups.push(async () => {
    process.child.kill('SIGKILL');
    await process.exited;
  });
  return { process, url: await process.started };
}

/** The URL with a password: trust auth ignores it, so it shows whether the password ends up in the file. */
function withPassword(url: string): string {
  const u = new URL(url);
  u.password = 'St4te-Secret';
  return u.toString();
}

describe('restarts with --state-file', () => {
  it('kill -9, 50 connections during the downtime, restart: all 50 counted once, none of the first run again (default --backfill none)', async () => {
    const f = await fixture();
    const stateFile = join(await stateDirectory(), 'agentconn.state');
    const databaseUrl = withPassword(f.database.url);
    const first = await exporter(databaseUrl, ['--state-file', stateFile]);
    expect(first.process.logs.some((l) => l.msg === 'no state file yet; counting by the backfill policy')).toBe(true);
    await afterPolls(first.url, 1);
    const before = f.counting.slice(0, 10);
    await connectNow(f.db, before);
    await waitFor(async () => (await observedCount(first.url)) === before.length, 10_000, 'first run observes');
    await afterPolls(first.url, 2);
    first.process.child.kill('SIGKILL');
    await first.process.exited;

    const downtime = f.counting.slice(10, 60);
    expect(downtime).toHaveLength(50);
    await connectNow(f.db, downtime);
    const saved = await readFile(stateFile, 'utf8');
    expect(saved).not.toContain('St4te-Secret');
    expect(saved).not.toContain(f.database.name);

    const second = await exporter(databaseUrl, ['--state-file', stateFile]);
    await second.process.waitForLog((l) => l.msg === 'resuming from the state file');
    await waitFor(async () => (await observedCount(second.url)) >= downtime.length, 10_000, 'second run observes the downtime');
    await afterPolls(second.url, 3);
    expect(await observedCount(second.url)).toBe(downtime.length);
    expect(second.process.logs.filter((l) => l.level === 'error')).toHaveLength(0);
    expect(second.process.stderr()).not.toContain('St4te-Secret');

    // And it keeps counting after the restart, once each.
    const later = f.counting.slice(60, 65);
    await connectNow(f.db, later);
    await waitFor(async () => (await observedCount(second.url)) === downtime.length + later.length, 10_000, 'after restart');
  }, 60_000);

  it('a corrupt state file: one clear error line, the backfill policy, no crash; the next save repairs it', async () => {
    const f = await fixture();
    const stateFile = join(await stateDirectory(), 'agentconn.state');
    await connectNow(f.db, f.counting.slice(0, 5));
    await writeFile(stateFile, '{"version":1,"watermark_ms":');
    const run = await exporter(f.database.url, ['--state-file', stateFile]);
    const errors = run.process.logs.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ msg: 'the state file is not usable; counting by the backfill policy', state_file: stateFile });
    expect(String(errors[0]!['error'])).toMatch(/^not JSON/);
    await afterPolls(run.url, 2);
    // --backfill none: the five that connected before the start are not counted.
    expect(await observedCount(run.url)).toBe(0);
    await connectNow(f.db, f.counting.slice(5, 8));
    await waitFor(async () => (await observedCount(run.url)) === 3, 10_000, 'new connections');
    await afterPolls(run.url, 1);
    expect(JSON.parse(await readFile(stateFile, 'utf8'))).toMatchObject({ version: 1 });
    expect(run.process.logs.filter((l) => l.level === 'error')).toHaveLength(1);
  }, 60_000);
  it('a state file that cannot be written: one error line per episode, polling goes on, one line when writes work again', async () => {
    const f = await fixture();
    const directory = join(await stateDirectory(), 'not-yet');
    const stateFile = join(directory, 'agentconn.state');
    const run = await exporter(f.database.url, ['--state-file', stateFile]);
    await run.process.waitForLog((l) => l.msg === 'writing the state file failed; a restart now counts from the last state written');
    await afterPolls(run.url, 3);
    const errors = run.process.logs.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ state_file: stateFile });
    await connectNow(f.db, f.counting.slice(0, 4));
    await waitFor(async () => (await observedCount(run.url)) === 4, 10_000, 'counting goes on');

    await mkdir(directory);
    await run.process.waitForLog((l) => l.msg === 'state file written again');
    const saved = JSON.parse(await readFile(stateFile, 'utf8')) as { handled: [string, number][] };
    expect(saved.handled.map(([id]) => id).sort()).toEqual(f.counting.slice(0, 4).map((a) => a.id).sort());
    expect(run.process.logs.filter((l) => l.level === 'error')).toHaveLength(1);
  }, 60_000);

  it('timeouts counted before a kill -9 are not counted again after the restart with --state-file; those of the downtime are', async () => {
    const f = await fixture();
    const stateFile = join(await stateDirectory(), 'agentconn.state');
    const timeouts = async (url: string) => sumSamples(await scrape(url), 'coderd_agents_first_connection_timeouts_total');
    // Agents that start waiting now (database clock) and time out after 1 s, as Coder's rule says.
    const startWaiting = async (ids: readonly string[]) =>
      sql`UPDATE workspace_agents SET created_at = clock_timestamp(), connection_timeout_seconds = 1
        WHERE id = ANY(${ids}::uuid[])`.execute(f.db);
    const first = await exporter(f.database.url, ['--state-file', stateFile]);
    await afterPolls(first.url, 1);
    const before = f.counting.slice(0, 4).map((a) => a.id);
    await startWaiting(before);
    await waitFor(async () => (await timeouts(first.url)) === before.length, 15_000, 'first run counts the timeouts');
    await afterPolls(first.url, 2);
    first.process.child.kill('SIGKILL');
    await first.process.exited;

    const downtime = f.counting.slice(4, 7).map((a) => a.id);
    await startWaiting(downtime);
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // The first run's four still wait and are read again at the restart's first full reconciliation,
    // inside the saved overlap window: without their ids in the state file they were counted again (7, not 3).
    const second = await exporter(f.database.url, ['--state-file', stateFile]);
    await second.process.waitForLog((l) => l.msg === 'resuming from the state file');
    await waitFor(async () => (await timeouts(second.url)) >= downtime.length, 15_000, 'second run counts the downtime');
    await afterPolls(second.url, 3);
    expect(await timeouts(second.url)).toBe(downtime.length);
  }, 60_000);
});
