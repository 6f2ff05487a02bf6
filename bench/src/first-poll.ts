/**
 * `pnpm bench:first-poll`: the first `--backfill all` poll (every connected current agent, one
 * observation each) on a kept bench database, the variants in rotation so that load on a shared
 * machine hits them alike. Variants: `poll` (the poller with `createCoderAgentSource`, as the exporter
 * runs it), `poll-max-subquery` (the same poller over the same query with Coder PR #24179's
 * `max(build_number)` subquery for the latest build, the form before), and the two timestamp parsers over the same rows' texts
 * (the regular expression before, the character scanner now). Median of the rounds, ratios per round.
 */
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  firstConnectionView,
  toEpochMicros,
  type AgentFirstConnection,
  type FirstConnectionSource,
  type Logger,
} from '@agentconn/core';
import { connectedAgentsQuery, createCoderAgentSource, type CoderDatabase, type LatestBuildForm } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import type { Kysely } from 'kysely';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const QUIET: Logger = { debug() {}, info() {}, warn() {}, error() {} };

class CollectingReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

/** The source with the latest build written in the given form (the source's own mapping of rows). */
function sourceWith(db: Kysely<CoderDatabase>, form: LatestBuildForm): FirstConnectionSource {
  return {
    async listAgents() {
      const rows = await db.transaction().setAccessMode('read only').execute((trx) => connectedAgentsQuery(trx, undefined, { latestBuild: form }).execute());
      const agents: AgentFirstConnection[] = rows.map((row) => ({
        agentId: row.agent_id,
        createdAt: row.created_at,
        firstConnectedAt: row.first_connected_at,
        labels: { template_name: row.template_name, agent_name: row.agent_name, username: row.username, workspace_name: row.workspace_name },
      }));
      return { agents };
    },
  };
}

interface PollFigures {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly rows: number;
  readonly observed: number;
}

async function firstPoll(source: FirstConnectionSource): Promise<PollFigures> {
  const meterProvider = new MeterProvider({ readers: [new CollectingReader()], views: [firstConnectionView()] });
  const recorder = new FirstConnectionRecorder({ meterProvider, logger: QUIET });
  const poller = new FirstConnectionPoller({ source, recorder, meterProvider, logger: QUIET, backfill: 'all', timeoutMs: 600_000 });
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await poller.tick();
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  await meterProvider.shutdown();
  if (result.outcome !== 'success') throw result.error ?? new Error(result.outcome);
  return { wallMs, cpuMs: (used.user + used.system) / 1000, rows: result.rowsRead, observed: result.observed };
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/agentconn_bench_100000' },
      rounds: { type: 'string', default: '5' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: pnpm bench:first-poll [--database-url URL (a kept bench database, default agentconn_bench_100000)] [--rounds N (default 5)]\n');
    return;
  }
  const rounds = Number(values.rounds);
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
  const db = createPostgresDb({ connectionString: values['database-url'], max: 2 });
  try {
    const variants = {
      poll: createCoderAgentSource(db, { statementTimeoutMs: 600_000 }),
      'poll-max-subquery': sourceWith(db, 'max-subquery'),
    } as const;
    const { agents } = await variants.poll.listAgents({ signal: new AbortController().signal });
    const texts = agents.flatMap((a) => [String(a.createdAt), String(a.firstConnectedAt)]);
    const figures: Record<string, PollFigures[]> = { poll: [], 'poll-max-subquery': [] };
    const parse: Record<'regex' | 'scanner', number[]> = { regex: [], scanner: [] };
    await firstPoll(variants.poll); // warm-up: JIT, buffers
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['poll', 'poll-max-subquery'] as const) : (['poll-max-subquery', 'poll'] as const);
      for (const name of order) {
        const f = await firstPoll(variants[name]);
        figures[name]!.push(f);
        process.stderr.write(`round ${round + 1} ${name}: wall ${f.wallMs.toFixed(0)} ms, cpu ${f.cpuMs.toFixed(0)} ms, rows ${f.rows}, observed ${f.observed}\n`);
      }
      parse.regex.push(parseAll(texts, regexMicros));
      parse.scanner.push(parseAll(texts, (t) => toEpochMicros(t)));
    }
    const lines = [
      `First \`--backfill all\` poll, ${agents.length} connected current agents, ${rounds} rounds in rotation (median; ratio = median of per-round ratios):`,
      '',
      '| variant | wall ms | CPU ms | rows | observed | wall / max-subquery |',
      '|---|---:|---:|---:|---:|---:|',
    ];
    for (const name of ['poll-max-subquery', 'poll'] as const) {
      const runs = figures[name]!;
      const ratio = median(runs.map((f, i) => f.wallMs / figures['poll-max-subquery']![i]!.wallMs));
      lines.push(
        `| ${name} | ${median(runs.map((f) => f.wallMs)).toFixed(0)} | ${median(runs.map((f) => f.cpuMs)).toFixed(0)} | ${runs[0]!.rows} | ${runs[0]!.observed} | ${ratio.toFixed(2)} |`,
      );
    }
    lines.push('', `Timestamp parsing of the same ${texts.length} texts: regular expression ${median(parse.regex).toFixed(1)} ms, scanner ${median(parse.scanner).toFixed(1)} ms (ratio ${median(parse.scanner.map((s, i) => s / parse.regex[i]!)).toFixed(2)}).`);
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await db.destroy();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:first-poll: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
