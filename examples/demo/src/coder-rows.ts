/**
 * The rows Coder writes along a workspace start, in batches (one statement per kind of row, arrays
 * passed through `unnest`): builds and their provisioner jobs, the job's stage timings when it
 * completes, resources, agents and their scripts, and the script timings when the agent is ready.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type {
  CoderDatabase,
  ProvisionerJobTimingStage,
  WorkspaceAgentLifecycleState,
  WorkspaceAgentScriptTimingStatus,
} from '@agentconn/kysely';

type Db = Kysely<CoderDatabase>;
const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

/** `unnest($1::type[], $2::type[], ...)`: one array parameter per column. */
function unnest(columns: readonly (readonly [values: readonly unknown[], pgType: string])[]): RawBuilder<unknown> {
  return sql`unnest(${sql.join(columns.map(([values, pgType]) => sql`${sql.val(values)}::${sql.raw(pgType)}[]`))})`;
}

export interface NewWorkspaceRow {
  readonly workspaceId: string;
  readonly name: string;
  readonly ownerId: string;
  readonly templateId: string;
  readonly versionId: string;
  readonly buildId: string;
  readonly jobId: string;
  readonly createdMs: number;
}

/** New workspaces, each with its first start build and a provisioner job waiting in the queue. */
export async function insertWorkspaceStarts(db: Db, organizationId: string, rows: readonly NewWorkspaceRow[]): Promise<void> {
  if (rows.length === 0) return;
  const created = rows.map((r) => iso(r.createdMs));
  await db
    .insertInto('workspaces')
    .columns(['id', 'created_at', 'updated_at', 'owner_id', 'organization_id', 'template_id', 'name'])
    .expression(
      sql`SELECT id, created_at, created_at, owner_id, ${organizationId}::uuid, template_id, name FROM ${unnest([
        [rows.map((r) => r.workspaceId), 'uuid'],
        [created, 'timestamptz'],
        [rows.map((r) => r.ownerId), 'uuid'],
        [rows.map((r) => r.templateId), 'uuid'],
        [rows.map((r) => r.name), 'text'],
      ])} AS t(id, created_at, owner_id, template_id, name)`,
    )
    .execute();
  await insertJobs(
    db,
    organizationId,
    rows.map((r) => ({ id: r.jobId, initiatorId: r.ownerId, createdMs: r.createdMs })),
  );
  await db
    .insertInto('workspace_builds')
    .columns([
      'id',
      'created_at',
      'updated_at',
      'workspace_id',
      'template_version_id',
      'build_number',
      'transition',
      'initiator_id',
      'job_id',
    ])
    .expression(
      sql`SELECT id, created_at, created_at, workspace_id, template_version_id, 1, 'start'::workspace_transition, initiator_id, job_id FROM ${unnest(
        [
          [rows.map((r) => r.buildId), 'uuid'],
          [created, 'timestamptz'],
          [rows.map((r) => r.workspaceId), 'uuid'],
          [rows.map((r) => r.versionId), 'uuid'],
          [rows.map((r) => r.ownerId), 'uuid'],
          [rows.map((r) => r.jobId), 'uuid'],
        ],
      )} AS t(id, created_at, workspace_id, template_version_id, initiator_id, job_id)`,
    )
    .execute();
}

/** Provisioner jobs of type `workspace_build`, pending (not started). */
export async function insertJobs(
  db: Db,
  organizationId: string,
  rows: readonly { readonly id: string; readonly initiatorId: string; readonly createdMs: number }[],
): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('provisioner_jobs')
    .columns([
      'id',
      'created_at',
      'updated_at',
      'organization_id',
      'initiator_id',
      'provisioner',
      'storage_method',
      'type',
      'input',
      'file_id',
    ])
    .expression(
      sql`SELECT id, created_at, created_at, ${organizationId}::uuid, initiator_id, 'terraform'::provisioner_type, 'file'::provisioner_storage_method,
            'workspace_build'::provisioner_job_type, '{}'::jsonb, gen_random_uuid() FROM ${unnest([
              [rows.map((r) => r.id), 'uuid'],
              [rows.map((r) => iso(r.createdMs)), 'timestamptz'],
              [rows.map((r) => r.initiatorId), 'uuid'],
            ])} AS t(id, created_at, initiator_id)`,
    )
    .execute();
}

