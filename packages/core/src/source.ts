import type { AgentLabels, LabelKey } from './metric.js';
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
   * Undefined: every current agent, as the seed's full scan does.
   */
  readonly connectedSince?: Date;
  /**
   * Set when the awaiting gauges and the timeouts counter are wanted: the source then also reports
   * `awaiting` (grouped by these label keys) and `timeouts` (from `connectedSince` on, like connections).
   */
  readonly awaiting?: { readonly labels: readonly LabelKey[] };
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
  /** With `query.awaiting`: every label set that has agents still waiting for their first connection. */
  readonly awaiting?: readonly AwaitingAgentGroup[];
  /**
   * With `query.awaiting`: agents whose connection timeout passed (at or after `connectedSince` when it is
   * given), whether they still wait or connected after the timeout.
   */
  readonly timeouts?: readonly AgentFirstConnectionTimeout[];
}

/** The agents of one label set that have not connected yet, on the source's clock. */
export interface AwaitingAgentGroup {
  /** The values of the requested label keys (other keys may be absent). */
  readonly labels: Readonly<Partial<AgentLabels>>;
  /** How many agents of this label set wait. */
  readonly count: number;
  /** How long the longest-waiting of them has waited, in seconds (0 when its creation is in the future). */
  readonly oldestWaitSeconds: number;
}

/**
 * A timeout is an event at `created_at + connection timeout`, which happened when the agent had not
 * connected by then (Coder's rule for the `timeout` status). It is counted once per agent.
 */
export interface AgentFirstConnectionTimeout {
  readonly agentId: string;
  /** `created_at` plus the agent's connection timeout (µs text, or a Date). */
  readonly timedOutAt: Instant;
  readonly labels: AgentLabels;
}

/**
 * What the poller drives. The core owns this interface; adapters (e.g. `@agentconn/kysely`) implement it.
 * Contract: returns the current agents of the latest build of non-deleted workspaces that are not
 * deleted and whose `first_connected_at` is set (agents with it unset may be returned; they are skipped).
 */
export interface FirstConnectionSource {
  listAgents(query: AgentQuery): Promise<AgentBatch>;
}
