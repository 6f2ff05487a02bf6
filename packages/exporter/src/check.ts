import { errorMessage, settleOrAbort } from '@agentconn/core';
import {
  AWAITING_REQUIREMENT,
  checkCoderSchema,
  connectionAdvice,
  FIRST_CONNECTION_REQUIREMENT,
  WORKSPACE_START_REQUIREMENT,
  SUPPORTED_CODER_SCHEMA_TEXT,
  withoutNodeHints,
  type SchemaCheck,
} from '@agentconn/kysely';
import { postgresTlsConfig } from '@agentconn/kysely/postgres';
import { sql, type Kysely } from 'kysely';
import { openDatabase } from './coder-database.js';
import type { ExporterConfig } from './config.js';
import { describeLabels, describeLeader, describePublishedPoll } from './leader-identity.js';
import { AdvisoryLockLeadership } from './leader-lock.js';
import { describeProblems, migrationNote, preflightMessage } from './preflight.js';
import { exporterTimings } from './timings.js';
import type { Logger } from '@agentconn/core';

/** What the configured exporter reads: the whole start's tables too with `--phases`. */
function requirementsOf(config: Pick<ExporterConfig, 'phases'>) {
  return [FIRST_CONNECTION_REQUIREMENT, AWAITING_REQUIREMENT, ...(config.phases ? [WORKSPACE_START_REQUIREMENT] : [])];
}

/**
 * `agentconn-exporter check`: the preflight once, as a report on stdout. Connects as the exporter would,
 * reads the server version, TLS, Coder's migration, every table and column the metric families need
 * (all problems at once, each with its fix), and who holds the leader lock. True when the exporter
 * could serve (a family turned off is a warning, not a failure).
 */
export async function runCheck(config: ExporterConfig, write: (line: string) => void, logger: Logger): Promise<boolean> {
  const say = (label: string, text: string) => write(`${label.padEnd(8)} ${text}\n`);
  const REQUIREMENTS = requirementsOf(config);
  const timings = exporterTimings(config);
  const database = openDatabase(config, timings, logger);
  const signal = AbortSignal.timeout(Math.max(timings.connectTimeoutMs * 2, config.statementTimeoutMs));
  say('database', database.url?.redacted ?? 'supplied by the program');
  try {
    let check: SchemaCheck;
    try {
      check = await settleOrAbort(checkCoderSchema(database.db as Kysely<unknown>, REQUIREMENTS), signal);
    } catch (error) {
      const advice = connectionAdvice(error);
      say('error', `${withoutNodeHints(errorMessage(error))}${advice === undefined ? '' : `; ${advice}`}`);
      say('result', 'not ready: the database did not answer');
      return false;
    }
    say('server', `PostgreSQL ${check.serverVersion}, role ${check.role}, database ${check.database}; ${await tlsState(database.db as Kysely<unknown>, database.url?.text)}`);
    const note = migrationNote(check);
    say('coder', `supported: ${SUPPORTED_CODER_SCHEMA_TEXT}${note === undefined ? " (Coder's schema_migrations is not readable here)" : `; ${note}`}`);

    const required = REQUIREMENTS.filter((r) => r.required);
    const blocking = describeProblems(check, required);
    if (!check.hasCoderSchema) {
      say('problem', preflightMessage(check, required));
      say('result', 'not ready: no Coder schema');
      return false;
    }
    for (const feature of check.features) {
      const { problems } = describeProblems(check, [feature.requirement]);
      const own = problems.filter((p) => !blocking.problems.includes(p));
      if (problems.length === 0) say('ok', feature.requirement.feature);
      else if (!feature.requirement.required && own.length > 0) say('off', `${feature.requirement.feature}: ${own.join('; ')}`);
    }
    for (const problem of blocking.problems) say('problem', problem);
    const allFixes = describeProblems(check, REQUIREMENTS).fixes;
    for (const fix of allFixes) say('fix', fix);
    if (config.leaderElection) say('leader', await leaderState(config, timings, logger, database.url?.text));
    if (blocking.problems.length > 0) {
      say('result', `not ready: ${blocking.problems.length} problem${blocking.problems.length === 1 ? '' : 's'}; the exporter would serve nothing until they are fixed`);
      return false;
    }
    const off = check.features.filter((f) => !f.requirement.required && f.problems.length > 0).length;
    say('result', off === 0 ? 'ready: every metric family can be read' : `ready: ${off} metric famil${off === 1 ? 'y is' : 'ies are'} off (see above)`);
    return true;
  } finally {
    if (database.owned) await database.db.destroy().catch(() => undefined);
  }
}

async function tlsState(db: Kysely<unknown>, url: string | undefined): Promise<string> {
  let sslmode = '';
  try {
    if (url !== undefined) sslmode = `, sslmode=${postgresTlsConfig(url).sslmode}`;
  } catch {
    // Already connected: the URL's TLS parameters worked.
  }
  try {
    const row = (await sql<{ ssl: boolean; version: string | null }>`SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(db)).rows[0];
    return row?.ssl === true ? `TLS ${row.version ?? ''}${sslmode}` : `not encrypted${sslmode}`;
  } catch {
    return `TLS unknown${sslmode}`;
  }
}

async function leaderState(config: ExporterConfig, timings: ReturnType<typeof exporterTimings>, logger: Logger, url: string | undefined): Promise<string> {
  const connectionString = config.leaderDatabaseUrl ?? url;
  if (connectionString === undefined) return 'unknown: no URL for the lock connection';
  const lock = new AdvisoryLockLeadership({ connectionString, logger, connectTimeoutMs: timings.connectTimeoutMs, queryTimeoutMs: timings.leaderQueryTimeoutMs });
  try {
    const leader = await lock.whoLeads(AbortSignal.timeout(timings.connectTimeoutMs + timings.leaderQueryTimeoutMs));
    if (leader === undefined) return 'none: no process holds the leader lock (a started exporter takes it)';
    return `${describeLeader(leader)}, labels ${describeLabels(leader)}, last published poll ${describePublishedPoll(leader)}`;
  } catch (error) {
    return `unknown: ${errorMessage(error)}`;
  }
}
