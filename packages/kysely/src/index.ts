/**
 * `@agentconn/kysely`: the Coder schema subset as Kysely types and migrations, the first-connection
 * source for `@agentconn/core` and the opt-in index. Database drivers live in their own entry points:
 * `@agentconn/kysely/postgres` (pg) and `@agentconn/kysely/pglite` (PGlite); this one imports neither.
 * Migrations of the schema subset and the data generator are in `@agentconn/kysely/testing`.
 */
export {
  AGENT_SOURCE_COLUMNS,
  CODER_TABLES,
  PROVISIONER_TYPES,
  WORKSPACE_AGENT_LIFECYCLE_STATES,
  WORKSPACE_TRANSITIONS,
  type Bytea,
  type CoderDatabase,
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
  AWAITING_CREATED_AT_INDEX_NAME,
  awaitingCreatedAtIndexMigration,
  createAwaitingCreatedAtIndex,
  dropAwaitingCreatedAtIndex,
} from './awaiting-created-at-index.js';
export {
  FIRST_CONNECTED_AT_INDEX_NAME,
  createFirstConnectedAtIndex,
  dropFirstConnectedAtIndex,
  firstConnectedAtIndexMigration,
} from './first-connected-at-index.js';
export {
  connectedAgentsQuery,
  workspaceAgentsForMetricsQuery,
  transactionClockQuery,
  utcMicrosText,
  type ConnectedAgentRow,
  type LatestBuildForm,
} from './agents-query.js';
export { awaitingAgentsQuery, currentBuildLookup, type AwaitingAgentRow, type AwaitingAgentsQueryOptions } from './awaiting-query.js';
export { changedAgentsQuery, type ChangedAgentRow, type ChangedAgentsQueryOptions } from './changed-agents-query.js';
export { effectiveTimeoutSeconds, passedTimeoutText } from './timeout-sql.js';
export {
  createCoderAgentSource,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  type CoderAgentBatch,
  type CoderAgentFirstConnection,
  type CoderAgentSource,
  type CoderAgentSourceOptions,
} from './source.js';
export { CoderDatabaseError } from './coder-database-error.js';
export {
  DatabaseUrlError,
  SSL_MODES,
  parseDatabaseUrl,
  redactDatabaseUrl,
  withPassword,
  type DatabaseUrl,
} from './database-url.js';
export { redactSecrets } from './secret-redaction.js';
