/**
 * `pnpm bench:first-poll`: the first `--backfill all` poll (every connected current agent, one
 * observation each) on a kept bench database, as the exporter runs it at start: each poll in a fresh
 * Node process (cold JIT, as the exporter's first poll is), with a fresh MeterProvider and the View.
 * Variants in rotation, so that load on a shared machine hits them alike:
 *
 * - `now`: this checkout's poller over `createCoderAgentSource`;
 * - `before` (with `--baseline DIR`): the same from another built checkout, e.g. the commit before a change;
 * - `max-subquery`: this checkout with Coder PR #24179's `max(build_number)` form of the latest build.
 *
 * Each process also polls `--warm` more times (a fresh MeterProvider each), for the warm figures. And the two
 * timestamp parsers over the same rows' texts (the regular expression before, the character scanner now).
 * Medians of the rounds, ratios per round against the first variant.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as Core from '@agentconn/core';
import type * as KyselyPackage from '@agentconn/kysely';
import type * as Postgres from '@agentconn/kysely/postgres';
import type * as Sdk from '@opentelemetry/sdk-metrics';
import { median } from './stats.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const VARIANTS = ['now', 'before', 'max-subquery'] as const;
type Variant = (typeof VARIANTS)[number];

interface PollFigures {
  readonly wallMs: number;
  readonly cpuMs: number;
  /** Inside `source.listAgents`: the round trips, the server's work, `pg` parsing and the source's mapping. */
  readonly queryMs: number;
  readonly rows: number;
  readonly observed: number;
  readonly series: number;
  /** sha256 of the histogram's data points (attributes, bucket counts, count, sum, min, max), sorted: the same in every variant. */
  readonly histogram: string;
}

interface ChildResult {
  readonly cold: PollFigures;
  readonly warm: readonly PollFigures[];
  readonly rssMiB: number;
}

/** The modules of one checkout, loaded from its `dist/` (so a baseline checkout runs its own code). */
async function loadCheckout(root: string) {
  const load = (path: string) => import(pathToFileURL(join(root, path)).href);
  const core = (await load('packages/core/dist/index.js')) as typeof Core;
  const kysely = (await load('packages/kysely/dist/index.js')) as typeof KyselyPackage;
  const postgres = (await load('packages/kysely/dist/postgres.js')) as typeof Postgres;
  const sdk = (await load('packages/core/node_modules/@opentelemetry/sdk-metrics/dist/index.mjs')) as typeof Sdk;
  return { core, kysely, postgres, sdk };
}

