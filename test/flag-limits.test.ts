import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNow, createCoderFixture, observedCount, scrape, waitFor, type CoderFixture } from './helpers/coder-data.js';
import { EXPORTER_CLI, spawnExporter, type ExporterProcess } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  // An accepted value would start the exporter: the timeout then ends it and the status is null, not 2.
  return spawnSync(process.execPath, [EXPORTER_CLI, ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'], ...env }, timeout: 5_000 });
}

const URL_ARGS = ['--database-url', 'postgres://postgres@127.0.0.1:1/none', '--listen', '127.0.0.1:0'];

describe('durations beyond what Node timers and Dates hold exit 2 naming the flag', () => {
  it.each([
    // 25d overflowed Node's timer: 167 polls in 5 s.
    [['--interval', '25d'], {}, /^agentconn-exporter: --interval: 25d is above the maximum of 24d20h31m23s647ms/],
    // 25d as statement timeout failed every poll.
    [['--statement-timeout', '25d'], {}, /^agentconn-exporter: --statement-timeout: 25d is above the maximum of 24d20h31m18s647ms/],
    // 999999999d failed every poll with "invalid Date".
    [['--overlap', '999999999d'], {}, /^agentconn-exporter: --overlap: 999999999d is above the maximum of 365250d/],
    [['--backfill', '999999999d'], {}, /^agentconn-exporter: --backfill: 999999999d is above the maximum of 365250d/],
    [[], { AGENTCONN_INTERVAL: '25d' }, /^agentconn-exporter: AGENTCONN_INTERVAL \(--interval\): 25d is above the maximum/],
  ])('%j %j', (args, env, message) => {
    const result = run([...URL_ARGS, ...args], env);
    expect(result.status).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });
});

describe('--backfill none given explicitly behaves as the default', () => {
  let f: CoderFixture;
  const running: ExporterProcess[] = [];
  beforeAll(async () => {
    f = await createCoderFixture();
  });
  afterAll(async () => {
    for (const p of running) p.child.kill('SIGKILL');
    await f?.close();
  });

  async function start(extra: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
    const port = await freePort();
    const p = spawnExporter(
      ['--database-url', f.database.url, '--listen', `127.0.0.1:${port}`, '--interval', '300ms', '--leader-election', 'false', ...extra],
      env,
    );
    running.push(p);
    return p.started;
  }

  async function polledOnce(url: string): Promise<boolean> {
    return /agentconn_polls_total\{[^}]*outcome="success"[^}]*\} [1-9]/.test(await scrape(url));
  }

  it('default, --backfill none and AGENTCONN_BACKFILL=none count only connections after start; --backfill all counts the earlier ones too', async () => {
    const before = f.counting.slice(0, 6);
    const after = f.counting.slice(6, 9);
    await connectNow(f.db, before);
    const none = {
      default: await start([]),
      flag: await start(['--backfill', 'none']),
      env: await start([], { AGENTCONN_BACKFILL: 'none' }),
    };
    const all = await start(['--backfill', 'all']);
    for (const url of [...Object.values(none), all]) await waitFor(() => polledOnce(url), 20_000, 'a successful poll');
    await waitFor(async () => (await observedCount(all)) === before.length, 10_000, '--backfill all counts the earlier agents');
    await connectNow(f.db, after);
    for (const url of Object.values(none)) await waitFor(async () => (await observedCount(url)) === after.length, 10_000, 'the new agents');
    await waitFor(async () => (await observedCount(all)) === before.length + after.length, 10_000, 'all agents');
    // A few more polls change nothing.
    await new Promise((r) => setTimeout(r, 1_000));
    const counts = Object.fromEntries(await Promise.all(Object.entries(none).map(async ([k, url]) => [k, await observedCount(url)] as const)));
    expect(counts).toEqual({ default: after.length, flag: after.length, env: after.length });
    expect(await observedCount(all)).toBe(before.length + after.length);
  });
});
