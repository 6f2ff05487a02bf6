import { errorMessage, settleOrAbort, type AgentQuery, type FirstConnectionSource, type Leadership, type Logger, type StartBatch, type StartQuery, type WorkspaceStartSource } from '@agentconn/core';
import {
  checkCoderSchema,
  connectionAdvice,
  withoutNodeHints,
  migrationName,
  SUPPORTED_CODER_SCHEMA,
  SUPPORTED_CODER_SCHEMA_TEXT,
  type SchemaCheck,
  type SchemaRequirement,
} from '@agentconn/kysely';
import { PGliteAdapter, sql, type Kysely } from 'kysely';
import { withIsLeader } from './leadership-wrap.js';

/** The database cannot serve the required families as it is; the message lists every problem and its fix. */
export class PreflightError extends Error {
  override readonly name = 'PreflightError';
  /** Undefined when the database could not be asked at all. */
  readonly check: SchemaCheck | undefined;
  readonly code: string | undefined;

  constructor(message: string, check: SchemaCheck | undefined, options: { cause?: unknown; code?: string } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.check = check;
    this.code = options.code;
  }
}

/** `unchecked` before the first run ends, `unreachable` when the database did not answer it. */
export type PreflightStatus = 'unchecked' | 'unreachable' | 'problems' | 'passed';

export interface PreflightOptions {
  readonly db: Kysely<unknown>;
  /** What the enabled families read; a required one with a problem stops polling, an optional one is turned off. */
  readonly requirements: readonly SchemaRequirement[];
  readonly logger: Logger;
  /** The database for log lines (without its password). */
  readonly database: string;
}

/** The readable summary of a check: one line per problem, one per fix, and what to say about the schema range. */
export function describeProblems(check: SchemaCheck, requirements: readonly SchemaRequirement[]): { problems: string[]; fixes: string[] } {
  const relevant = check.features.filter((f) => requirements.includes(f.requirement)).flatMap((f) => f.problems);
  const unique = [...new Set(relevant)];
  return { problems: unique.map((p) => p.text), fixes: [...new Set(unique.flatMap((p) => (p.fix === undefined ? [] : [p.fix])))] };
}

/** Where this database's Coder schema stands against the supported range, when it says. */
export function migrationNote(check: SchemaCheck): string | undefined {
  const version = check.coderMigration;
  if (version === undefined) return undefined;
  if (version < SUPPORTED_CODER_SCHEMA.fromMigration) return `this database is at migration ${migrationName(version)}, older than the supported range: upgrade Coder`;
  if (version > SUPPORTED_CODER_SCHEMA.throughMigration) return `this database is at migration ${migrationName(version)}, newer than the exporter was checked against`;
  return `this database is at migration ${migrationName(version)}`;
}

/**
 * Runs the preflight before the first poll and the first lock attempt, and again after a poll failed
 * for a reason of the schema (a missing column or table, a revoked grant). Until the required
 * families can be read, every poll fails with the full list of problems and no lock is taken; a
 * family whose own columns are missing is turned off with one warning, and the rest is served.
 */
export class Preflight {
  readonly #options: PreflightOptions;
  #passed: SchemaCheck | undefined;
  #running: Promise<SchemaCheck> | undefined;
  #lastFailure: string | undefined;
  #lastOff: string | undefined;
  #disabled = new Set<SchemaRequirement>();
  #everPassed = false;
  #status: PreflightStatus = 'unchecked';

  constructor(options: PreflightOptions) {
    this.#options = options;
  }

  /** Whether a family is on (every family is, until a preflight turned it off). */
  enabled(requirement: SchemaRequirement): boolean {
    return !this.#disabled.has(requirement);
  }

  /** How the last preflight ended. */
  get status(): PreflightStatus {
    return this.#status;
  }

  /** The last passed check, if any. */
  get passed(): SchemaCheck | undefined {
    return this.#passed;
  }

