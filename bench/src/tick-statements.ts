/**
 * `pnpm bench:tick-statements`: a tick's statements with the awaiting metrics off and on, executed in
 * rotation on a kept bench database (`--keep`), so load on a shared machine hits them alike. Variants:
 * `off` (the connected agents since the lower bound), `on-two-scans` (that, then the waiting agents
 * created since the bound: the form before), `on-one-scan` (`changedAgentsQuery`, both in one pass).
 * The lower bound is 6 minutes (interval + overlap) before the newest first connection. Median of the rounds.
 */
import { awaitingAgentsQuery, changedAgentsQuery, connectedAgentsQuery, type CoderDatabase } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { sql, type Kysely } from 'kysely';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/agentconn_bench_100000' },
    rounds: { type: 'string', default: '7' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('pnpm bench:tick-statements [--database-url URL] [--rounds N]   (a database kept by pnpm bench --keep)');
  process.exit(0);
}
const rounds = Number(values.rounds);
if (!Number.isSafeInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be a positive integer, got ${values.rounds}`);

const db: Kysely<CoderDatabase> = createPostgresDb({ connectionString: values['database-url'] });
try {
  const newest = await sql<{ since: Date | null }>`SELECT max(first_connected_at) - interval '6 minutes' AS since FROM workspace_agents`.execute(db);
  const sinceValue = newest.rows[0]?.since;
  if (sinceValue === null || sinceValue === undefined) throw new Error('the database has no connected agents: generate it with pnpm bench --keep');
  const since = new Date(sinceValue);
  const timeouts = { fallbackTimeoutSeconds: 0 };
  const variants: Record<string, () => Promise<unknown>> = {
    off: () => connectedAgentsQuery(db, since).execute(),
    'on-two-scans': async () => {
      await connectedAgentsQuery(db, since, { timeouts }).execute();
      await awaitingAgentsQuery(db, { createdSince: since, ...timeouts }).execute();
    },
    'on-one-scan': () => changedAgentsQuery(db, since, timeouts).execute(),
  };
  const times = new Map<string, number[]>(Object.keys(variants).map((name) => [name, []]));
  for (const run of Object.values(variants)) await run(); // warm-up
  for (let round = 0; round < rounds; round++) {
    for (const [name, run] of Object.entries(variants)) {
      const started = performance.now();
      await run();
      times.get(name)?.push(performance.now() - started);
    }
  }
  const baseline = median(times.get('off') ?? []);
  console.log(`| variant | median ms | / off | rounds (ms) |\n|---|---:|---:|---|`);
  for (const [name, list] of times) {
    const m = median(list);
    console.log(`| ${name} | ${m.toFixed(1)} | ${(m / baseline).toFixed(2)} | ${list.map((t) => t.toFixed(0)).join(' ')} |`);
  }
} finally {
  await db.destroy();
}
