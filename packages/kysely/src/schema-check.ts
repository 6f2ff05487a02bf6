/**
 * The preflight: before it reads anything, a reader of Coder's database checks that every table and
 * column its metric families need is there and readable, and reports every problem at once, each with
 * the statement that fixes it. What each family reads is data (`SchemaRequirement`), so a new family
 * adds its own set.
 */
import { sql, type Kysely } from 'kysely';
import { AGENT_SOURCE_COLUMNS, START_SOURCE_COLUMNS } from './schema.js';

/** What one metric family reads from Coder's database. */
export interface SchemaRequirement {
  /** Names the family in messages, e.g. `coderd_agents_first_connection_seconds`. */
  readonly feature: string;
  /**
   * True: nothing is served without it, and a problem stops all polling until fixed. False: a
   * problem turns this family off (one warning naming it) and the others go on.
   */
  readonly required: boolean;
  /** The columns it reads, per table. */
  readonly columns: Readonly<Record<string, readonly string[]>>;
}

/**
 * The Coder schema the queries rely on: `workspace_agents.deleted` came with migration 000338 (Coder
 * v2.24.0); the newest migration they were checked against is 000532.
 */
export const SUPPORTED_CODER_SCHEMA = { fromMigration: 338, fromRelease: 'v2.24.0', throughMigration: 532 } as const;

/** The supported range in words, for messages and the README. */
export const SUPPORTED_CODER_SCHEMA_TEXT = `Coder's schema from migration ${migrationName(SUPPORTED_CODER_SCHEMA.fromMigration)} (Coder ${SUPPORTED_CODER_SCHEMA.fromRelease}) through ${migrationName(SUPPORTED_CODER_SCHEMA.throughMigration)}`;

/** The histogram: agents of the latest build with their labels (Coder PR #24179's query). */
export const FIRST_CONNECTION_REQUIREMENT: SchemaRequirement = {
  feature: 'coderd_agents_first_connection_seconds',
  required: true,
  columns: { ...AGENT_SOURCE_COLUMNS, workspace_agents: AGENT_SOURCE_COLUMNS.workspace_agents.filter((c) => c !== 'connection_timeout_seconds') },
};

/** The agents still waiting, their oldest wait and their timeouts, which read each agent's own timeout. */
export const AWAITING_REQUIREMENT: SchemaRequirement = {
  feature: 'coderd_agents_awaiting_first_connection, coderd_agents_awaiting_first_connection_oldest_seconds, coderd_agents_first_connection_timeouts_total',
  required: false,
  columns: AGENT_SOURCE_COLUMNS,
};

/**
 * The whole start (`--phases`): builds, their jobs and stage timings, the agents' lifecycle and the start
 * scripts' runs. Optional: without these tables (an older Coder) the family is off and the rest goes on.
 */
export const WORKSPACE_START_REQUIREMENT: SchemaRequirement = {
  feature:
    'agentconn_workspace_start_seconds, agentconn_workspace_start_phase_seconds, agentconn_provisioner_stage_seconds, agentconn_agent_startup_script_seconds, agentconn_workspace_starts_in_progress, agentconn_workspace_starts_in_progress_oldest_seconds',
  required: false,
  columns: START_SOURCE_COLUMNS,
};

export type SchemaProblemKind = 'missing' | 'permission denied' | 'not on the search path' | 'select failed';

export interface SchemaProblem {
  readonly table: string;
  /** Undefined when the problem is the whole table's. */
  readonly column?: string;
  readonly kind: SchemaProblemKind;
  /** One line: `users.username: missing`, `users: permission denied`. */
  readonly text: string;
  /** The statement or setting that fixes it, when one does. */
  readonly fix?: string;
  /** For `select failed`: the error's SQLSTATE. */
  readonly code?: string;
}

export interface FeatureCheck {
  readonly requirement: SchemaRequirement;
  /** What keeps this family from reading (shared problems appear under every family they affect). */
  readonly problems: readonly SchemaProblem[];
}

export interface SchemaCheck {
  /** `server_version`, e.g. `15.20 (Debian 15.20-0+deb12u1)`. */
  readonly serverVersion: string;
  readonly role: string;
  readonly database: string;
  readonly searchPath: string;
  /** Coder's `schema_migrations.version` when this role may read it. */
  readonly coderMigration: number | undefined;
  /** False when no table of any requirement exists anywhere in the database. */
  readonly hasCoderSchema: boolean;
  readonly features: readonly FeatureCheck[];
  /** Every problem once, in the order of the requirements. */
  readonly problems: readonly SchemaProblem[];
}

interface ColumnRow {
  table_name: string;
  column_name: string;
  qualified: string | null;
  column_found: boolean;
  can_select: boolean | null;
}

interface ElsewhereRow {
  table_name: string;
  schema_name: string;
  usage: boolean;
}

/**
 * Reads the server version, the role, Coder's migration (when readable), and for every table and column
 * of `requirements` whether it exists on the search path and whether this role may SELECT it; then runs
 * `SELECT <columns> FROM <table> LIMIT 0` on every table that passed, to prove it. Rejects when the
 * database cannot be asked (connection, timeout, a cancelled statement).
 */
