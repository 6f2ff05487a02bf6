/**
 * EXPLAIN (ANALYZE, BUFFERS) of each mode's query, as the mode runs it at the end of its ticks (the
 * incremental query with its last lower bound), saved as PostgreSQL's text and JSON and summarised.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { awaitingAgentsQuery, changedAgentsQuery, connectedAgentsQuery, workspaceAgentsForMetricsQuery, type CoderDatabase } from '@agentconn/kysely';
import { CompiledQuery, type Kysely } from 'kysely';
import type { BenchMode } from './options.js';

export interface ExplainSummary {
  readonly mode: BenchMode;
  /** Which of the mode's statements: `agents` (the connected agents), `awaiting` or `timeouts`. */
  readonly query: string;
  readonly since: string | null;
  readonly executionMs: number;
  readonly planningMs: number;
  readonly rows: number;
  /** Shared buffers found in PostgreSQL's cache / read from the OS, over the whole plan. */
  readonly sharedHit: number;
  readonly sharedRead: number;
  /** How `workspace_agents` is read, e.g. `Seq Scan` or `Index Scan using …`. */
  readonly agentsAccess: string;
  /** Rows of `workspace_agents` read and thrown away by a filter. */
  readonly agentsRowsRemoved: number;
  /** Node types of the plan, each with its count, e.g. `Hash Join×4`. */
  readonly nodes: string;
  readonly workersLaunched: number;
  readonly jit: boolean;
  readonly textFile: string;
  readonly jsonFile: string;
}

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly 'Index Name'?: string;
  readonly 'Actual Rows'?: number;
  readonly 'Actual Loops'?: number;
  readonly 'Rows Removed by Filter'?: number;
  readonly 'Shared Hit Blocks'?: number;
  readonly 'Shared Read Blocks'?: number;
  readonly 'Workers Launched'?: number;
  readonly Plans?: readonly PlanNode[];
}

interface ExplainJson {
  readonly Plan: PlanNode;
  readonly 'Planning Time': number;
  readonly 'Execution Time': number;
  readonly JIT?: unknown;
}

/** `Seq Scan`, `Index Scan using x`, or `Bitmap Heap Scan using x` (the index of its Bitmap Index Scan). */
function describeAccess(node: PlanNode): string {
  const indexes: string[] = [];
  const collect = (n: PlanNode): void => {
    if (n['Index Name'] !== undefined) indexes.push(n['Index Name']);
    if (n['Node Type'].startsWith('Bitmap')) for (const child of n.Plans ?? []) collect(child);
  };
  collect(node);
  return indexes.length === 0 ? node['Node Type'] : `${node['Node Type']} using ${indexes.join(', ')}`;
}

export function modeQuery(db: Kysely<CoderDatabase>, mode: BenchMode, since: Date | undefined, excludeAgentIds: readonly string[] = []): CompiledQuery {
  switch (mode) {
    case 'seed':
      return workspaceAgentsForMetricsQuery(db).compile();
    case 'full-scan':
      return connectedAgentsQuery(db).compile();
    case 'incremental-reread':
    case 'incremental':
    case 'incremental-index':
      return connectedAgentsQuery(db, since, { excludeAgentIds }).compile();
    case 'incremental-awaiting':
    case 'incremental-index-awaiting':
      // One statement for the connections and the new waiting agents (the start tick: the full scan).
      return since === undefined
        ? connectedAgentsQuery(db, undefined, { timeouts: { fallbackTimeoutSeconds: 0 } }).compile()
        : changedAgentsQuery(db, since, { excludeAgentIds, fallbackTimeoutSeconds: 0 }).compile();
  }
}

