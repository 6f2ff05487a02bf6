/**
 * Kysely table types for the subset of Coder's PostgreSQL schema that the first-connection query reads
 * (`coderd/database/dump.sql` upstream). Column names, types and nullability are Coder's; a column is
 * here when the query reads it, when it is NOT NULL without a default (an INSERT needs it), or when an
 * index of the subset covers it. Every other Coder column is nullable or has a default, so a row written
 * through these types is also a valid row of a real Coder database.
 *
 * The queries are typed from these interfaces: renaming a column here (or misspelling it in a query)
 * is a compile error.
 */
import type { ColumnType, Generated } from 'kysely';

/** `timestamp with time zone`. Drivers return a Date (ms precision); inserts take a Date or text (keeps µs). */
export type Timestamptz = ColumnType<Date, Date | string, Date | string>;
/** `timestamp with time zone` without NOT NULL: may be omitted on insert. */
export type NullableTimestamptz = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** A nullable column: may be omitted on insert. */
export type Nullable<T> = ColumnType<T | null, T | null | undefined, T | null>;
/** `bytea`: pg returns a Buffer, PGlite a Uint8Array; both are Uint8Arrays. */
export type Bytea = ColumnType<Uint8Array, Uint8Array, Uint8Array>;

/** Coder enum `workspace_agent_lifecycle_state`. */
export const WORKSPACE_AGENT_LIFECYCLE_STATES = [
  'created',
  'starting',
  'start_timeout',
  'start_error',
  'ready',
  'shutting_down',
  'shutdown_timeout',
  'shutdown_error',
  'off',
] as const;
export type WorkspaceAgentLifecycleState = (typeof WORKSPACE_AGENT_LIFECYCLE_STATES)[number];

/** Coder enum `workspace_transition`. */
export const WORKSPACE_TRANSITIONS = ['start', 'stop', 'delete'] as const;
export type WorkspaceTransition = (typeof WORKSPACE_TRANSITIONS)[number];

/** Coder enum `provisioner_type` (`templates.provisioner` is NOT NULL without a default). */
export const PROVISIONER_TYPES = ['echo', 'terraform'] as const;
export type ProvisionerType = (typeof PROVISIONER_TYPES)[number];

/** Coder enum `provisioner_job_status`: the generated `provisioner_jobs.job_status`. */
export const PROVISIONER_JOB_STATUSES = ['pending', 'running', 'succeeded', 'canceling', 'canceled', 'failed', 'unknown'] as const;
export type ProvisionerJobStatus = (typeof PROVISIONER_JOB_STATUSES)[number];

/** Coder enum `provisioner_job_timing_stage`. */
export const PROVISIONER_JOB_TIMING_STAGES = ['init', 'plan', 'graph', 'apply'] as const;
export type ProvisionerJobTimingStage = (typeof PROVISIONER_JOB_TIMING_STAGES)[number];

/** Coder enum `provisioner_job_type`: a workspace build's job is `workspace_build`. */
export const PROVISIONER_JOB_TYPES = ['template_version_import', 'workspace_build', 'template_version_dry_run'] as const;
export type ProvisionerJobType = (typeof PROVISIONER_JOB_TYPES)[number];

/** Coder enum `provisioner_storage_method`. */
export const PROVISIONER_STORAGE_METHODS = ['file'] as const;
export type ProvisionerStorageMethod = (typeof PROVISIONER_STORAGE_METHODS)[number];

/** Coder enum `workspace_agent_script_timing_stage`: what stage the script ran in. */
export const WORKSPACE_AGENT_SCRIPT_TIMING_STAGES = ['start', 'stop', 'cron'] as const;
export type WorkspaceAgentScriptTimingStage = (typeof WORKSPACE_AGENT_SCRIPT_TIMING_STAGES)[number];

/** Coder enum `workspace_agent_script_timing_status`. */
export const WORKSPACE_AGENT_SCRIPT_TIMING_STATUSES = ['ok', 'exit_failure', 'timed_out', 'pipes_left_open'] as const;
export type WorkspaceAgentScriptTimingStatus = (typeof WORKSPACE_AGENT_SCRIPT_TIMING_STATUSES)[number];

