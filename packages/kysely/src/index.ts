/**
 * `@agentconn/kysely`: the Coder schema subset as Kysely types and migrations, the first-connection
 * source for `@agentconn/core` and the opt-in index. Database drivers live in their own entry points:
 * `@agentconn/kysely/postgres` (pg) and `@agentconn/kysely/pglite` (PGlite); this one imports neither.
 * Migrations of the schema subset and the data generator are in `@agentconn/kysely/testing`.
 */
export {
  AGENT_SOURCE_COLUMNS,
  CODER_TABLES,
  PREBUILDS_SYSTEM_USER_ID,
  PROVISIONER_JOB_STATUSES,
  PROVISIONER_JOB_TIMING_STAGES,
  PROVISIONER_JOB_TYPES,
  PROVISIONER_STORAGE_METHODS,
  PROVISIONER_TYPES,
  START_SOURCE_COLUMNS,
  START_TABLES,
  WORKSPACE_AGENT_SCRIPT_TIMING_STAGES,
  WORKSPACE_AGENT_SCRIPT_TIMING_STATUSES,
  WORKSPACE_AGENT_LIFECYCLE_STATES,
  WORKSPACE_TRANSITIONS,
  type Bytea,
  type CoderDatabase,
  type Jsonb,
  type ProvisionerJobStatus,
  type ProvisionerJobTimingStage,
  type ProvisionerJobTimingsTable,
  type ProvisionerJobType,
  type ProvisionerJobsTable,
  type ProvisionerStorageMethod,
  type WorkspaceAgentScriptTimingStage,
  type WorkspaceAgentScriptTimingStatus,
  type WorkspaceAgentScriptTimingsTable,
  type WorkspaceAgentScriptsTable,
  type Nullable,
  type NullableTimestamptz,
  type ProvisionerType,
  type TemplateVersionsTable,
  type TemplatesTable,
  type Timestamptz,
  type UsersTable,
  type WorkspaceAgentLifecycleState,
  type WorkspaceAgentsTable,
  type WorkspaceBuildsTable,
  type WorkspaceResourcesTable,
  type WorkspaceTransition,
  type WorkspacesTable,
} from './schema.js';
export {
  AWAITING_CREATED_AT_INDEX,
  AWAITING_CREATED_AT_INDEX_NAME,
  FIRST_CONNECTED_AT_INDEX,
  FIRST_CONNECTED_AT_INDEX_NAME,
  awaitingCreatedAtIndexMigration,
  createAwaitingCreatedAtIndex,
  createFirstConnectedAtIndex,
  createOptInIndex,
  dropAwaitingCreatedAtIndex,
  dropFirstConnectedAtIndex,
  dropOptInIndex,
  firstConnectedAtIndexMigration,
  optInIndexMigration,
  createWorkspaceStartIndexes,
  dropWorkspaceStartIndexes,
  WORKSPACE_START_INDEXES,
  type OptInIndex,
} from './opt-in-indexes.js';
export { connectedAgentsQuery, type ConnectedAgentRow } from './queries/connected-agents.js';
export { currentBuildLookup, workspaceAgentsForMetricsQuery, type LatestBuildForm } from './queries/current-agents.js';
export { transactionClockQuery } from './queries/transaction-clock.js';
export { utcMicrosText } from './queries/utc-micros-text.js';
export { awaitingAgentsQuery, type AwaitingAgentRow, type AwaitingAgentsQueryOptions } from './queries/awaiting-agents.js';
export { changedAgentsQuery, type ChangedAgentRow, type ChangedAgentsQueryOptions } from './queries/changed-agents.js';
export { effectiveTimeoutSeconds, passedTimeoutText } from './queries/connection-timeout.js';
export {
  exactDurationMicros,
  FIRST_CONNECTION_HISTORY_LABEL_COLUMNS,
  firstConnectionDetails,
  firstConnectionSamples,
  computedHistorySamples,
  HISTORY_QUANTILES,
  historySeriesQuery,
  historySummaryQuery,
  startHistoryDetails,
  startHistoryRowsQuery,
  templateNamesQuery,
  type HistoryComputedSample,
  type HistorySampleColumns,
  type HistorySampleDetails,
  type HistorySampleFilter,
  type HistorySeriesOptions,
  type HistorySeriesRow,
  type HistorySummaryOptions,
  type HistorySummaryRow,
} from './queries/history.js';
export {
  createCoderAgentSource,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  type CoderAgentBatch,
  type CoderAgentFirstConnection,
  type CoderAgentSource,
  type CoderAgentSourceOptions,
} from './agent-source.js';
export { createCoderStartSource, groupBuilds as startBuildsOfRows, type CoderStartSourceOptions } from './start-source.js';
export {
  allStartBuildsQuery,
  changedStartBuildsQuery,
  jobStagesQuery,
  startScriptRunsQuery,
  startsInProgressQuery,
  type JobStageRow,
  type StartBuildRow,
  type StartScriptRunRow,
} from './queries/workspace-starts.js';
export { CoderDatabaseError } from './coder-database-error.js';
export { connectionAdvice, withoutNodeHints } from './connection-advice.js';
export {
  DatabaseUrlError,
  SSL_MODES,
  databaseEndpoint,
  parseDatabaseUrl,
  redactDatabaseUrl,
  withPassword,
  type DatabaseUrl,
} from './database-url.js';
export { redactSecrets } from './secret-redaction.js';
export {
  AWAITING_REQUIREMENT,
  checkCoderSchema,
  FIRST_CONNECTION_REQUIREMENT,
  migrationName,
  SUPPORTED_CODER_SCHEMA,
  SUPPORTED_CODER_SCHEMA_TEXT,
  WORKSPACE_START_REQUIREMENT,
  type FeatureCheck,
  type SchemaCheck,
  type SchemaProblem,
  type SchemaProblemKind,
  type SchemaRequirement,
} from './schema-check.js';