  /**
   * Resolves once the required families can be read; rejects with a `PreflightError` naming every
   * problem. On abort (a stop, the poll's timeout) its query is cancelled on the server, as a poll's is.
   */
  async ensure(signal: AbortSignal): Promise<void> {
    if (this.#passed !== undefined) return;
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
    await settleOrAbort(this.#running, signal, () => this.#cancel());
  }

  /** After a poll failed with a schema error: the next poll runs the preflight first. */
  invalidate(): void {
    this.#passed = undefined;
  }

  /** The source, behind the preflight; a family turned off is not asked for. */
  wrapSource(source: FirstConnectionSource, awaiting: SchemaRequirement): FirstConnectionSource {
    return {
      listAgents: async (query: AgentQuery) => {
        await this.ensure(query.signal);
        const { awaiting: _asked, ...withoutAwaiting } = query;
        try {
          return await source.listAgents(this.enabled(awaiting) ? query : withoutAwaiting);
        } catch (error) {
          if (isSchemaError(error)) this.invalidate();
          throw error;
        }
      },
    };
  }

  /** The start source, behind the preflight: while its family is off it reads nothing and reports nothing in progress. */
  wrapStartSource(source: WorkspaceStartSource, requirement: SchemaRequirement): WorkspaceStartSource {
    return {
      listStarts: async (query: StartQuery): Promise<StartBatch> => {
        await this.ensure(query.signal);
        if (!this.enabled(requirement)) return { builds: [], jobs: [], scripts: [], inProgress: [], now: new Date(), rowsRead: 0 };
        try {
          return await source.listStarts(query);
        } catch (error) {
          if (isSchemaError(error)) this.invalidate();
          throw error;
        }
      },
    };
  }

  /** The leadership, behind the preflight: no lock is taken on a database the exporter cannot read. */
  wrapLeadership(leadership: Leadership): Leadership {
    return withIsLeader(leadership, async (signal) => {
      await this.ensure(signal);
      return leadership.isLeader(signal);
    });
  }

  /** The backend running the preflight's statements, while it runs. */
  #backendPid: number | undefined;

  /** Cancels the preflight's statement from another connection (a table lock can hold it for long). */
  #cancel(): void {
    const { db } = this.#options;
    const pid = this.#backendPid;
    if (pid === undefined || db.getExecutor().adapter instanceof PGliteAdapter) return;
    void db
      .connection()
      .execute((other) => sql`SELECT pg_cancel_backend(${pid})`.execute(other))
      .catch(() => undefined);
  }

  async #run(): Promise<SchemaCheck> {
    const { db, requirements, logger, database } = this.#options;
    let check: SchemaCheck;
    try {
      // One connection for all its statements, so that one cancel reaches whichever runs.
      check = await db.connection().execute(async (connection) => {
        this.#backendPid = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(connection)).rows[0]?.pid;
        try {
          return await checkCoderSchema(connection, requirements);
        } finally {
          this.#backendPid = undefined;
        }
      });
    } catch (error) {
      this.#status = 'unreachable';
      // Not the schema's fault: the poll's error line says what (one per outage).
      const advice = connectionAdvice(error);
      throw new PreflightError(`${withoutNodeHints(errorMessage(error))}${advice === undefined ? '' : `; ${advice}`}`, undefined, {
        cause: error,
        ...codeOf(error),
      });
    }
    const required = requirements.filter((r) => r.required);
    const blocking = describeProblems(check, required);
    if (!check.hasCoderSchema || blocking.problems.length > 0) {
      const message = preflightMessage(check, required);
      if (message !== this.#lastFailure) {
        this.#lastFailure = message;
        logger.error('preflight: the exporter cannot read what it needs from this database; it checks again every interval', {
          error: message,
          database,
          role: check.role,
          problems: blocking.problems,
          fixes: blocking.fixes,
          supported_coder_schema: SUPPORTED_CODER_SCHEMA_TEXT,
          coder_migration: check.coderMigration === undefined ? null : migrationName(check.coderMigration),
        });
      }
      this.#status = 'problems';
      throw new PreflightError(message, check, { ...codeOf(check) });
    }
    this.#lastFailure = undefined;
    this.#disabled = new Set(check.features.filter((f) => !f.requirement.required && f.problems.length > 0).map((f) => f.requirement));
    const off = [...this.#disabled].map((r) => r.feature).join('|');
    if (off !== this.#lastOff) {
      this.#lastOff = off;
      for (const requirement of this.#disabled) {
        const { problems, fixes } = describeProblems(check, [requirement]);
        logger.warn(`preflight: ${requirement.feature} off: ${problems.join('; ')}`, {
          feature: requirement.feature,
          problems,
          fixes,
          note: 'the other metrics are served; the preflight runs again when a poll fails for a reason of the schema',
        });
      }
    }
    if (!this.#everPassed || off !== '') {
      logger.info('preflight passed', {
        server_version: check.serverVersion,
        role: check.role,
        coder_migration: check.coderMigration === undefined ? null : migrationName(check.coderMigration),
        on: requirements.filter((r) => this.enabled(r)).map((r) => r.feature),
        off: [...this.#disabled].map((r) => r.feature),
      });
    }
    this.#everPassed = true;
    this.#status = 'passed';
    this.#passed = check;
    return check;
  }
}

/** One line for /readyz, the poll's error and `check`: every problem, its fix, the supported range. */
export function preflightMessage(check: SchemaCheck, required: readonly SchemaRequirement[]): string {
  const note = migrationNote(check);
  const range = `supported: ${SUPPORTED_CODER_SCHEMA_TEXT}${note === undefined ? '' : `; ${note}`}`;
  if (!check.hasCoderSchema) {
    const tables = [...new Set(required.flatMap((r) => Object.keys(r.columns)))].join(', ');
    return `this database has no Coder schema: none of ${tables} is in database ${check.database} (role ${check.role}); point --database-url at Coder's database (${range})`;
  }
  const { problems, fixes } = describeProblems(check, required);
  const missing = check.problems.some((p) => p.kind === 'missing');
  return `preflight: ${problems.join('; ')}${fixes.length === 0 ? '' : `; to fix: ${fixes.join(' ')}`}${missing ? ` (${range})` : ''}`;
}

/** A poll that failed for a reason of the schema: undefined table or column, no privilege (SQLSTATE class 42). */
export function isSchemaError(error: unknown, depth = 5): boolean {
  if (!(error instanceof Error) || depth < 0) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^42/.test(code)) return true;
  return isSchemaError(error.cause, depth - 1);
}

function codeOf(from: unknown): { code?: string } {
  if (from instanceof Error) {
    const code = (from as { code?: unknown }).code;
    return typeof code === 'string' ? { code } : codeOf(from.cause);
  }
  const check = from as SchemaCheck | undefined;
  const denied = check?.problems.find((p) => p.kind === 'permission denied');
  if (denied !== undefined) return { code: '42501' };
  if (check?.problems.some((p) => p.kind === 'missing' && p.column !== undefined)) return { code: '42703' };
  if (check?.problems.some((p) => p.kind === 'missing')) return { code: '42P01' };
  return {};
}