/** The prebuilds system user: Coder's prebuild views and `GetWorkspaceBuildMetricsByResourceID` use this id. */
export const PREBUILDS_SYSTEM_USER_ID = 'c42fdf75-3097-471c-8c33-fb52454d81c0';

export interface WorkspaceAgentsTable {
  id: string;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  /** varchar(64) */
  name: string;
  first_connected_at: NullableTimestamptz;
  last_connected_at: NullableTimestamptz;
  disconnected_at: NullableTimestamptz;
  resource_id: string;
  auth_token: string;
  /** varchar, nullable */
  auth_instance_id: Nullable<string>;
  /** varchar(64) */
  architecture: string;
  /** varchar(64) */
  operating_system: string;
  connection_timeout_seconds: Generated<number>;
  lifecycle_state: Generated<WorkspaceAgentLifecycleState>;
  started_at: NullableTimestamptz;
  ready_at: NullableTimestamptz;
  /** Sub-agents (dev containers) point at their parent agent. */
  parent_id: Nullable<string>;
  deleted: Generated<boolean>;
}

export interface WorkspaceResourcesTable {
  id: string;
  created_at: Timestamptz;
  /** A `provisioner_jobs.id`; Coder's foreign key to it is left out of the subset. */
  job_id: string;
  transition: WorkspaceTransition;
  /** varchar(192) */
  type: string;
  /** varchar(64) */
  name: string;
}

export interface WorkspaceBuildsTable {
  id: string;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  workspace_id: string;
  template_version_id: string;
  build_number: number;
  transition: WorkspaceTransition;
  /** No foreign key in Coder either. */
  initiator_id: string;
  /** A `provisioner_jobs.id`; Coder's foreign key to it is left out of the subset, so a build may go without a job row. */
  job_id: string;
}

export interface WorkspacesTable {
  id: string;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  owner_id: string;
  /** An `organizations.id` in Coder; the subset has no organizations table. */
  organization_id: string;
  template_id: string;
  deleted: Generated<boolean>;
  /** varchar(64) */
  name: string;
}

export interface TemplatesTable {
  id: string;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  organization_id: string;
  deleted: Generated<boolean>;
  /** varchar(64) */
  name: string;
  provisioner: ProvisionerType;
  /** No foreign key in Coder (templates and versions reference each other). */
  active_version_id: string;
  created_by: string;
}

export interface TemplateVersionsTable {
  id: string;
  template_id: Nullable<string>;
  organization_id: string;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  /** varchar(64) */
  name: string;
  /** varchar(1048576) */
  readme: string;
  /** A `provisioner_jobs.id`; Coder's foreign key to it is left out of the subset. */
  job_id: string;
  created_by: string;
}

export interface UsersTable {
  id: string;
  email: string;
  username: Generated<string>;
  hashed_password: Bytea;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  deleted: Generated<boolean>;
}

/** `jsonb`: read as parsed JSON, written as its text. */
export type Jsonb = ColumnType<unknown, string, string>;

export interface ProvisionerJobsTable {
  id: string;
  created_at: Timestamptz;
  updated_at: Timestamptz;
  started_at: NullableTimestamptz;
  /** Set when a cancel is asked for; the job ends at `completed_at`. */
  canceled_at: NullableTimestamptz;
  completed_at: NullableTimestamptz;
  /** Non-empty: the job failed (Coder's `job_status` rule). */
  error: Nullable<string>;
  organization_id: string;
  initiator_id: string;
  provisioner: ProvisionerType;
  storage_method: ProvisionerStorageMethod;
  type: ProvisionerJobType;
  input: Jsonb;
  worker_id: Nullable<string>;
  file_id: string;
  error_code: Nullable<string>;
  /** `GENERATED ALWAYS AS (...) STORED` in Coder: never written. */
  job_status: ColumnType<ProvisionerJobStatus, never, never>;
}

/** Written by Coder when a job completes: one row per Terraform resource and stage. No key in Coder. */
export interface ProvisionerJobTimingsTable {
  job_id: string;
  started_at: Timestamptz;
  ended_at: Timestamptz;
  stage: ProvisionerJobTimingStage;
  source: string;
  action: string;
  resource: string;
}

