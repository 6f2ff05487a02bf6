import {
  settleOrAbort,
  toEpochMicros,
  type AgentBatch,
  type AgentFirstConnection,
  type AgentLabels,
  type AgentQuery,
  type AgentTimeoutCheck,
  type AwaitingAgent,
  type FirstConnectionSource,
} from '@agentconn/core';
import { PGliteAdapter, type Kysely } from 'kysely';
import { connectedAgentsQuery, type ConnectedAgentRow } from './queries/connected-agents.js';
import { transactionClockQuery } from './queries/transaction-clock.js';
import { awaitingAgentsQuery, type AwaitingAgentRow } from './queries/awaiting-agents.js';
import { changedAgentsQuery } from './queries/changed-agents.js';
import { backendCanceller } from './backend-cancel.js';
import { CoderDatabaseError } from './coder-database-error.js';
import type { CoderDatabase } from './schema.js';

export interface CoderAgentSourceOptions {
  /**
   * Server-side limit on the agents query, in ms (`SET LOCAL statement_timeout` in the query's
   * transaction), so a slow query is cancelled by PostgreSQL even if this process is gone.
   * Default 30 000; `0` applies none (the role's or database's own setting then holds).
   * PGlite does not enforce statement timeouts.
   */
  readonly statementTimeoutMs?: number;
  /**
   * On abort, cancel the running query with `pg_cancel_backend` from another pooled connection.
   * Default true, except on PGlite (one in-process connection: nothing to cancel from).
   * The returned promise rejects at once on abort either way.
   */
  readonly cancelOnAbort?: boolean;
  /**
   * Connection timeout in seconds for agents whose `connection_timeout_seconds` is 0, which Coder never
   * times out. Default 0: those agents are never counted as timeouts.
   */
  readonly fallbackConnectionTimeoutSeconds?: number;
}

/** An agent as this source reports it: timestamps as µs text, plus the template version's name. */
export interface CoderAgentFirstConnection extends AgentFirstConnection {
  /** `workspace_agents.created_at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (or PostgreSQL's text for `infinity`). */
  readonly createdAt: string;
  /** `workspace_agents.first_connected_at`, same form. Never null: the query returns connected agents only. */
  readonly firstConnectedAt: string;
  /** With `awaiting` in the query: the timeout it passed before connecting (µs text), else null. */
  readonly timedOutAt: string | null;
  /** `template_versions.name` of the latest build; null when the version row is missing (LEFT JOIN). */
  readonly templateVersionName: string | null;
}

export interface CoderAgentBatch extends AgentBatch {
  readonly agents: readonly CoderAgentFirstConnection[];
  /** The database's `now()` at the start of the query's transaction (truncated to ms). */
  readonly sourceTime: Date;
  /**
   * Only on a hot standby (`pg_is_in_recovery()`): `pg_last_xact_replay_timestamp()` (truncated to ms),
   * so the watermark never passes what was replayed; null before the first transaction is replayed.
   */
  readonly visibleUntil?: Date | null;
  /** Only on a hot standby: its replay lag in ms (0 when all received WAL is replayed). */
  readonly replayLagMs?: number;
}

export interface CoderAgentSource extends FirstConnectionSource {
  listAgents(query: AgentQuery): Promise<CoderAgentBatch>;
}

export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;

const FAILURE_CONTEXT = 'listing agents from the Coder database failed';
const RECONCILE_CONTEXT = 'reading all waiting agents from the Coder database failed';

interface TickRows {
  readonly clock: { source_time: string; in_recovery: boolean; replayed_until: string | null; replay_lag_s: number | null };
  readonly rows: ConnectedAgentRow[];
  readonly waiting?: AwaitingAgentRow[];
  readonly checks?: AwaitingAgentRow[];
  readonly complete?: boolean;
  readonly reconcileError?: string;
}

