import type { Histogram } from '@opentelemetry/api';
import type { Logger } from '@agentconn/core';
import { workspaceAgentsForMetricsQuery, type CoderDatabase } from '@agentconn/kysely';
import type { Kysely } from 'kysely';

export interface SeedTickResult {
  readonly rowsRead: number;
  readonly observed: number;
  readonly dropped: number;
  readonly queryMs: number;
}

/**
 * What Coder PR #24179 does inside coderd's `Agents()` loop, written in this process's language so its cost
 * is comparable: Coder's `GetWorkspaceAgentsForMetrics` (every column of every current agent, connected
 * or not; the driver parses timestamps to Dates), observe each connected agent not in the observed map,
 * then prune the map to a set of the ids fetched this tick (Coder PR #24179's two maps). Negative durations
 * are dropped and remembered, as Coder PR #24179 does after review.
 */
export class SeedEquivalentLoop {
  readonly #db: Kysely<CoderDatabase>;
  readonly #histogram: Histogram;
  readonly #logger: Logger;
  /** Go: `observedFirstConnection map[uuid.UUID]struct{}`. */
  readonly #observed = new Map<string, true>();

  constructor(db: Kysely<CoderDatabase>, histogram: Histogram, logger: Logger) {
    this.#db = db;
    this.#histogram = histogram;
    this.#logger = logger;
  }

  get trackedAgents(): number {
    return this.#observed.size;
  }

  /** Forgets every id (the bench's probe of what the map retains). */
  clear(): void {
    this.#observed.clear();
  }

  async tick(): Promise<SeedTickResult> {
    const started = performance.now();
    const rows = await workspaceAgentsForMetricsQuery(this.#db).execute();
    const queryMs = performance.now() - started;
    let observed = 0;
    let dropped = 0;
    // Go: `currentAgentIDs`, built each tick to prune the observed map.
    const current = new Set<string>();
    for (const row of rows) {
      current.add(row.id);
      if (row.first_connected_at === null) continue;
      if (this.#observed.has(row.id)) continue;
      this.#observed.set(row.id, true);
      const duration = (row.first_connected_at.getTime() - row.created_at.getTime()) / 1000;
      if (duration < 0) {
        dropped++;
        this.#logger.warn('negative agent first connection duration (possible clock skew); dropping sample', {
          agent_id: row.id,
          duration_s: duration,
        });
        continue;
      }
      this.#histogram.record(duration, {
        template_name: row.template_name,
        agent_name: row.name,
        username: row.owner_username,
        workspace_name: row.workspace_name,
      });
      observed++;
    }
    for (const id of this.#observed.keys()) {
      if (!current.has(id)) this.#observed.delete(id);
    }
    return { rowsRead: rows.length, observed, dropped, queryMs };
  }
}