export interface WorkspaceAgentScriptsTable {
  workspace_agent_id: string;
  log_source_id: string;
  log_path: string;
  created_at: Timestamptz;
  script: string;
  cron: string;
  start_blocks_login: boolean;
  run_on_start: boolean;
  run_on_stop: boolean;
  timeout_seconds: number;
  display_name: string;
  /** UNIQUE, default `gen_random_uuid()`. */
  id: Generated<string>;
}

/** One run of a script; UNIQUE (script_id, started_at) in Coder. */
export interface WorkspaceAgentScriptTimingsTable {
  script_id: string;
  started_at: Timestamptz;
  ended_at: Timestamptz;
  exit_code: number;
  stage: WorkspaceAgentScriptTimingStage;
  status: WorkspaceAgentScriptTimingStatus;
}

/** The Coder schema subset, for `Kysely<CoderDatabase>`. */
export interface CoderDatabase {
  provisioner_jobs: ProvisionerJobsTable;
  provisioner_job_timings: ProvisionerJobTimingsTable;
  workspace_agent_scripts: WorkspaceAgentScriptsTable;
  workspace_agent_script_timings: WorkspaceAgentScriptTimingsTable;
  workspace_agents: WorkspaceAgentsTable;
  workspace_resources: WorkspaceResourcesTable;
  workspace_builds: WorkspaceBuildsTable;
  workspaces: WorkspacesTable;
  templates: TemplatesTable;
  template_versions: TemplateVersionsTable;
  users: UsersTable;
}

/** The seven tables the first-connection source reads (e.g. for GRANT SELECT). */
export const CODER_TABLES = [
  'workspace_agents',
  'workspace_resources',
  'workspace_builds',
  'workspaces',
  'templates',
  'template_versions',
  'users',
] as const satisfies readonly (keyof CoderDatabase)[];

/**
 * The columns `createCoderAgentSource` reads, per table: enough for a column-level
 * `GRANT SELECT (...) ON ...` so the exporter's role cannot read password hashes, emails or agent tokens.
 */
export const AGENT_SOURCE_COLUMNS = {
  workspace_agents: ['id', 'created_at', 'name', 'first_connected_at', 'resource_id', 'deleted', 'connection_timeout_seconds'],
  workspace_resources: ['id', 'job_id'],
  workspace_builds: ['workspace_id', 'template_version_id', 'build_number', 'job_id'],
  workspaces: ['id', 'owner_id', 'template_id', 'deleted', 'name'],
  templates: ['id', 'name'],
  template_versions: ['id', 'name'],
  users: ['id', 'username'],
} as const satisfies { readonly [T in (typeof CODER_TABLES)[number]]: readonly (keyof CoderDatabase[T] & string)[] };

/** The four tables the whole start reads besides `CODER_TABLES`. */
export const START_TABLES = [
  'provisioner_jobs',
  'provisioner_job_timings',
  'workspace_agent_scripts',
  'workspace_agent_script_timings',
] as const satisfies readonly (keyof CoderDatabase)[];

/** The columns the start source reads, per table: with `AGENT_SOURCE_COLUMNS`, the grants `--phases` needs. */
export const START_SOURCE_COLUMNS = {
  provisioner_jobs: ['id', 'created_at', 'started_at', 'canceled_at', 'completed_at', 'error', 'type', 'job_status'],
  provisioner_job_timings: ['job_id', 'started_at', 'ended_at', 'stage'],
  workspace_agent_scripts: ['id', 'workspace_agent_id', 'display_name'],
  workspace_agent_script_timings: ['script_id', 'started_at', 'ended_at', 'stage', 'status'],
  workspace_agents: ['id', 'created_at', 'first_connected_at', 'ready_at', 'lifecycle_state', 'resource_id', 'parent_id', 'connection_timeout_seconds'],
  workspace_resources: ['id', 'job_id'],
  workspace_builds: ['id', 'created_at', 'workspace_id', 'build_number', 'transition', 'job_id'],
  workspaces: ['id', 'owner_id', 'template_id', 'deleted', 'name'],
  templates: ['id', 'name'],
  users: ['id', 'username'],
} as const satisfies { readonly [T in keyof CoderDatabase]?: readonly (keyof CoderDatabase[T] & string)[] };