/**
 * The core's `FirstConnectionSource` over a Coder database (or the schema subset of this package).
 * One read-only transaction per call: the database clock (and the statement timeout), then the agents
 * query; with the awaiting metrics, a reconciliation (every waiting agent) runs in a transaction of its
 * own before it, and its failure is reported in the batch (`awaitingReconcileError`) instead of failing
 * the tick. Failures reject with a `CoderDatabaseError` whose message names the cause
 * (`listing agents from the Coder database failed: relation "workspace_agents" does not exist`).
 */
export function createCoderAgentSource(db: Kysely<CoderDatabase>, options: CoderAgentSourceOptions = {}): CoderAgentSource {
  const statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  if (!Number.isSafeInteger(statementTimeoutMs) || statementTimeoutMs < 0) {
    throw new RangeError(`statementTimeoutMs must be a non-negative integer of milliseconds, got ${String(options.statementTimeoutMs)}`);
  }
  const isPglite = db.getExecutor().adapter instanceof PGliteAdapter;
  const cancelOnAbort = options.cancelOnAbort ?? !isPglite;
  const fallbackTimeoutSeconds = options.fallbackConnectionTimeoutSeconds ?? 0;
  if (!Number.isSafeInteger(fallbackTimeoutSeconds) || fallbackTimeoutSeconds < 0 || fallbackTimeoutSeconds > 2_147_483_647) {
    throw new RangeError(
      `fallbackConnectionTimeoutSeconds must be a non-negative integer of seconds, got ${String(options.fallbackConnectionTimeoutSeconds)}`,
    );
  }

  async function listAgents({ connectedSince, excludeAgentIds, signal, awaiting }: AgentQuery): Promise<CoderAgentBatch> {
    if (connectedSince !== undefined && !Number.isFinite(connectedSince.getTime())) {
      throw new CoderDatabaseError(FAILURE_CONTEXT, new RangeError('connectedSince is an invalid Date'));
    }
    if (signal.aborted) throw new CoderDatabaseError(FAILURE_CONTEXT, signal.reason);

    // Set while a transaction holds a connection, so an abort cancels only our own query.
    let backendPid: number | undefined;
    let settled = false;
    /** One read-only transaction: the clock (and the statement timeout) first, then `read`. */
    const readOnly = <T>(read: (trx: Kysely<CoderDatabase>) => Promise<T>) =>
      db
        .transaction()
        .setAccessMode('read only')
        .execute(async (trx) => {
          const clock = await transactionClockQuery(trx, statementTimeoutMs > 0 ? statementTimeoutMs : undefined).executeTakeFirstOrThrow();
          backendPid = clock.backend_pid;
          if (signal.aborted) throw signal.reason;
          try {
            return { clock, value: await read(trx) };
          } finally {
            backendPid = undefined;
          }
        });

    const tick = async (): Promise<TickRows> => {
      const complete = awaiting !== undefined && (awaiting.full || connectedSince === undefined);
      // The reconciliation (every waiting agent) has its own transaction, before the tick's: its cost and
      // its failure stay out of the tick's reads, which go on; it is asked for again next tick.
      let reconciled: AwaitingAgentRow[] | undefined;
      let reconcileError: string | undefined;
      if (complete) {
        try {
          reconciled = (await readOnly((trx) => awaitingAgentsQuery(trx, { fallbackTimeoutSeconds }).execute())).value;
        } catch (error) {
          if (signal.aborted) throw error;
          reconcileError = new CoderDatabaseError(RECONCILE_CONTEXT, error).message;
        }
      }
      const { clock, value } = await readOnly(async (trx) => {
        if (awaiting === undefined || connectedSince === undefined) {
          const timeouts = awaiting === undefined ? undefined : { fallbackTimeoutSeconds };
          const rows = await connectedAgentsQuery(trx, connectedSince, {
            ...(excludeAgentIds !== undefined && { excludeAgentIds }),
            ...(timeouts !== undefined && { timeouts }),
          }).execute();
          return { rows, waiting: [] as AwaitingAgentRow[], checks: await checksOf(trx) };
        }
        const changed = await changedAgentsQuery(trx, connectedSince, {
          ...(excludeAgentIds !== undefined && { excludeAgentIds }),
          fallbackTimeoutSeconds,
        }).execute();
        const rows: ConnectedAgentRow[] = [];
        const waiting: AwaitingAgentRow[] = [];
        for (const row of changed) {
          if (row.first_connected_at === null) waiting.push(row);
          else rows.push({ ...row, first_connected_at: row.first_connected_at });
        }
        return { rows, waiting, checks: await checksOf(trx) };
      });
      return {
        clock,
        rows: value.rows,
        ...(awaiting !== undefined && {
          waiting: reconciled === undefined ? value.waiting : [...reconciled, ...value.waiting],
          checks: value.checks,
          complete: reconciled !== undefined,
          ...(reconcileError !== undefined && { reconcileError }),
        }),
      };
    };
    const checksOf = (trx: Kysely<CoderDatabase>): Promise<AwaitingAgentRow[]> =>
      awaiting === undefined || awaiting.timeoutCandidates.length === 0
        ? Promise.resolve([])
        : awaitingAgentsQuery(trx, { ids: awaiting.timeoutCandidates, fallbackTimeoutSeconds }).execute();
    const work = tick().finally(() => {
      settled = true;
    });

    const cancelBackend = backendCanceller(db, () => ({ backendPid, settled }));
    const cancel = (): void => {
      if (cancelOnAbort) cancelBackend();
    };

    let result: TickRows;
    try {
      result = await settleOrAbort(work, signal, cancel);
    } catch (error) {
      throw new CoderDatabaseError(FAILURE_CONTEXT, error);
    }
    const { clock } = result;
    const sourceMicros = toEpochMicros(clock.source_time);
    if (sourceMicros === undefined) {
      throw new CoderDatabaseError(FAILURE_CONTEXT, new Error(`the database clock now() is not a valid time: ${clock.source_time}`));
    }
    const batch = { agents: result.rows.map(toAgent), sourceTime: new Date(Math.floor(sourceMicros / 1000)) };
    const withAwaiting: CoderAgentBatch =
      result.waiting === undefined
        ? batch
        : {
            ...batch,
            awaitingAgents: result.waiting.map(toAwaitingAgent),
            awaitingComplete: result.complete === true,
            ...(result.reconcileError !== undefined && { awaitingReconcileError: result.reconcileError }),
            timeoutChecks: (result.checks ?? []).filter((row) => row.timed_out_at !== null).map(toTimeoutCheck),
          };
    if (!clock.in_recovery) return withAwaiting;
    const replayedMicros = clock.replayed_until === null ? undefined : toEpochMicros(clock.replayed_until);
    return {
      ...withAwaiting,
      visibleUntil: replayedMicros === undefined ? null : new Date(Math.floor(replayedMicros / 1000)),
      ...(clock.replay_lag_s !== null && { replayLagMs: clock.replay_lag_s * 1000 }),
    };
  }

  return { listAgents };
}

function toAgent(row: ConnectedAgentRow): CoderAgentFirstConnection {
  return {
    agentId: row.agent_id,
    createdAt: row.created_at,
    firstConnectedAt: row.first_connected_at,
    timedOutAt: row.timed_out_at,
    labels: {
      template_name: row.template_name,
      agent_name: row.agent_name,
      username: row.username,
      workspace_name: row.workspace_name,
    },
    templateVersionName: row.template_version_name,
  };
}

function labelsOf(row: { template_name: string; agent_name: string; username: string; workspace_name: string }): AgentLabels {
  return { template_name: row.template_name, agent_name: row.agent_name, username: row.username, workspace_name: row.workspace_name };
}

function toAwaitingAgent(row: AwaitingAgentRow): AwaitingAgent {
  return { agentId: row.agent_id, createdAt: row.created_at, timedOutAt: row.timed_out_at, due: row.due, labels: labelsOf(row) };
}

function toTimeoutCheck(row: AwaitingAgentRow): AgentTimeoutCheck {
  return { agentId: row.agent_id, timedOutAt: row.timed_out_at ?? '', due: row.due, labels: labelsOf(row) };
}
