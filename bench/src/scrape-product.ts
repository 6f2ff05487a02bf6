/**
 * `pnpm bench:scrape`: the `/metrics` scrape of the product, as an operator runs it. `agentconn-exporter` on the
 * real PostgreSQL server with N connected agents and the four labels of Coder PR #24179 (one histogram series per
 * workspace), scraped over HTTP by curl with the headers Prometheus 2.42 sends, against a plain HTTP server (its own
 * process) that answers the very bytes the exporter answered, in turn, in the same run. Medians over rounds;
 * ratios are medians of the per-round ratios; the exporter's peak RSS (VmHWM) after its first poll and at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { sql } from 'kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { addWorkspaces, generateCoderData, migrateToLatest } from '@agentconn/kysely/testing';
import { machineFacts } from './machine.js';
import { median } from './stats.js';
import { summariseProfile, writeProfileSummary } from './profile.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FOUR_LABELS = 'template_name,agent_name,username,workspace_name';
const CHUNK = 100_000;
const DATA_VERSION = 1;

/** What Prometheus 2.42 sends: OpenMetrics first, the text format as a fallback, and gzip. */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
const TEXT_ACCEPT = 'text/plain;version=0.0.4;q=1,*/*;q=0.1';

export const SCRAPE_VARIANTS = {
  plain: { accept: TEXT_ACCEPT, gzip: false },
  gzip: { accept: TEXT_ACCEPT, gzip: true },
  openmetrics: { accept: PROMETHEUS_ACCEPT, gzip: false },
  'openmetrics-gzip': { accept: PROMETHEUS_ACCEPT, gzip: true },
} as const;
export type ScrapeVariant = keyof typeof SCRAPE_VARIANTS;

function usage(): string {
  return [
    'usage: pnpm bench:scrape [--agents 100k,200k] [--rounds 5] [--variants plain,gzip,openmetrics,openmetrics-gzip]',
    '  [--database-url URL (server; default $DATABASE_URL or the local one)] [--keep] [--reuse]',
    '  [--root DIR[,DIR...] (checkouts whose exporters run side by side, scraped in turn; default this one)]',
    '  [--cpu-prof DIR (profiles the first root\'s exporter; summary of its measured scrapes)] [--out DIR]',
    '',
    'Each size gets a database of its own (connected agents, one workspace each), dropped at the end; with --keep it',
    'is agentconn_scrape_<agents> and stays, and --reuse takes a kept one. The exporter runs with --labels ' + FOUR_LABELS,
    '--cardinality-limit 200000 --backfill all; once ready, every variant is scraped from it and from a plain server',
    'holding its bytes, in turn, --rounds times after one unmeasured round.',
    '',
  ].join('\n');
}

