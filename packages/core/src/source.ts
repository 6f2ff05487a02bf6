import type { AgentLabels } from './metric.js';
import type { Instant } from './timestamp.js';

/** One agent as a source reports it: the two timestamps and the label values. */
export interface AgentFirstConnection {
  /** The agent's id (a UUID in Coder). Observe-once is keyed by it. */
  readonly agentId: string;
  /** `workspace_agents.created_at`. Text keeps PostgreSQL's microseconds; a Date keeps milliseconds. */
  readonly createdAt: Instant;
  /** `workspace_agents.first_connected_at`; `null` while the agent has never connected. */
  readonly firstConnectedAt: Instant | null;
  readonly labels: AgentLabels;
}

export interface AgentQuery {
  /**
   * Only agents with `first_connected_at >= connectedSince` are needed (incremental discovery).
   * Undefined: every current agent, as Coder PR #24179's full scan does.
   */
  readonly connectedSince?: Date;
  /** Aborted when the tick's timeout passes or the poller stops; a source should cancel its query. */
  readonly signal: AbortSignal;
}

export interface AgentBatch {
  readonly agents: readonly AgentFirstConnection[];
  /**
   * The source's own clock at the time of the query (e.g. PostgreSQL `now()`), so that the incremental
   * watermark never depends on this process's clock. Undefined: the poller uses its own clock.
   */
  readonly sourceTime?: Date;
}

/**
 * What the poller drives. The core owns this interface; adapters (e.g. `@agentconn/kysely`) implement it.
 * Contract: returns the current agents of the latest build of non-deleted workspaces that are not
 * deleted and whose `first_connected_at` is set (agents with it unset may be returned; they are skipped).
 */
export interface FirstConnectionSource {
  listAgents(query: AgentQuery): Promise<AgentBatch>;
}
