import { parseArgs } from 'node:util';

/** The discovery modes the bench compares. `full-scan` is the baseline every ratio is taken against. */
export const MODES = ['seed', 'full-scan', 'incremental-reread', 'incremental', 'incremental-index', 'incremental-awaiting', 'incremental-index-awaiting'] as const;
export type BenchMode = (typeof MODES)[number];
export const BASELINE_MODE: BenchMode = 'full-scan';
export const DEFAULT_MODES: readonly BenchMode[] = ['full-scan', 'incremental-reread', 'incremental', 'incremental-index'];

export const MODE_DESCRIPTIONS: Readonly<Record<BenchMode, string>> = {
  seed: "loop equivalent to Coder PR #24179's: Coder's GetWorkspaceAgentsForMetrics (every column of every current agent, timestamps parsed to Date), a Map of observed ids and a Set of current ids to prune it, every tick",
  'full-scan': "FirstConnectionPoller mode full-scan, backfill all: every connected current agent every tick, observe-once Map pruned to the current ids (Coder PR #24179's rule; the baseline)",
  'incremental-reread': 'incremental as before excludeAgentIds: each query returns the whole overlap window again (the source is not told which agents were handled); the baseline of rows per tick',
  incremental: 'FirstConnectionPoller mode incremental (overlap 5 min, backfill from start; the agents handled in the overlap left out by id), no index on workspace_agents(first_connected_at), as on a stock Coder database',
  'incremental-index': 'incremental, with the opt-in index from createFirstConnectedAtIndex',
  'incremental-awaiting': 'incremental, plus the awaiting gauges and the timeouts counter (AwaitingAgentsRecorder, labels template_name and agent_name): the agents created since the last tick every tick, all waiting agents once per 10-minute reconciliation',
  'incremental-index-awaiting': 'incremental-awaiting, with the opt-in index on first_connected_at and the opt-in partial index on the waiting agents\' created_at (createAwaitingCreatedAtIndex)',
};

/** What one `pnpm bench` invocation measures. */
export interface BenchOptions {
  /** Population sizes: current agents, one per workspace. */
  readonly agents: readonly number[];
  /** Measured steady-state ticks per mode and run (after the start tick and the warm-up). */
  readonly ticks: number;
  /** Ticks after the start tick that are not measured (the overlap window filling up, JIT). */
  readonly warmup: number;
  /** New first connections per simulated minute: a fraction of the population when < 1, else a count. */
  readonly trickle: number;
  readonly runs: number;
  readonly modes: readonly BenchMode[];
  /** Results go to `<out>/<run id>/`. */
  readonly out: string;
  /** Server to create the bench databases on (any database of it; only its host and credentials are used). */
  readonly databaseUrl: string;
  /** Keep the generated databases (named `agentconn_bench_<agents>`). */
  readonly keep: boolean;
  /** Reuse a kept database generated with the same parameters instead of generating again. */
  readonly reuse: boolean;
  readonly seed: number;
  /** Simulated time between ticks. */
  readonly intervalMs: number;
  readonly overlapMs: number;
  /** `auto`: run the scrape benchmark when its script is present; `off`: never; `on`: fail without it. */
  readonly scrape: 'auto' | 'on' | 'off';
  readonly scrapeScript: string | undefined;
  /** Series counts for the scrape benchmark. Default: the population sizes up to 100 000. */
  readonly scrapeSizes: readonly number[] | undefined;
  /** Run the tick processes under `node --cpu-prof`, profiles in `<out>/<run id>/profiles`. */
  readonly cpuProf: boolean;
  /** Skip EXPLAIN (ANALYZE, BUFFERS). */
  readonly noExplain: boolean;
}

export const DEFAULTS = {
  agents: [10_000, 100_000],
  ticks: 20,
  trickle: 0.001,
  runs: 3,
  out: 'bench/results',
  seed: 1,
  intervalMs: 60_000,
  overlapMs: 300_000,
} as const;

