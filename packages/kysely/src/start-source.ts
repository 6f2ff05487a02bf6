import {
  formatEpochMicros,
  settleOrAbort,
  toEpochMicros,
  type ProvisionerJobStages,
  type StartBatch,
  type StartBuildLabels,
  type StartQuery,
  type StartupScriptRun,
  type WorkspaceStartBuild,
  type WorkspaceStartSource,
} from '@agentconn/core';
import { PGliteAdapter, type Kysely } from 'kysely';
import { backendCanceller } from './backend-cancel.js';
import { CoderDatabaseError } from './coder-database-error.js';
import { DEFAULT_STATEMENT_TIMEOUT_MS } from './agent-source.js';
import { transactionClockQuery } from './queries/transaction-clock.js';
import {
  allStartBuildsQuery,
  changedStartBuildsQuery,
  jobStagesQuery,
  startScriptRunsQuery,
  startsInProgressQuery,
  type JobStageRow,
  type StartBuildRow,
} from './queries/workspace-starts.js';
import type { CoderDatabase } from './schema.js';

export interface CoderStartSourceOptions {
  /** Server-side limit on the reads, in ms (`SET LOCAL statement_timeout`). Default 30 000; 0: none. */
  readonly statementTimeoutMs?: number;
  /** On abort, cancel the running query with `pg_cancel_backend`. Default true, except on PGlite. */
  readonly cancelOnAbort?: boolean;
}

const FAILURE_CONTEXT = 'listing workspace starts from the Coder database failed';

/**
 * The core's `WorkspaceStartSource` over a Coder database: one read-only transaction per call with the
 * database clock first, then the changed start builds, the stage timings of their completed jobs, the start
 * scripts' runs and the starts in progress. Rejects with a `CoderDatabaseError` naming the cause.
 */
export function createCoderStartSource(db: Kysely<CoderDatabase>, options: CoderStartSourceOptions = {}): WorkspaceStartSource {
  const statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  if (!Number.isSafeInteger(statementTimeoutMs) || statementTimeoutMs < 0) {
    throw new RangeError(`statementTimeoutMs must be a non-negative integer of milliseconds, got ${String(options.statementTimeoutMs)}`);
  }
  const cancelOnAbort = options.cancelOnAbort ?? !(db.getExecutor().adapter instanceof PGliteAdapter);

  async function listStarts({ since, signal, exclude, inProgressBuildIds, readyAgentIds, reconcile }: StartQuery): Promise<StartBatch> {
    const handled = since === undefined ? undefined : exclude;
    const handledJobs = new Set(handled?.jobIds ?? []);
    if (since !== undefined && !Number.isFinite(since.getTime())) {
      throw new CoderDatabaseError(FAILURE_CONTEXT, new RangeError('since is an invalid Date'));
    }
    if (signal.aborted) throw new CoderDatabaseError(FAILURE_CONTEXT, signal.reason);
    let backendPid: number | undefined;
    let settled = false;
    const work = db
      .transaction()
      .setAccessMode('read only')
      .execute(async (trx) => {
        const clock = await transactionClockQuery(trx, statementTimeoutMs > 0 ? statementTimeoutMs : undefined).executeTakeFirstOrThrow();
        backendPid = clock.backend_pid;
        const changed = await (since === undefined ? allStartBuildsQuery(trx) : changedStartBuildsQuery(trx, since, handled?.buildIds)).execute();
        if (signal.aborted) throw signal.reason;
        const completedJobs = [
          ...new Set(
            changed
              .filter((row) => row.job_completed_at !== null && (since === undefined || (toEpochMicros(row.job_completed_at) ?? 0) >= since.getTime() * 1000))
              .filter((row) => !handledJobs.has(row.job_id))
              .map((row) => row.job_id),
          ),
        ];
        const stages = completedJobs.length === 0 ? [] : await jobStagesQuery(trx, completedJobs).execute();
        const doneRuns = (handled?.scriptRuns ?? []).map((run) => ({ scriptId: run.scriptId, startedAt: formatEpochMicros(run.startedMicros) }));
        const sinceMicros = since === undefined ? undefined : since.getTime() * 1000;
        const readyAgents =
          sinceMicros === undefined || readyAgentIds === undefined
            ? undefined
            : [
                ...new Set([
                  ...readyAgentIds,
                  ...changed.filter((row) => row.agent_id !== null && row.agent_ready_at !== null && (toEpochMicros(row.agent_ready_at) ?? 0) >= sinceMicros).map((row) => row.agent_id as string),
                ]),
              ];
        const scripts = readyAgents?.length === 0 ? [] : await startScriptRunsQuery(trx, since, doneRuns, readyAgents).execute();
        // Known builds: those in progress at the last read and those that changed now (a job that completed
        // since is among them); without a previous read, every agent not ready is read.
        const known = [...new Set([...(inProgressBuildIds ?? []), ...changed.map((row) => row.build_id)])];
        const inProgress = await startsInProgressQuery(trx, known, inProgressBuildIds === undefined || reconcile === true).execute();
        return { clock, changed, stages, scripts, inProgress };
      })
      .finally(() => {
        settled = true;
        backendPid = undefined;
      });
    const cancelBackend = backendCanceller(db, () => ({ backendPid, settled }));
    const cancel = (): void => {
      if (cancelOnAbort) cancelBackend();
    };
    let result: Awaited<typeof work>;
    try {
      result = await settleOrAbort(work, signal, cancel);
    } catch (error) {
      throw new CoderDatabaseError(FAILURE_CONTEXT, error);
    }
    const nowMicros = toEpochMicros(result.clock.source_time);
    if (nowMicros === undefined) {
      throw new CoderDatabaseError(FAILURE_CONTEXT, new Error(`the database clock now() is not a valid time: ${result.clock.source_time}`));
    }
    const builds = groupBuilds(result.changed);
    const byJob = new Map(result.changed.map((row) => [row.job_id, row]));
    return {
      builds,
      jobs: groupStages(result.stages, byJob),
      scripts: result.scripts.map(
        (row): StartupScriptRun => ({
          scriptId: row.script_id,
          buildId: row.build_id,
          script: row.script,
          status: row.status,
          startedAt: row.started_at ?? '',
          endedAt: row.ended_at ?? '',
          labels: labelsOf(row),
        }),
      ),
      inProgress: groupBuilds(result.inProgress),
      now: result.clock.source_time,
      sourceTime: new Date(Math.floor(nowMicros / 1000)),
      rowsRead: result.changed.length + result.stages.length + result.scripts.length + result.inProgress.length,
    };
  }

  return { listStarts };
}