export async function checkCoderSchema(db: Kysely<unknown>, requirements: readonly SchemaRequirement[]): Promise<SchemaCheck> {
  const about = (
    await sql<{ server_version: string; role: string; database: string; search_path: string; role_ident: string }>`
      SELECT current_setting('server_version') AS server_version, current_user AS role, current_database() AS database,
             current_setting('search_path') AS search_path, quote_ident(current_user) AS role_ident`.execute(db)
  ).rows[0];
  if (about === undefined) throw new Error('the server did not say who it is');

  const wanted = new Map<string, Set<string>>();
  for (const requirement of requirements) {
    for (const [table, columns] of Object.entries(requirement.columns)) {
      const set = wanted.get(table) ?? new Set<string>();
      for (const column of columns) set.add(column);
      wanted.set(table, set);
    }
  }
  const pairs = [...wanted].flatMap(([table, columns]) => [...columns].map((column) => [table, column] as const));
  const rows = (
    await sql<ColumnRow>`
      SELECT r.table_name, r.column_name, c.oid::regclass::text AS qualified, a.attname IS NOT NULL AS column_found,
             CASE WHEN a.attname IS NOT NULL THEN has_column_privilege(c.oid, a.attname, 'SELECT') END AS can_select
        FROM unnest(${pairs.map(([table]) => table)}::text[], ${pairs.map(([, column]) => column)}::text[]) WITH ORDINALITY AS r(table_name, column_name, n)
        LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(r.table_name))
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = r.column_name AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY r.n`.execute(db)
  ).rows;
  const missingTables = [...new Set(rows.filter((r) => r.qualified === null).map((r) => r.table_name))];
  const elsewhere =
    missingTables.length === 0
      ? []
      : (
          await sql<ElsewhereRow>`
            SELECT c.relname AS table_name, n.nspname AS schema_name, has_schema_privilege(n.oid, 'USAGE') AS usage
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = ANY(${missingTables}::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY n.nspname`.execute(db)
        ).rows;

  const problemsByTable = new Map<string, SchemaProblem[]>();
  const add = (problem: SchemaProblem) => problemsByTable.set(problem.table, [...(problemsByTable.get(problem.table) ?? []), problem]);
  for (const table of wanted.keys()) {
    const tableRows = rows.filter((r) => r.table_name === table);
    const qualified = tableRows[0]?.qualified ?? null;
    if (qualified === null) {
      const found = elsewhere.find((e) => e.table_name === table);
      if (found === undefined) add({ table, kind: 'missing', text: `${table}: missing` });
      else if (!found.usage) {
        add({
          table,
          kind: 'permission denied',
          text: `${table}: permission denied (it is in schema ${found.schema_name}, which this role may not use)`,
          fix: `GRANT USAGE ON SCHEMA ${quoteIdent(found.schema_name)} TO ${about.role_ident};`,
        });
      } else {
        add({
          table,
          kind: 'not on the search path',
          text: `${table}: not on the search path ${about.search_path} (it is in schema ${found.schema_name})`,
          fix: `add options=-c%20search_path%3D${encodeURIComponent(found.schema_name)} to the database URL`,
        });
      }
      continue;
    }
    for (const row of tableRows.filter((r) => !r.column_found)) add({ table, column: row.column_name, kind: 'missing', text: `${table}.${row.column_name}: missing` });
    const present = tableRows.filter((r) => r.column_found);
    const denied = present.filter((r) => r.can_select !== true);
    if (denied.length > 0) {
      const fix = `GRANT SELECT (${denied.map((r) => quoteIdent(r.column_name)).join(', ')}) ON ${qualified} TO ${about.role_ident};`;
      if (denied.length === present.length) add({ table, kind: 'permission denied', text: `${table}: permission denied`, fix });
      else for (const row of denied) add({ table, column: row.column_name, kind: 'permission denied', text: `${table}.${row.column_name}: permission denied`, fix });
    }
    if (denied.length === 0 && present.length > 0) {
      // The catalog says yes; a real SELECT proves it (row security, a view that does not work, …).
      const list = sql.join(present.map((r) => sql.id(r.column_name)));
      try {
        await sql`SELECT ${list} FROM ${sql.raw(qualified)} LIMIT 0`.execute(db);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        // Only a fault of the schema or its privileges (SQLSTATE class 42) is a problem of the table; a
        // cancelled statement or a lost connection fails the whole check.
        if (typeof code !== 'string' || !code.startsWith('42')) throw error;
        add({
          table,
          kind: 'select failed',
          text: `${table}: SELECT failed: ${error instanceof Error ? error.message : String(error)}`,
          ...(typeof code === 'string' && { code }),
        });
      }
    }
  }

  const features = requirements.map((requirement) => ({
    requirement,
    problems: Object.entries(requirement.columns).flatMap(([table, columns]) =>
      (problemsByTable.get(table) ?? []).filter((p) => p.column === undefined || columns.includes(p.column)),
    ),
  }));
  const problems = [...new Set(features.flatMap((f) => f.problems))];
  const hasCoderSchema = missingTables.length < wanted.size || elsewhere.length > 0;
  return {
    serverVersion: about.server_version,
    role: about.role,
    database: about.database,
    searchPath: about.search_path,
    coderMigration: await coderMigration(db),
    hasCoderSchema,
    features,
    problems,
  };
}

/** `schema_migrations.version` (golang-migrate's table, which Coder keeps), if there and readable. */
async function coderMigration(db: Kysely<unknown>): Promise<number | undefined> {
  const readable = (
    await sql<{ readable: boolean }>`
      SELECT coalesce((SELECT has_table_privilege(c.oid, 'SELECT') FROM pg_class c WHERE c.oid = to_regclass('schema_migrations')), false) AS readable`.execute(
      db,
    )
  ).rows[0]?.readable;
  if (readable !== true) return undefined;
  try {
    const version = (await sql<{ version: string | number }>`SELECT version FROM schema_migrations LIMIT 1`.execute(db)).rows[0]?.version;
    return version === undefined ? undefined : Number(version);
  } catch {
    return undefined;
  }
}

/** `000338`, as Coder names its migration files. */
export function migrationName(version: number): string {
  return String(version).padStart(6, '0');
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}