function count(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (!match) throw new Error(`--${flag}: ${text} is not a count (e.g. 100000, 100k, 1M)`);
  const scale = match[2] === '' ? 1 : match[2]!.toLowerCase() === 'k' ? 1_000 : 1_000_000;
  const value = Number(match[1]) * scale;
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${flag}: ${text} is not a positive integer`);
  return value;
}

export interface ScrapeOptions {
  readonly agents: readonly number[];
  readonly rounds: number;
  readonly variants: readonly ScrapeVariant[];
  readonly databaseUrl: string;
  readonly keep: boolean;
  readonly reuse: boolean;
  /** Checkouts whose exporters are measured side by side; the first one's bytes are the prerendered ones. */
  readonly roots: readonly string[];
  readonly cpuProf: string | undefined;
  readonly out: string;
}

export function parseScrapeOptions(argv: readonly string[]): ScrapeOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      agents: { type: 'string', default: '100k,200k' },
      rounds: { type: 'string', default: '5' },
      variants: { type: 'string', default: Object.keys(SCRAPE_VARIANTS).join(',') },
      'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
      keep: { type: 'boolean', default: false },
      reuse: { type: 'boolean', default: false },
      root: { type: 'string', default: REPO },
      'cpu-prof': { type: 'string' },
      out: { type: 'string', default: join(REPO, 'bench', 'results') },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return 'help';
  const variants = values.variants.split(',').map((v) => v.trim());
  for (const v of variants) {
    if (!(v in SCRAPE_VARIANTS)) throw new Error(`--variants: unknown variant "${v}" (known: ${Object.keys(SCRAPE_VARIANTS).join(', ')})`);
  }
  return {
    agents: values.agents.split(',').map((a) => count(a, 'agents')),
    rounds: count(values.rounds, 'rounds'),
    variants: variants as ScrapeVariant[],
    databaseUrl: values['database-url'],
    keep: values.keep,
    reuse: values.reuse,
    roots: values.root.split(',').map((r) => resolve(r.trim())),
    cpuProf: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
    out: resolve(values.out),
  };
}

const progress = (line: string): void => void process.stderr.write(`bench:scrape: ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

function urlFor(base: string, name: string): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The database of `agents` connected agents, one per workspace (so four labels give one series each). */
async function openDatabase(options: ScrapeOptions, agents: number): Promise<{ url: string; drop: () => Promise<void> }> {
  // A database kept or reused has its size's name; any other is this run's own, so that runs at the same time (a
  // test beside a benchmark) never drop each other's.
  const name = options.keep || options.reuse ? `agentconn_scrape_${agents}` : `agentconn_scrape_${agents}_${process.pid}`;
  const url = urlFor(options.databaseUrl, name);
  const admin = new pg.Client({ connectionString: options.databaseUrl });
  await admin.connect();
  try {
    const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
    if (exists && options.reuse) {
      const check = new pg.Client({ connectionString: url });
      await check.connect();
      try {
        const meta = await check.query<{ meta: { version: number; agents: number } }>('SELECT meta FROM bench_scrape_meta').catch(() => undefined);
        if (meta?.rows[0]?.meta.version === DATA_VERSION && meta.rows[0].meta.agents === agents) {
          progress(`${agents}: reusing database ${name}`);
          return { url, drop: async () => {} };
        }
      } finally {
        await check.end();
      }
    }
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const started = performance.now();
  const db = createPostgresDb({ connectionString: url, max: 2, application_name: 'agentconn-bench-scrape' });
  try {
    await migrateToLatest(db);
    const baseTime = new Date(Date.now() - 3_600_000);
    const spec = {
      agentsPerWorkspace: 1,
      buildsPerWorkspace: 1,
      deletedWorkspaceRatio: 0,
      deletedAgentRatio: 0,
      neverConnectedRatio: 0,
      negativeRatio: 0,
      baseTime,
      spanSeconds: 30 * 86_400,
      collectAgents: false,
    } as const;
    for (let chunk = 0; chunk * CHUNK < agents; chunk++) {
      const workspaces = Math.min(CHUNK, agents - chunk * CHUNK);
      progress(`${agents}: generating workspaces ${chunk * CHUNK + 1}-${chunk * CHUNK + workspaces}`);
      if (chunk === 0) await generateCoderData(db, { ...spec, workspaces, seed: 1, users: 5_000, templates: 20, versionsPerTemplate: 3 });
      else await addWorkspaces(db, { ...spec, workspaces, seed: 100_003 + chunk, namePrefix: `ws-c${chunk}-` });
    }
    await sql`VACUUM ANALYZE`.execute(db);
    await sql`CREATE TABLE bench_scrape_meta (meta jsonb NOT NULL)`.execute(db);
    await sql`INSERT INTO bench_scrape_meta VALUES (${JSON.stringify({ version: DATA_VERSION, agents })}::jsonb)`.execute(db);
    progress(`${agents}: ${name} generated in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await db.destroy();
  }
  const drop = async () => {
    if (options.keep) return;
    const client = new pg.Client({ connectionString: options.databaseUrl });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => client.end());
  };
  return { url, drop };
}

interface Response {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** One GET, the whole body kept (to hand the same bytes to the plain server). */
function fetchRaw(url: string, variant: ScrapeVariant): Promise<Response> {
  const { accept, gzip } = SCRAPE_VARIANTS[variant];
  return new Promise((resolveResponse, reject) => {
    // No keep-alive: an idle connection left open would hold the exporter's graceful stop.
    const req = request(url, { agent: false, headers: { Accept: accept, ...(gzip && { 'Accept-Encoding': 'gzip' }) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => {
        const headers: Record<string, string> = {};
        for (const key of ['content-type', 'content-encoding', 'vary']) {
          const value = res.headers[key];
          if (typeof value === 'string') headers[key] = value;
        }
        resolveResponse({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
      });
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}

interface Timed {
  readonly seconds: number;
  readonly bytes: number;
}

/** One scrape by curl, as a separate client process (its own CPU, like Prometheus): total time and bytes. */
function curl(url: string, variant: ScrapeVariant): Promise<Timed> {
  const { accept, gzip } = SCRAPE_VARIANTS[variant];
  const args = ['-s', '-o', '/dev/null', '-w', '%{http_code} %{time_total} %{size_download}', '-H', `Accept: ${accept}`];
  args.push('-H', 'User-Agent: Prometheus/2.42.0', '-H', 'X-Prometheus-Scrape-Timeout-Seconds: 10');
  if (gzip) args.push('-H', 'Accept-Encoding: gzip');
  args.push(url);
  return new Promise((resolveTimed, reject) => {
    const child = spawn('curl', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      const [status, seconds, bytes] = out.trim().split(' ');
      if (code !== 0 || status !== '200') reject(new Error(`curl ${url} (${variant}): exit ${code}, HTTP ${status}`));
      else resolveTimed({ seconds: Number(seconds), bytes: Number(bytes) });
    });
  });
}

async function memoryKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  stderr: string;
}

function start(args: readonly string[], options: { cwd?: string } = {}): Child {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  if (child.pid === undefined) throw new Error(`could not start node ${args.join(' ')}`);
  const handle: Child = { process: child, pid: child.pid, stderr: '' };
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    handle.stderr = (handle.stderr + chunk).slice(-20_000);
  });
  return handle;
}

async function stop(child: Child): Promise<void> {
  if (child.process.exitCode !== null) return;
  const exited = new Promise<void>((r) => child.process.once('exit', () => r()));
  child.process.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, 30_000)))]);
  clearTimeout(timer);
  if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
}

async function waitReady(child: Child, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.process.exitCode !== null) throw new Error(`the exporter exited with ${child.process.exitCode}: ${child.stderr}`);
    const status = await new Promise<number>((r) => {
      const req = request(url, { agent: false }, (res) => {
        res.resume();
        res.once('end', () => r(res.statusCode ?? 0));
      });
      req.once('error', () => r(0));
      req.end();
    });
    if (status === 200) return;
    await sleep(500);
  }
  throw new Error(`not ready within ${timeoutMs} ms: ${child.stderr}`);
}

export interface VariantFigures {
  readonly variant: ScrapeVariant;
  /** Bytes of each exporter's answer, by root (the same for every root when they render alike). */
  readonly bytes: readonly number[];
  /** Scrape times by root, one per round. */
  readonly exporterMs: ReadonlyArray<readonly number[]>;
  readonly prerenderedMs: readonly number[];
  /** Per round, each root's time over the prerendered time of the same round. */
  readonly ratios: ReadonlyArray<readonly number[]>;
}

export interface ExporterFigures {
  readonly root: string;
  readonly firstPollS: number;
  readonly hwmAfterPollMiB: number;
  readonly hwmEndMiB: number;
  readonly rssEndMiB: number;
}

export interface SizeFigures {
  readonly agents: number;
  readonly series: number;
  readonly exporters: readonly ExporterFigures[];
  readonly prerenderedHwmMiB: number;
  readonly load: readonly number[];
  readonly variants: readonly VariantFigures[];
  readonly profile?: string;
}

interface RunningExporter {
  readonly root: string;
  readonly child: Child;
  readonly url: string;
  readonly firstPollS: number;
  readonly hwmAfterPollKiB: number;
}

async function startExporter(options: ScrapeOptions, root: string, databaseUrl: string, agents: number, profile: boolean): Promise<RunningExporter> {
  const port = await freePort();
  const bin = join(root, 'packages', 'exporter', 'bin', 'agentconn-exporter.js');
  const profileDir = options.cpuProf === undefined ? undefined : join(options.cpuProf, String(agents));
  const nodeFlags = profile && profileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  if (profile && profileDir !== undefined) await mkdir(profileDir, { recursive: true });
  // Each exporter observes on its own: side by side on one database they must not elect one leader.
  const args = [FOUR_LABELS, '--cardinality-limit', '200000', '--backfill', 'all', '--leader-election', 'false', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'];
  progress(`${agents}: node ${[...nodeFlags, bin].join(' ')} --database-url <url> --labels ${args.join(' ')}`);
  const started = performance.now();
  const child = start([...nodeFlags, bin, '--database-url', databaseUrl, '--labels', ...args]);
  await waitReady(child, `http://127.0.0.1:${port}/readyz`, 600_000);
  const firstPollS = (performance.now() - started) / 1000;
  const memory = await memoryKiB(child.pid);
  progress(`${agents}: ${root}: ready after ${firstPollS.toFixed(1)} s, VmHWM ${(memory.hwm / 1024).toFixed(0)} MiB`);
  return { root, child, url: `http://127.0.0.1:${port}/metrics`, firstPollS, hwmAfterPollKiB: memory.hwm };
}

async function measureSize(options: ScrapeOptions, agents: number, work: string): Promise<SizeFigures> {
  const database = await openDatabase(options, agents);
  const exporters: RunningExporter[] = [];
  let plain: Child | undefined;
  try {
    // One at a time: a first poll is the heaviest moment of each, and they must not overlap.
    for (const [i, root] of options.roots.entries()) exporters.push(await startExporter(options, root, database.url, agents, i === 0));

    // The bytes the first exporter answers, one file per variant, for the plain server.
    const manifest: Record<string, { file: string; headers: Record<string, string> }> = {};
    let series = 0;
    for (const variant of options.variants) {
      const response = await fetchRaw(exporters[0]!.url, variant);
      if (response.status !== 200) throw new Error(`${variant}: HTTP ${response.status}`);
      const file = join(work, `${agents}-${variant}.body`);
      await writeFile(file, response.body);
      manifest[variant] = { file, headers: response.headers };
      if (!SCRAPE_VARIANTS[variant].gzip && series === 0) series = countSeries(response.body.toString('utf8'));
    }
    const manifestFile = join(work, `${agents}-manifest.json`);
    await writeFile(manifestFile, JSON.stringify(manifest));
    const plainPort = await freePort();
    plain = start([join(REPO, 'bench', 'dist', 'prerendered-server.js'), manifestFile, String(plainPort)]);
    await waitReady(plain, `http://127.0.0.1:${plainPort}/ready`, 60_000);
    const prerendered = (variant: ScrapeVariant) => `http://127.0.0.1:${plainPort}/${variant}`;

    const targets = [...exporters.map((e, i) => ({ exporter: i as number | undefined, url: (_: ScrapeVariant) => e.url })), { exporter: undefined, url: prerendered }];
    const figures = new Map<ScrapeVariant, { bytes: number[]; exporter: number[][]; prerendered: number[]; ratios: number[][] }>();
    for (const v of options.variants) figures.set(v, { bytes: exporters.map(() => 0), exporter: exporters.map(() => []), prerendered: [], ratios: exporters.map(() => []) });
    const load: number[] = [];
    const windows: Array<[number, number]> = [];
    // One variant after the other, as a Prometheus scrapes in one format: round 0 warms every server up (JIT,
    // chunk pools, caches) and is not counted; each round starts the rotation one target later, so no target is
    // always first or always after the same one.
    for (const variant of options.variants) {
      const f = figures.get(variant)!;
      for (let round = 0; round <= options.rounds; round++) {
        load.push(loadavg()[0] ?? 0);
        const times = new Map<number | undefined, Timed>();
        for (let k = 0; k < targets.length; k++) {
          const target = targets[(k + round) % targets.length]!;
          const from = Number(process.hrtime.bigint() / 1000n);
          const timed = await curl(target.url(variant), variant);
          if (target.exporter === 0 && round > 0) windows.push([from, Number(process.hrtime.bigint() / 1000n)]);
          times.set(target.exporter, timed);
        }
        if (round === 0) continue;
        const base = times.get(undefined)!;
        f.prerendered.push(base.seconds * 1000);
        exporters.forEach((_, i) => {
          const t = times.get(i)!;
          f.bytes[i] = t.bytes;
          f.exporter[i]!.push(t.seconds * 1000);
          f.ratios[i]!.push(t.seconds / base.seconds);
        });
        progress(
          `${agents}: ${variant} round ${round}/${options.rounds} (load ${load.at(-1)!.toFixed(2)}): ${f.exporter.map((e) => e.at(-1)!.toFixed(0)).join('/')}/${f.prerendered.at(-1)!.toFixed(0)} ms`,
        );
      }
    }
    const ends: Array<{ rss: number; hwm: number }> = [];
    for (const e of exporters) ends.push(await memoryKiB(e.child.pid));
    const plainMemory = await memoryKiB(plain.pid);
    for (const e of exporters) await stop(e.child);
    let profile: string | undefined;
    if (options.cpuProf !== undefined) profile = await summariseLatestProfile(join(options.cpuProf, String(agents)), windows);
    return {
      agents,
      series,
      exporters: exporters.map((e, i) => ({
        root: e.root,
        firstPollS: e.firstPollS,
        hwmAfterPollMiB: e.hwmAfterPollKiB / 1024,
        hwmEndMiB: ends[i]!.hwm / 1024,
        rssEndMiB: ends[i]!.rss / 1024,
      })),
      prerenderedHwmMiB: plainMemory.hwm / 1024,
      load,
      variants: options.variants.map((variant) => {
        const f = figures.get(variant)!;
        return { variant, bytes: f.bytes, exporterMs: f.exporter, prerenderedMs: f.prerendered, ratios: f.ratios };
      }),
      ...(profile !== undefined && { profile }),
    };
  } finally {
    for (const e of exporters) await stop(e.child);
    if (plain !== undefined) await stop(plain);
    await database.drop();
  }
}

/** Series of the first-connection histogram in the text: one `_count` line each. */
function countSeries(text: string): number {
  let n = 0;
  const marker = 'coderd_agents_first_connection_seconds_count{';
  for (let at = text.indexOf(marker); at !== -1; at = text.indexOf(marker, at + 1)) n++;
  return n;
}

async function summariseLatestProfile(dir: string, windows: ReadonlyArray<readonly [number, number]>): Promise<string | undefined> {
  const { readdir } = await import('node:fs/promises');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  const last = files.at(-1);
  if (last === undefined) return undefined;
  const summary = await summariseProfile(join(dir, last), windows, 40);
  const out = join(dir, `${last}.scrapes.md`);
  await writeProfileSummary(summary, out);
  return out;
}

function rootName(root: string): string {
  return root === REPO ? 'this checkout' : root;
}

export function scrapeReport(sizes: readonly SizeFigures[], options: ScrapeOptions): string {
  const machine = machineFacts();
  const mb = (bytes: number) => (bytes / 1e6).toFixed(bytes < 10e6 ? 2 : 1);
  const range = (values: readonly number[], digits: number) => `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
  const lines = [
    `agentconn-exporter with \`--labels ${FOUR_LABELS} --cardinality-limit 200000 --backfill all\` on PostgreSQL,`,
    `scraped by curl with Prometheus 2.42's headers, against a plain HTTP server answering the first exporter's bytes,`,
    `all in turn, one variant after the other; ${options.rounds} rounds after one unmeasured each; medians (range); ratios are medians of per-round ratios.`,
    `${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}. Exporters: ${options.roots.map((r, i) => `[${i + 1}] ${rootName(r)}`).join(', ')}.`,
    '',
    '| agents (series) | variant | exporter | bytes | exporter ms | prerendered ms | exporter / prerendered |',
    '|---|---|---|---:|---:|---:|---:|',
  ];
  for (const size of sizes) {
    for (const v of size.variants) {
      v.exporterMs.forEach((times, i) => {
        lines.push(
          `| ${size.agents} (${size.series}) | ${v.variant} | [${i + 1}] | ${mb(v.bytes[i]!)} MB | ${median(times).toFixed(0)} (${range(times, 0)}) | ${median(v.prerenderedMs).toFixed(0)} (${range(v.prerenderedMs, 0)}) | **${median(v.ratios[i]!).toFixed(2)}×** (${range(v.ratios[i]!, 2)}) |`,
        );
      });
    }
  }
  lines.push(
    '',
    '| agents | exporter | first poll to ready | VmHWM after it | VmHWM at the end | RSS at the end | plain server VmHWM | load (1 min) |',
    '|---|---|---:|---:|---:|---:|---:|---|',
  );
  for (const size of sizes) {
    size.exporters.forEach((e, i) => {
      lines.push(
        `| ${size.agents} | [${i + 1}] | ${e.firstPollS.toFixed(1)} s | ${e.hwmAfterPollMiB.toFixed(0)} MiB | ${e.hwmEndMiB.toFixed(0)} MiB | ${e.rssEndMiB.toFixed(0)} MiB | ${size.prerenderedHwmMiB.toFixed(0)} MiB | ${range(size.load, 2)} |`,
      );
    });
  }
  const gzip = (size: SizeFigures, name: ScrapeVariant, base: ScrapeVariant, i: number) => {
    const v = size.variants.find((x) => x.variant === name);
    const b = size.variants.find((x) => x.variant === base);
    if (v === undefined || b === undefined) return undefined;
    return `[${i + 1}] ${name}: ${(b.bytes[i]! / v.bytes[i]!).toFixed(1)}× fewer bytes than ${base}, ${(median(v.exporterMs[i]!) / median(b.exporterMs[i]!)).toFixed(2)}× its time`;
  };
  for (const size of sizes) {
    const notes = size.exporters.flatMap((_, i) => [gzip(size, 'gzip', 'plain', i), gzip(size, 'openmetrics-gzip', 'openmetrics', i)]).filter((n) => n !== undefined);
    if (notes.length > 0) lines.push('', `${size.agents}: ${notes.join('; ')}.`);
    if (size.profile !== undefined) lines.push(`${size.agents}: CPU profile of [1]'s measured scrapes: ${size.profile}`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  let options: ScrapeOptions | 'help';
  try {
    options = parseScrapeOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench:scrape: ${error instanceof Error ? error.message : String(error)}\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  if (options === 'help') {
    process.stdout.write(usage());
    return;
  }
  const work = await mkdtemp(join(tmpdir(), 'agentconn-scrape-'));
  try {
    const sizes: SizeFigures[] = [];
    for (const agents of options.agents) sizes.push(await measureSize(options, agents, work));
    const report = scrapeReport(sizes, options);
    const dir = join(options.out, `scrape-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'scrape.json'), JSON.stringify({ options, machine: machineFacts(), sizes }, null, 2));
    await writeFile(join(dir, 'scrape.md'), report);
    process.stdout.write(report);
    progress(`results in ${dir}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`bench:scrape: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
}