export const HELP = `pnpm bench [options]: the poller's steady-state tick cost, ours against Coder PR #24179's full scan,
on freshly generated Coder databases on a real PostgreSQL server.

  --agents LIST        population sizes (workspaces, one agent each; 10k, 1M)  default ${DEFAULTS.agents.join(',')}
  --ticks N            measured ticks per mode and run                          default ${DEFAULTS.ticks}
  --warmup N           unmeasured ticks after the start tick                    default overlap/interval + 1 (6)
  --trickle X          first connections per simulated minute: a fraction of
                       the population if < 1 (0.001 = 0.1%), else a count       default ${DEFAULTS.trickle}
  --runs N             runs per mode; figures are medians over runs             default ${DEFAULTS.runs}
  --modes LIST         among ${MODES.join(', ')}
                                                                                default ${DEFAULT_MODES.join(',')}
  --out DIR            results go to DIR/<run id>/                              default ${DEFAULTS.out}
  --database-url URL   PostgreSQL server to create bench databases on           default $DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres
  --keep               keep the databases (named agentconn_bench_<agents>)
  --reuse              reuse a kept database with the same parameters (implies --keep)
  --seed N             generator seed                                           default ${DEFAULTS.seed}
  --interval-ms N      simulated time between ticks                             default ${DEFAULTS.intervalMs}
  --overlap-ms N       incremental overlap window                               default ${DEFAULTS.overlapMs}
  --scrape auto|on|off run the /metrics scrape benchmark (packages/exposition/bench/exposition.bench.mjs)
                       when present and add its figures                         default auto
  --scrape-script PATH another scrape benchmark script (same flags: --sizes, --json)
  --scrape-sizes LIST  series counts for the scrape benchmark                   default the sizes up to 100000
  --cpu-prof           profile the tick processes (node --cpu-prof) into DIR/<run id>/profiles
  --no-explain         skip EXPLAIN (ANALYZE, BUFFERS) of each mode's query
  --help

1M agents (about 11 minutes on 2 cores, 2.5 of them generating):  pnpm bench --agents 1M --runs 1
`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Parses the command line; throws a UsageError naming the bad flag. Returns undefined for --help. */
export function parseBenchArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): BenchOptions | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        agents: { type: 'string' },
        ticks: { type: 'string' },
        warmup: { type: 'string' },
        trickle: { type: 'string' },
        runs: { type: 'string' },
        modes: { type: 'string' },
        out: { type: 'string' },
        'database-url': { type: 'string' },
        keep: { type: 'boolean' },
        reuse: { type: 'boolean' },
        seed: { type: 'string' },
        'interval-ms': { type: 'string' },
        'overlap-ms': { type: 'string' },
        scrape: { type: 'string' },
        'scrape-script': { type: 'string' },
        'scrape-sizes': { type: 'string' },
        'cpu-prof': { type: 'boolean' },
        'no-explain': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const v = parsed.values;
  if (v.help) return undefined;
  const intervalMs = integer('--interval-ms', v['interval-ms'], DEFAULTS.intervalMs, 1);
  const overlapMs = integer('--overlap-ms', v['overlap-ms'], DEFAULTS.overlapMs, 0);
  const modes = v.modes === undefined ? DEFAULT_MODES : list('--modes', v.modes).map((m) => mode(m));
  const scrape = v.scrape ?? 'auto';
  if (scrape !== 'auto' && scrape !== 'on' && scrape !== 'off') throw new UsageError(`--scrape must be auto, on or off, got "${scrape}"`);
  const trickle = number('--trickle', v.trickle, DEFAULTS.trickle);
  if (!(trickle > 0) || (trickle >= 1 && !Number.isInteger(trickle))) {
    throw new UsageError(`--trickle must be a fraction in (0, 1) or a whole count >= 1, got ${String(v.trickle)}`);
  }
  return {
    agents: v.agents === undefined ? DEFAULTS.agents : list('--agents', v.agents).map((a) => integer('--agents', withSuffix(a), 0, 100)),
    ticks: integer('--ticks', v.ticks, DEFAULTS.ticks, 1),
    warmup: integer('--warmup', v.warmup, Math.ceil(overlapMs / intervalMs) + 1, 0),
    trickle,
    runs: integer('--runs', v.runs, DEFAULTS.runs, 1),
    modes: [...new Set(modes)],
    out: v.out ?? DEFAULTS.out,
    databaseUrl: v['database-url'] ?? env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    keep: Boolean(v.keep) || Boolean(v.reuse),
    reuse: Boolean(v.reuse),
    seed: integer('--seed', v.seed, DEFAULTS.seed, 0),
    intervalMs,
    overlapMs,
    scrape,
    scrapeScript: v['scrape-script'],
    scrapeSizes:
      v['scrape-sizes'] === undefined ? undefined : list('--scrape-sizes', v['scrape-sizes']).map((s) => integer('--scrape-sizes', withSuffix(s), 0, 1)),
    cpuProf: Boolean(v['cpu-prof']),
    noExplain: Boolean(v['no-explain']),
  };
}

/** New first connections per tick for a population. */
export function tricklePerTick(trickle: number, agents: number): number {
  return trickle >= 1 ? trickle : Math.max(1, Math.round(trickle * agents));
}

/** `10k` → `10000`, `1M` → `1000000`; anything else unchanged (and checked by the caller). */
function withSuffix(text: string): string {
  const match = /^(\d+(?:\.\d+)?)([kKmM])$/.exec(text.trim());
  if (!match) return text;
  return String(Math.round(Number(match[1]) * (match[2]!.toLowerCase() === 'k' ? 1e3 : 1e6)));
}

function list(flag: string, text: string): string[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`${flag} needs at least one value`);
  return items;
}

function mode(text: string): BenchMode {
  if ((MODES as readonly string[]).includes(text)) return text as BenchMode;
  throw new UsageError(`unknown mode "${text}": modes are ${MODES.join(', ')}`);
}

function number(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text.replaceAll('_', ''));
  if (!Number.isFinite(value)) throw new UsageError(`${flag} must be a number, got "${text}"`);
  return value;
}

function integer(flag: string, text: string | undefined, fallback: number, min: number): number {
  const value = number(flag, text, fallback);
  if (!Number.isSafeInteger(value) || value < min) throw new UsageError(`${flag} must be an integer >= ${min}, got "${String(text)}"`);
  return value;
}
