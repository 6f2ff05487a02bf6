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
  /**
   * Only when the query asked for `awaiting`: the instant of the connection timeout this agent passed
   * before it connected (`created_at` + timeout, when it connected after it), else null.
   */
  readonly timedOutAt?: Instant | null;
}

/**
 * At most this many ids go in `AgentQuery.excludeAgentIds` (the most recently handled kept): PostgreSQL
 * plans a constant array at about 5 µs per element, so 10 000 ids cost ~50 ms of planning, still less
 * than joining and returning the same rows again. Past it the rest of the overlap is read as before;
 * any subset is correct.
 */
export const MAX_EXCLUDED_AGENT_IDS = 10_000;

export interface AgentQuery {
  /**
   * Only agents with `first_connected_at >= connectedSince` are needed (incremental discovery).
   * Undefined: every current agent, as Coder PR #24179's full scan does.
   */
  readonly connectedSince?: Date;
  /**
   * Set when the awaiting gauges and the timeouts counter are wanted. The source then also reports
   * `awaitingAgents` (with `full`, every waiting agent; otherwise those created at or after
   * `connectedSince`), `timeoutChecks` for the candidates, and `timedOutAt` on connected agents.
   */
  readonly awaiting?: {
    /** A reconciliation: every waiting agent of the rule, so deleted or superseded ones drop out. */
    readonly full: boolean;
    /** Agent ids whose timeout may have passed; the source tells which of them still wait. */
    readonly timeoutCandidates: readonly string[];
  };
  /**
   * Agents the poller has already handled that `connectedSince` would return again (the overlap
   * window). A source may leave them out, so that a tick reads only what is new; returning them is
   * correct too (the poller skips them). Only with `connectedSince`; at most `MAX_EXCLUDED_AGENT_IDS`.
   */
  readonly excludeAgentIds?: readonly string[];
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
  /**
   * A source that is a replica (e.g. a PostgreSQL hot standby) holds the rows committed up to this
   * instant of the source's clock only (`pg_last_xact_replay_timestamp()`): the watermark never passes
   * it. `null`: nothing is known to be replayed yet, the watermark stays where it is. Undefined: every
   * row committed by `sourceTime` is visible (a primary).
   */
  readonly visibleUntil?: Date | null;
  /**
   * A replica's replay lag in ms: how old its data is while received changes wait to be replayed, 0
   * when it has replayed all it received. Undefined: not a replica.
   */
  readonly replayLagMs?: number;
  /** With `query.awaiting`: waiting agents (all of them when `awaitingComplete`). */
  readonly awaitingAgents?: readonly AwaitingAgent[];
  /** True when `awaitingAgents` is every waiting agent (the query asked for `full`). */
  readonly awaitingComplete?: boolean;
  /**
   * The query asked for `full` and the source could not read every waiting agent (the rest of the batch
   * holds): why, without secrets. The recorder asks for the reconciliation again at the next tick.
   */
  readonly awaitingReconcileError?: string;
  /**
   * With `query.awaiting`: the candidates that still wait (current, not connected), with their timeout
   * and whether it has passed on the source's clock. A candidate missing here no longer waits.
   */
  readonly timeoutChecks?: readonly AgentTimeoutCheck[];
}

/** An agent of the rule whose `first_connected_at` is still NULL. */
export interface AwaitingAgent {
  readonly agentId: string;
  readonly createdAt: Instant;
  /** `created_at` + its connection timeout, or null when it never times out. */
  readonly timedOutAt: Instant | null;
  /** Whether `timedOutAt` is before the source's clock (strictly, as Coder's rule). */
  readonly due?: boolean;
  readonly labels: AgentLabels;
}

export interface AgentTimeoutCheck extends AgentFirstConnectionTimeout {
  /** Whether `timedOutAt` is before the source's clock (strictly, as Coder's rule). */
  readonly due: boolean;
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