/** One child process: a cold first poll, then `warm` more, each with a fresh MeterProvider. */
async function child(options: {
  root: string;
  variant: Variant;
  url: string;
  warm: number;
  labels: readonly string[] | undefined;
  cardinalityLimit: number | undefined;
}): Promise<ChildResult> {
  const { core, kysely, postgres, sdk } = await loadCheckout(options.root);
  const QUIET: Core.Logger = { debug() {}, info() {}, warn() {}, error() {} };
  class CollectingReader extends sdk.MetricReader {
    protected override onShutdown(): Promise<void> {
      return Promise.resolve();
    }
    protected override onForceFlush(): Promise<void> {
      return Promise.resolve();
    }
  }
  const db = postgres.createPostgresDb({ connectionString: options.url, max: 2 });
  const inner: Core.FirstConnectionSource =
    options.variant === 'max-subquery'
      ? {
          // The source's own mapping of rows, over the query with the latest build in the form before.
          async listAgents() {
            const rows = await db
              .transaction()
              .setAccessMode('read only')
              .execute((trx) => kysely.connectedAgentsQuery(trx, undefined, { latestBuild: 'max-subquery' }).execute());
            return {
              agents: rows.map((row) => ({
                agentId: row.agent_id,
                createdAt: row.created_at,
                firstConnectedAt: row.first_connected_at,
                labels: { template_name: row.template_name, agent_name: row.agent_name, username: row.username, workspace_name: row.workspace_name },
              })),
            };
          },
        }
      : kysely.createCoderAgentSource(db, { statementTimeoutMs: 600_000 });
  let queryMs = 0;
  const source: Core.FirstConnectionSource = {
    async listAgents(query) {
      const started = performance.now();
      try {
        return await inner.listAgents(query);
      } finally {
        queryMs = performance.now() - started;
      }
    },
  };
  const metricOptions = {
    ...(options.labels !== undefined && { labels: options.labels as Core.LabelKey[] }),
    ...(options.cardinalityLimit !== undefined && { cardinalityLimit: options.cardinalityLimit }),
  };
  async function firstPoll(): Promise<PollFigures> {
    const reader = new CollectingReader();
    const meterProvider = new sdk.MeterProvider({ readers: [reader], views: [core.firstConnectionView(metricOptions)] });
    const recorder = new core.FirstConnectionRecorder({ meterProvider, logger: QUIET, ...metricOptions });
    const poller = new core.FirstConnectionPoller({ source, recorder, meterProvider, logger: QUIET, backfill: 'all', timeoutMs: 600_000 });
    const cpu = process.cpuUsage();
    const started = performance.now();
    const result = await poller.tick();
    const wallMs = performance.now() - started;
    const used = process.cpuUsage(cpu);
    if (result.outcome !== 'success') throw result.error ?? new Error(result.outcome);
    // Not timed: what a scrape would see, to check that every variant records the same.
    const { resourceMetrics } = await reader.collect();
    const histogram = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === core.FIRST_CONNECTION_METRIC_NAME);
    await meterProvider.shutdown();
    // The sum rounded to 12 digits: the rows come in another order each time, and float addition is not associative.
    const points = (histogram?.dataPoints ?? [])
      .map((p) => {
        const value = p.value as Sdk.Histogram;
        return JSON.stringify([p.attributes, value.buckets.counts, value.count, Number(value.sum?.toPrecision(12)), value.min, value.max]);
      })
      .sort();
    return {
      wallMs,
      cpuMs: (used.user + used.system) / 1000,
      queryMs,
      rows: result.rowsRead,
      observed: result.observed,
      series: points.length,
      histogram: createHash('sha256').update(points.join('\n')).digest('hex').slice(0, 16),
    };
  }
  try {
    const cold = await firstPoll();
    const warm: PollFigures[] = [];
    for (let i = 0; i < options.warm; i++) warm.push(await firstPoll());
    return { cold, warm, rssMiB: process.memoryUsage.rss() / 2 ** 20 };
  } finally {
    await db.destroy();
  }
}

function runChild(args: readonly string[]): Promise<ChildResult> {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code !== 0) reject(new Error(`child ${args.join(' ')} exited with ${code}`));
      else resolvePromise(JSON.parse(out) as ChildResult);
    });
  });
}

/** The parser before (a regular expression and Date.UTC), kept here as the baseline. */
const REGEX =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)$/;
function regexMicros(value: string): number | undefined {
  const match = REGEX.exec(value.trim());
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s, fraction = '', zone = 'Z'] = match;
  const day = Number(d);
  const month = Number(mo);
  const ms = Date.UTC(Number(y), month - 1, day, Number(h), Number(mi), Number(s));
  const check = new Date(ms);
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return undefined;
  const micros = Number((fraction + '000000').slice(0, 6));
  const digits = zone === 'Z' || zone === 'z' ? '' : zone.slice(1).replaceAll(':', '');
  const offset = digits === '' ? 0 : (zone.startsWith('-') ? -1 : 1) * (Number(digits.slice(0, 2)) * 3600 + Number(digits.slice(2, 4) || '0') * 60);
  return ms * 1000 + micros - offset * 1_000_000;
}

function parseAll(texts: readonly string[], parse: (text: string) => number | undefined): number {
  const started = performance.now();
  let sum = 0;
  for (const text of texts) sum += parse(text) ?? 0;
  if (sum === 0) throw new Error('nothing parsed');
  return performance.now() - started;
}

