/**
 * `pnpm bench:rss-soak`: the exporter's RSS in real time at a short interval. A copy of a kept bench
 * database (`CREATE DATABASE ... TEMPLATE`, so the kept one is not touched), the exporter started on it
 * (`agentconn-exporter --interval 1s`, defaults otherwise), one agent of the bench's pending pool
 * connecting per `--rate` second, `/metrics` scraped as Prometheus would, and the exporter's RSS
 * (`/proc/<pid>/status` VmRSS) sampled every `--sample` after a warm-up. Prints first, last, min, max
 * and the drift in %.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Sample {
  readonly atS: number;
  readonly rssKiB: number;
  readonly polls: number | undefined;
  readonly observed: number | undefined;
}

function seconds(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!match) throw new Error(`--${flag} must be a duration like 10s or 2m, got ${text}`);
  const value = Number(match[1]);
  return match[2] === 'm' ? value * 60 : match[2] === 'ms' ? value / 1000 : value;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

/** One series' value from a Prometheus text body (first match of the name and label filter). */
function metricValue(body: string, name: string, labelPart = ''): number | undefined {
  for (const line of body.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (labelPart !== '' && !rest.includes(labelPart)) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

function sumOf(body: string, name: string): number {
  let sum = 0;
  for (const line of body.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { accept: 'text/plain;version=0.0.4' } });
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
      template: { type: 'string', default: 'agentconn_bench_100000' },
      interval: { type: 'string', default: '1s' },
      warmup: { type: 'string', default: '2m' },
      duration: { type: 'string', default: '10m' },
      sample: { type: 'string', default: '10s' },
      rate: { type: 'string', default: '1' },
      keep: { type: 'boolean', default: false },
      'heap-snapshots': { type: 'string' },
      'trace-gc': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: pnpm bench:rss-soak [--database-url URL (server, default local)] [--template DB (default agentconn_bench_100000)]\n' +
        '  [--interval 1s] [--warmup 2m] [--duration 10m] [--sample 10s] [--rate 1 (connections per second)] [--keep]\n' +
        '  [--heap-snapshots DIR (the exporter writes a heap snapshot there at the start and the end of the window)]\n' +
        '  [--trace-gc FILE (the exporter runs with --trace-gc, its stdout to FILE)]\n',
    );
    return;
  }
  const warmupS = seconds(values.warmup, 'warmup');
  const durationS = seconds(values.duration, 'duration');
  const sampleS = seconds(values.sample, 'sample');
  const rate = Number(values.rate);
  const snapshotDir = values['heap-snapshots'];
  const traceGc = values['trace-gc'];
  if (!(rate > 0)) throw new Error(`--rate must be a positive number, got ${values.rate}`);
  const soakDb = `agentconn_soak_${process.pid}`;
  const admin = new pg.Client({ connectionString: values['database-url'] });
  await admin.connect();
  let exporter: ChildProcess | undefined;
  let trickle: pg.Client | undefined;
  try {
    const started = performance.now();
    await admin.query(`CREATE DATABASE ${soakDb} TEMPLATE ${values.template}`);
    process.stderr.write(`soak: copied ${values.template} to ${soakDb} in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    const url = new URL(values['database-url']);
    url.pathname = `/${soakDb}`;
    trickle = new pg.Client({ connectionString: url.toString() });
    await trickle.connect();
    const pool = Number((await trickle.query<{ n: string }>('SELECT count(*) AS n FROM bench_trickle')).rows[0]!.n);
    const needed = Math.ceil((warmupS + durationS) * rate) + 10;
    if (pool < needed) throw new Error(`the pending pool holds ${pool} agents, the soak needs ${needed}`);

    const port = await freePort();
    const bin = join(REPO, 'packages', 'exporter', 'bin', 'agentconn-exporter.js');
    const args = [bin, '--database-url', url.toString(), '--interval', values.interval, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'];
    // With --heap-snapshots, SIGUSR2 writes one (in that directory) at the start and the end of the window.
    // With --trace-gc, V8 prints every collection (heap before -> after) on the exporter's stdout, into that file.
    const nodeFlags = [...(snapshotDir === undefined ? [] : ['--heapsnapshot-signal=SIGUSR2']), ...(traceGc === undefined ? [] : ['--trace-gc'])];
    const gcLog = traceGc === undefined ? undefined : await open(traceGc, 'w');
    exporter = spawn(process.execPath, [...nodeFlags, ...args], {
      stdio: ['ignore', gcLog?.fd ?? 'inherit', 'pipe'],
      ...(snapshotDir !== undefined && { cwd: snapshotDir }),
    });
    // The child has its own copy of the descriptor.
    await gcLog?.close();
    let stderr = '';
    exporter.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    const pid = exporter.pid;
    if (pid === undefined) throw new Error('the exporter did not start');
    process.stderr.write(`soak: exporter pid ${pid}: ${args.slice(1).join(' ')}\n`);

    // The trickle: one pending agent per 1/rate s, connecting "now", created 1-600 s before.
    let next = 0;
    let connected = 0;
    let stop = false;
    const trickleLoop = (async () => {
      const stepMs = 1000 / rate;
      const t0 = performance.now();
      while (!stop) {
        const result = await trickle!.query(
          `UPDATE workspace_agents wa
             SET first_connected_at = now(), last_connected_at = now(), updated_at = now(), lifecycle_state = 'ready',
                 created_at = now() - (1 + (bt.ord * 7919) % 600 + (bt.ord % 997) / 1e6::float8) * interval '1 second'
           FROM bench_trickle bt WHERE bt.ord = $1 AND wa.id = bt.agent_id`,
          [next],
        );
        next++;
        connected += result.rowCount ?? 0;
        const due = t0 + next * stepMs;
        await sleep(Math.max(0, due - performance.now()));
      }
    })();

    const samples: Sample[] = [];
    const begin = performance.now();
    const totalS = warmupS + durationS;
    let lastBody = '';
    for (let at = 0; at <= totalS + 1e-9; at += sampleS) {
      await sleep(Math.max(0, begin + at * 1000 - performance.now()));
      if (exporter.exitCode !== null) throw new Error(`the exporter exited with ${exporter.exitCode}: ${stderr.slice(-2000)}`);
      let body: string | undefined;
      try {
        body = await scrape(port);
        lastBody = body;
      } catch (error) {
        process.stderr.write(`soak: scrape failed: ${String(error)}\n`);
      }
      const sample: Sample = {
        atS: at,
        rssKiB: await rssKiB(pid),
        polls: body === undefined ? undefined : metricValue(body, 'agentconn_polls_total', 'outcome="success"'),
        observed: body === undefined ? undefined : sumOf(body, 'coderd_agents_first_connection_seconds_count'),
      };
      samples.push(sample);
      if (snapshotDir !== undefined && (Math.abs(at - warmupS) < 1e-9 || at + sampleS > totalS + 1e-9)) exporter.kill('SIGUSR2');
      process.stderr.write(
        `soak: t=${at.toFixed(0)} s${at < warmupS ? ' (warm-up)' : ''} rss ${(sample.rssKiB / 1024).toFixed(1)} MiB, polls ${sample.polls ?? '?'}, observed ${sample.observed ?? '?'}, connected ${connected}\n`,
      );
    }
    stop = true;
    await trickleLoop;

    const measured = samples.filter((s) => s.atS >= warmupS - 1e-9);
    const rss = measured.map((s) => s.rssKiB / 1024);
    const first = rss[0]!;
    const last = rss.at(-1)!;
    const min = Math.min(...rss);
    const max = Math.max(...rss);
    const pct = (x: number): string => `${x >= 0 ? '+' : ''}${((x / first) * 100).toFixed(1)} %`;
    const polls = metricValue(lastBody, 'agentconn_polls_total', 'outcome="success"');
    const errors = metricValue(lastBody, 'agentconn_polls_total', 'outcome="error"');
    const lines = [
      `RSS soak: agentconn-exporter --interval ${values.interval} on a copy of ${values.template}, ${rate} new first connection(s) per second, /metrics scraped every ${sampleS} s;`,
      `RSS sampled every ${sampleS} s for ${durationS} s after a ${warmupS} s warm-up (${measured.length} samples):`,
      '',
      '| first MiB | last MiB | min MiB | max MiB | drift (last − first) | range (max − min) |',
      '|---:|---:|---:|---:|---:|---:|',
      `| ${first.toFixed(1)} | ${last.toFixed(1)} | ${min.toFixed(1)} | ${max.toFixed(1)} | ${pct(last - first)} | ${pct(max - min)} |`,
      '',
      `Polls: ${polls ?? '?'} successful, ${errors ?? 0} failed; connections made ${connected}, samples observed ${samples.at(-1)?.observed ?? '?'} (connections after the exporter's first poll; --backfill none).`,
      ...(snapshotDir === undefined ? [] : [`Heap snapshots at the start and the end of the window: ${snapshotDir}`]),
      '',
      'Samples (s after start, RSS MiB): ' + samples.map((s) => `${s.atS.toFixed(0)}:${(s.rssKiB / 1024).toFixed(1)}`).join(' '),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    if (exporter !== undefined && exporter.exitCode === null) {
      const exited = new Promise<void>((resolve) => exporter!.once('exit', () => resolve()));
      exporter.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    await trickle?.end();
    if (!values.keep) await admin.query(`DROP DATABASE IF EXISTS ${soakDb} WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:rss-soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