export interface JobStateRow {
  readonly id: string;
  readonly startedMs: number | null;
  readonly completedMs: number | null;
  readonly canceledMs: number | null;
  readonly error: string | null;
}

/** Sets the job's timestamps and error as they are now (a daemon took it, or it ended). */
export async function updateJobs(db: Db, rows: readonly JobStateRow[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    UPDATE provisioner_jobs AS j
    SET started_at = t.started_at, completed_at = t.completed_at, canceled_at = t.canceled_at, error = t.error,
        updated_at = coalesce(t.completed_at, t.started_at, j.updated_at)
    FROM ${unnest([
      [rows.map((r) => r.id), 'uuid'],
      [rows.map((r) => isoOrNull(r.startedMs)), 'timestamptz'],
      [rows.map((r) => isoOrNull(r.completedMs)), 'timestamptz'],
      [rows.map((r) => isoOrNull(r.canceledMs)), 'timestamptz'],
      [rows.map((r) => r.error), 'text'],
    ])} AS t(id, started_at, completed_at, canceled_at, error)
    WHERE j.id = t.id`.execute(db);
}

export interface TimingRow {
  readonly jobId: string;
  readonly stage: ProvisionerJobTimingStage;
  readonly startedMs: number;
  readonly endedMs: number;
  readonly resource: string;
}

/** `provisioner_job_timings`: Coder writes them when the job completes. */
export async function insertJobTimings(db: Db, rows: readonly TimingRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('provisioner_job_timings')
    .columns(['job_id', 'started_at', 'ended_at', 'stage', 'source', 'action', 'resource'])
    .expression(
      sql`SELECT job_id, started_at, ended_at, stage::provisioner_job_timing_stage, 'terraform', CASE WHEN stage = 'apply' THEN 'create' ELSE 'read' END, resource FROM ${unnest(
        [
          [rows.map((r) => r.jobId), 'uuid'],
          [rows.map((r) => iso(r.startedMs)), 'timestamptz'],
          [rows.map((r) => iso(r.endedMs)), 'timestamptz'],
          [rows.map((r) => r.stage), 'text'],
          [rows.map((r) => r.resource), 'text'],
        ],
      )} AS t(job_id, started_at, ended_at, stage, resource)`,
    )
    .execute();
}

export interface AgentRow {
  readonly agentId: string;
  readonly resourceId: string;
  readonly jobId: string;
  readonly createdMs: number;
  readonly connectionTimeoutSeconds: number;
}

/** A completed job's resource and agent, not connected yet (Coder inserts them when the job completes). */
export async function insertAgents(db: Db, rows: readonly AgentRow[]): Promise<void> {
  if (rows.length === 0) return;
  const created = rows.map((r) => iso(r.createdMs));
  await db
    .insertInto('workspace_resources')
    .columns(['id', 'created_at', 'job_id', 'transition', 'type', 'name'])
    .expression(
      sql`SELECT id, created_at, job_id, 'start'::workspace_transition, 'docker_container', 'dev' FROM ${unnest([
        [rows.map((r) => r.resourceId), 'uuid'],
        [created, 'timestamptz'],
        [rows.map((r) => r.jobId), 'uuid'],
      ])} AS t(id, created_at, job_id)`,
    )
    .execute();
  await db
    .insertInto('workspace_agents')
    .columns([
      'id',
      'created_at',
      'updated_at',
      'name',
      'resource_id',
      'auth_token',
      'architecture',
      'operating_system',
      'connection_timeout_seconds',
    ])
    .expression(
      sql`SELECT id, created_at, created_at, 'main', resource_id, gen_random_uuid(), 'amd64', 'linux', connection_timeout_seconds FROM ${unnest(
        [
          [rows.map((r) => r.agentId), 'uuid'],
          [created, 'timestamptz'],
          [rows.map((r) => r.resourceId), 'uuid'],
          [rows.map((r) => r.connectionTimeoutSeconds), 'int4'],
        ],
      )} AS t(id, created_at, resource_id, connection_timeout_seconds)`,
    )
    .execute();
}

export interface ScriptRow {
  readonly scriptId: string;
  readonly agentId: string;
  readonly createdMs: number;
  readonly displayName: string;
  readonly timeoutSeconds: number;
}

export async function insertScripts(db: Db, rows: readonly ScriptRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('workspace_agent_scripts')
    .columns([
      'id',
      'workspace_agent_id',
      'log_source_id',
      'log_path',
      'created_at',
      'script',
      'cron',
      'start_blocks_login',
      'run_on_start',
      'run_on_stop',
      'timeout_seconds',
      'display_name',
    ])
    .expression(
      sql`SELECT id, agent_id, gen_random_uuid(), '', created_at, '#!/bin/sh', '', true, true, false, timeout_seconds, display_name FROM ${unnest(
        [
          [rows.map((r) => r.scriptId), 'uuid'],
          [rows.map((r) => r.agentId), 'uuid'],
          [rows.map((r) => iso(r.createdMs)), 'timestamptz'],
          [rows.map((r) => r.timeoutSeconds), 'int4'],
          [rows.map((r) => r.displayName), 'text'],
        ],
      )} AS t(id, agent_id, created_at, timeout_seconds, display_name)`,
    )
    .execute();
}

export interface ScriptTimingRow {
  readonly scriptId: string;
  readonly startedMs: number;
  readonly endedMs: number;
  readonly exitCode: number;
  readonly status: WorkspaceAgentScriptTimingStatus;
}

/** Runs of `stage = 'start'` scripts. */
export async function insertScriptTimings(db: Db, rows: readonly ScriptTimingRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('workspace_agent_script_timings')
    .columns(['script_id', 'started_at', 'ended_at', 'exit_code', 'stage', 'status'])
    .expression(
      sql`SELECT script_id, started_at, ended_at, exit_code, 'start'::workspace_agent_script_timing_stage, status::workspace_agent_script_timing_status FROM ${unnest(
        [
          [rows.map((r) => r.scriptId), 'uuid'],
          [rows.map((r) => iso(r.startedMs)), 'timestamptz'],
          [rows.map((r) => iso(r.endedMs)), 'timestamptz'],
          [rows.map((r) => r.exitCode), 'int4'],
          [rows.map((r) => r.status), 'text'],
        ],
      )} AS t(script_id, started_at, ended_at, exit_code, status)`,
    )
    .execute();
}

export interface AgentLifecycleRow {
  readonly agentId: string;
  readonly state: WorkspaceAgentLifecycleState;
  readonly startedMs: number | null;
  readonly readyMs: number | null;
}

/** The agent's lifecycle: `starting` once connected, then ready (or start_error, start_timeout) with `ready_at`. */
export async function updateAgentLifecycles(db: Db, rows: readonly AgentLifecycleRow[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    UPDATE workspace_agents AS a
    SET lifecycle_state = t.state::workspace_agent_lifecycle_state, started_at = t.started_at, ready_at = t.ready_at
    FROM ${unnest([
      [rows.map((r) => r.agentId), 'uuid'],
      [rows.map((r) => r.state), 'text'],
      [rows.map((r) => isoOrNull(r.startedMs)), 'timestamptz'],
      [rows.map((r) => isoOrNull(r.readyMs)), 'timestamptz'],
    ])} AS t(id, state, started_at, ready_at)
    WHERE a.id = t.id`.execute(db);
}
