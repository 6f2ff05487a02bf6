/**
 * `@agentconn/kysely/testing`: for demos, tests and benchmarks only. The Coder schema subset as Kysely
 * migrations (never run them against a real Coder database: Coder owns its schema) and a seeded,
 * set-based generator of Coder workspaces, builds and agents.
 */
export {
  coderSchemaMigrations,
  coderSchemaSubsetMigration,
  workspaceStartTablesMigration,
  migrateToLatest,
  type MigrateToLatestOptions,
} from './migrations/index.js';
export {
  addWorkspaces,
  connectAgents,
  connectDelays,
  generateCoderData,
  type AddWorkspacesSpec,
  type ConnectAgentsSpec,
  type ConnectDelay,
  type ConnectedAgent,
  type GenerateProgress,
  type GenerateProgressPhase,
  type GenerateSpec,
  type GeneratedAgent,
  type GeneratedCoderData,
  type GeneratedCounts,
  type GeneratedTemplate,
  type GeneratedUser,
  type WorkspaceSpec,
} from './generate.js';