async function timestampParsers(url: string, rounds: number): Promise<string> {
  const { core, kysely, postgres } = await loadCheckout(REPO);
  const db = postgres.createPostgresDb({ connectionString: url, max: 2 });
  try {
    const { agents } = await kysely.createCoderAgentSource(db, { statementTimeoutMs: 600_000 }).listAgents({ signal: new AbortController().signal });
    const texts = agents.flatMap((a) => [String(a.createdAt), String(a.firstConnectedAt)]);
    const regex: number[] = [];
    const scanner: number[] = [];
    for (let round = 0; round < rounds; round++) {
      regex.push(parseAll(texts, regexMicros));
      scanner.push(parseAll(texts, (t) => core.toEpochMicros(t)));
    }
    return `Timestamp parsing of the same ${texts.length} texts: regular expression ${median(regex).toFixed(1)} ms, scanner ${median(scanner).toFixed(1)} ms (ratio ${median(scanner.map((s, i) => s / regex[i]!)).toFixed(2)}).`;
  } finally {
    await db.destroy();
  }
}

const HELP = `usage: pnpm bench:first-poll [--database-url URL] [--rounds N] [--warm N] [--baseline DIR] [--variants LIST] [--labels LIST]
  --database-url URL  a kept bench database (default postgres://postgres@127.0.0.1:5432/agentconn_bench_100000, or DATABASE_URL)
  --rounds N          rounds; each runs every variant once, in rotation, each in a fresh process (default 5)
  --warm N            polls after the cold one in each process, for the warm figures (default 2)
  --baseline DIR      a built checkout of the code before (git archive <commit> | tar -x; pnpm install; pnpm exec tsc -b): the variant 'before'
  --variants LIST     of ${VARIANTS.join(', ')} (default: now, before if --baseline, max-subquery); the first is the ratios' baseline
  --labels LIST       the histogram's labels (default the exporter's, template_name,agent_name)
  --cardinality-limit N  the histogram's (default 50000); above the label sets for a histogram that does not depend
                      on the rows' order (which sets fit under the limit does), so that the variants' hashes can agree
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/agentconn_bench_100000' },
      rounds: { type: 'string', default: '5' },
      warm: { type: 'string', default: '2' },
      baseline: { type: 'string' },
      variants: { type: 'string' },
      labels: { type: 'string' },
      'cardinality-limit': { type: 'string' },
      child: { type: 'boolean', default: false },
      root: { type: 'string' },
      variant: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const url = values['database-url'];
  const labels = values.labels?.split(',').filter((l) => l !== '');
  const count = (name: 'rounds' | 'warm', min: number): number => {
    const n = Number(values[name]);
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${values[name]}`);
    return n;
  };
  const warm = count('warm', 0);
  const cardinalityLimit = values['cardinality-limit'] === undefined ? undefined : Number(values['cardinality-limit']);
  if (cardinalityLimit !== undefined && !(Number.isSafeInteger(cardinalityLimit) && cardinalityLimit >= 2)) {
    throw new Error(`--cardinality-limit must be an integer >= 2, got ${values['cardinality-limit']}`);
  }
  if (values.child) {
    const result = await child({ root: values.root ?? REPO, variant: values.variant as Variant, url, warm, labels, cardinalityLimit });
    process.stdout.write(JSON.stringify(result));
    return;
  }
  const rounds = count('rounds', 1);
  const baseline = values.baseline === undefined ? undefined : resolve(values.baseline);
  if (baseline !== undefined && !existsSync(join(baseline, 'packages', 'core', 'dist', 'index.js'))) {
    throw new Error(`--baseline ${baseline}: no packages/core/dist/index.js there (build it with pnpm exec tsc -b)`);
  }
  const variants = (values.variants?.split(',') ?? ['now', ...(baseline === undefined ? [] : ['before']), 'max-subquery']) as Variant[];
  for (const v of variants) {
    if (!VARIANTS.includes(v)) throw new Error(`--variants: unknown variant ${v}`);
    if (v === 'before' && baseline === undefined) throw new Error('--variants before needs --baseline DIR');
  }
  const figures = new Map<Variant, ChildResult[]>(variants.map((v) => [v, []]));
  for (let round = 0; round < rounds; round++) {
    // Each variant in each position in turn.
    const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
    for (const variant of order) {
      const root = variant === 'before' ? baseline! : REPO;
      const args = ['--root', root, '--variant', variant, '--database-url', url, '--warm', String(warm), ...(values.labels === undefined ? [] : ['--labels', values.labels]),
        ...(cardinalityLimit === undefined ? [] : ['--cardinality-limit', String(cardinalityLimit)]),
      ];
      const result = await runChild(args);
      figures.get(variant)!.push(result);
      const c = result.cold;
      const w = result.warm.length === 0 ? '' : `; warm wall ${median(result.warm.map((f) => f.wallMs)).toFixed(0)} ms`;
      process.stderr.write(
        `round ${round + 1} ${variant}: cold wall ${c.wallMs.toFixed(0)} ms (query ${c.queryMs.toFixed(0)}), cpu ${c.cpuMs.toFixed(0)} ms, rows ${c.rows}, observed ${c.observed}, series ${c.series}${w}\n`,
      );
    }
  }
  const first = variants[0]!;
  const ratio = (variant: Variant, pick: (r: ChildResult) => number): number =>
    median(figures.get(variant)!.map((r, i) => pick(r) / pick(figures.get(first)![i]!)));
  const warmWall = (r: ChildResult): number => median(r.warm.map((f) => f.wallMs));
  const lines = [
    `First \`--backfill all\` poll, ${figures.get(first)![0]!.cold.rows} connected current agents, labels ${labels?.join(',') ?? 'template_name,agent_name (default)'}${cardinalityLimit === undefined ? '' : `, cardinality limit ${cardinalityLimit}`}; ${rounds} rounds, the variants in rotation, each poll in a fresh process (cold) and then ${warm} more in it (warm). Medians; ratios are medians of per-round ratios against \`${first}\`:`,
    '',
    `| variant | cold wall ms | query ms | after the query ms | CPU ms | wall / ${first} |${warm > 0 ? ` warm wall ms | warm wall / ${first} |` : ''} rows | observed | series | histogram |`,
    `|---|---:|---:|---:|---:|---:|${warm > 0 ? '---:|---:|' : ''}---:|---:|---:|---|`,
  ];
  for (const variant of variants) {
    const runs = figures.get(variant)!;
    const m = (pick: (f: PollFigures) => number): string => median(runs.map((r) => pick(r.cold))).toFixed(0);
    const c = runs[0]!.cold;
    lines.push(
      `| ${variant} | ${m((f) => f.wallMs)} | ${m((f) => f.queryMs)} | ${m((f) => f.wallMs - f.queryMs)} | ${m((f) => f.cpuMs)} | ${ratio(variant, (r) => r.cold.wallMs).toFixed(2)} |` +
        (warm > 0 ? ` ${median(runs.map(warmWall)).toFixed(0)} | ${ratio(variant, warmWall).toFixed(2)} |` : '') +
        ` ${c.rows} | ${c.observed} | ${c.series} | \`${c.histogram}\` |`,
    );
  }
  lines.push('', await timestampParsers(url, rounds));
  process.stdout.write(lines.join('\n') + '\n');
  // Every poll of every variant against the first variant's first: the same rows, observations and histogram.
  const reference = figures.get(first)![0]!.cold;
  for (const variant of variants) {
    for (const [round, result] of figures.get(variant)!.entries()) {
      for (const poll of [result.cold, ...result.warm]) {
        if (poll.rows !== reference.rows || poll.observed !== reference.observed || poll.histogram !== reference.histogram) {
          process.stderr.write(
            `bench:first-poll: ${variant} in round ${round + 1} read or recorded differently from ${first} (histogram ${poll.histogram} against ${reference.histogram}; with more label sets than the cardinality limit, which sets fit depends on the rows' order)\n`,
          );
          process.exitCode = 1;
        }
      }
    }
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:first-poll: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