/** Each statement a mode's tick runs after the clock: the agents query (for `*-awaiting` with the new waiting agents), and the reconciliation. */
export function modeQueries(
  db: Kysely<CoderDatabase>,
  mode: BenchMode,
  since: Date | undefined,
  excludeAgentIds: readonly string[] = [],
): [string, CompiledQuery][] {
  const queries: [string, CompiledQuery][] = [['agents', modeQuery(db, mode, since, excludeAgentIds)]];
  if (mode.endsWith('-awaiting')) {
    // Once per reconciliation interval, in its own transaction: every waiting agent. Beside it, for the
    // comparison, the same rows read with the per-agent lookups the incremental read uses (the plan
    // the reconciliation had before).
    queries.push(['awaiting reconciliation', awaitingAgentsQuery(db).compile()]);
    queries.push(['awaiting reconciliation by lookups', awaitingAgentsQuery(db, { createdSince: new Date(Date.UTC(1, 0, 1)) }).compile()]);
  }
  return queries;
}

export async function explainMode(
  db: Kysely<CoderDatabase>,
  mode: BenchMode,
  since: string | null,
  dir: string,
  fileStem: string,
  excludeAgentIds: readonly string[] = [],
): Promise<ExplainSummary[]> {
  const summaries: ExplainSummary[] = [];
  for (const [name, query] of modeQueries(db, mode, since === null ? undefined : new Date(since), excludeAgentIds)) {
    summaries.push(await explainQuery(db, mode, name, query, since, dir, name === 'agents' ? fileStem : `${fileStem}-${name.replaceAll(' ', '-')}`));
  }
  return summaries;
}

async function explainQuery(
  db: Kysely<CoderDatabase>,
  mode: BenchMode,
  name: string,
  query: CompiledQuery,
  since: string | null,
  dir: string,
  fileStem: string,
): Promise<ExplainSummary> {
  const json = await db.executeQuery<{ 'QUERY PLAN': ExplainJson[] }>(
    CompiledQuery.raw(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${query.sql}`, [...query.parameters]),
  );
  const text = await db.executeQuery<{ 'QUERY PLAN': string }>(
    CompiledQuery.raw(`EXPLAIN (ANALYZE, BUFFERS) ${query.sql}`, [...query.parameters]),
  );
  const plan = json.rows[0]!['QUERY PLAN'][0]!;
  const textFile = join(dir, `${fileStem}.txt`);
  const jsonFile = join(dir, `${fileStem}.json`);
  const header = `-- ${mode} (${name})${since === null ? '' : `, connectedSince ${since}`}\n-- ${query.sql}\n-- parameters: ${JSON.stringify(query.parameters)}\n\n`;
  await writeFile(textFile, header + text.rows.map((r) => r['QUERY PLAN']).join('\n') + '\n');
  await writeFile(jsonFile, JSON.stringify({ mode, since, sql: query.sql, parameters: query.parameters, plan: json.rows[0]!['QUERY PLAN'] }, null, 2) + '\n');

  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode): void => {
    nodes.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan.Plan);
  const agentScans = nodes.filter((n) => n['Relation Name'] === 'workspace_agents');
  const counts = new Map<string, number>();
  for (const n of nodes) counts.set(n['Node Type'], (counts.get(n['Node Type']) ?? 0) + 1);
  return {
    mode,
    query: name,
    since,
    executionMs: plan['Execution Time'],
    planningMs: plan['Planning Time'],
    rows: plan.Plan['Actual Rows'] ?? 0,
    sharedHit: plan.Plan['Shared Hit Blocks'] ?? 0,
    sharedRead: plan.Plan['Shared Read Blocks'] ?? 0,
    agentsAccess: agentScans.map(describeAccess).join(' + '),
    agentsRowsRemoved: agentScans.reduce((sum, n) => sum + (n['Rows Removed by Filter'] ?? 0) * (n['Actual Loops'] ?? 1), 0),
    nodes: [...counts].map(([type, n]) => (n === 1 ? type : `${type}×${n}`)).join(', '),
    workersLaunched: nodes.reduce((sum, n) => sum + (n['Workers Launched'] ?? 0), 0),
    jit: plan.JIT !== undefined,
    textFile,
    jsonFile,
  };
}