function labelsOf(row: { template_name: string; username: string; workspace_name: string; is_prebuild: boolean }): StartBuildLabels {
  return { template_name: row.template_name, username: row.username, workspace_name: row.workspace_name, is_prebuild: row.is_prebuild };
}

/** Rows of one build and one agent each (ordered by build) as builds with their agents. */
export function groupBuilds(rows: readonly StartBuildRow[]): WorkspaceStartBuild[] {
  const builds = new Map<string, { build: WorkspaceStartBuild; agents: WorkspaceStartBuild['instants']['agents'][number][] }>();
  for (const row of rows) {
    let entry = builds.get(row.build_id);
    if (entry === undefined) {
      const agents: WorkspaceStartBuild['instants']['agents'][number][] = [];
      entry = {
        agents,
        build: {
          buildId: row.build_id,
          labels: labelsOf(row),
          supersededAt: row.superseded_at,
          instants: {
            buildCreatedAt: row.build_created_at ?? '',
            job: {
              startedAt: row.job_started_at,
              completedAt: row.job_completed_at,
              canceledAt: row.job_canceled_at,
              error: row.job_error,
              type: row.job_type,
            },
            agents,
          },
        },
      };
      builds.set(row.build_id, entry);
    }
    if (row.agent_id !== null && row.agent_created_at !== null) {
      entry.agents.push({
        agentId: row.agent_id,
        parentId: row.agent_parent_id,
        createdAt: row.agent_created_at,
        firstConnectedAt: row.agent_first_connected_at,
        readyAt: row.agent_ready_at,
        lifecycleState: row.agent_lifecycle_state ?? 'created',
        connectionTimeoutSeconds: row.agent_connection_timeout_seconds ?? 0,
      });
    }
  }
  return [...builds.values()].map((entry) => entry.build);
}

function groupStages(rows: readonly JobStageRow[], byJob: ReadonlyMap<string, StartBuildRow>): ProvisionerJobStages[] {
  const jobs = new Map<string, { job: ProvisionerJobStages; stages: ProvisionerJobStages['stages'][number][] }>();
  for (const row of rows) {
    const build = byJob.get(row.job_id);
    if (build === undefined || build.job_completed_at === null) continue;
    let entry = jobs.get(row.job_id);
    if (entry === undefined) {
      const stages: ProvisionerJobStages['stages'][number][] = [];
      entry = { stages, job: { jobId: row.job_id, buildId: build.build_id, completedAt: build.job_completed_at, labels: labelsOf(build), stages } };
      jobs.set(row.job_id, entry);
    }
    entry.stages.push({ stage: row.stage, startedAt: row.started_at ?? '', endedAt: row.ended_at ?? '', negativeRows: row.negative_rows });
  }
  return [...jobs.values()].map((entry) => entry.job);
}
