/**
 * Whole-start rows on the real server for the end-to-end suites: start builds that happen now (on the
 * database clock), each on a workspace of its own, with their job and agents.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { parseExposition } from '@agentconn/test-support/exposition-parser';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { type CoderDatabase } from '@agentconn/kysely';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { scrape } from './coder-data.js';

export interface StartDatabase {
  readonly database: TestDatabase;
  readonly db: Kysely<CoderDatabase>;
  close(): Promise<void>;
}

/** Epoch µs as RFC 3339 text with six fraction digits. */
function microsText(micros: number): string {
  const ms = Math.floor(micros / 1000);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(micros - ms * 1000).padStart(3, '0')}Z`;
}

export async function createStartDatabase(prefix = 'agentconn_start'): Promise<StartDatabase> {
  const database = await createTestDatabase(prefix);
  const db = createPostgresDb(database.url);
  await migrateToLatest(db);
  return {
    database,
    db,
    async close() {
      await db.destroy();
      await database.drop();
    },
  };
}

const ORG = '00000000-0000-4000-8000-0000000000aa';

async function nowMicros(db: Kysely<CoderDatabase>): Promise<number> {
  const { rows } = await sql<{ micros: string }>`SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS micros`.execute(db);
  return Number(rows[0]!.micros);
}

/** A template (by name, created once per database) and a fresh workspace of it owned by a fresh user. */
async function workspace(db: Kysely<CoderDatabase>, templateName: string): Promise<{ workspaceId: string; versionId: string }> {
  const t0 = '2026-01-01T00:00:00Z';
  const userId = randomUUID();
  await db.insertInto('users').values({ id: userId, email: `${userId}@example.com`, username: `u-${userId.slice(0, 8)}`, hashed_password: new Uint8Array(0), created_at: t0, updated_at: t0 }).execute();
  let template = await db.selectFrom('templates').select(['id', 'active_version_id']).where('name', '=', templateName).executeTakeFirst();
  if (template === undefined) {
    const id = randomUUID();
    const versionId = randomUUID();
    await db.insertInto('templates').values({ id, created_at: t0, updated_at: t0, organization_id: ORG, name: templateName, provisioner: 'terraform', active_version_id: versionId, created_by: userId }).execute();
    await db.insertInto('template_versions').values({ id: versionId, template_id: id, organization_id: ORG, created_at: t0, updated_at: t0, name: 'v1', readme: '', job_id: randomUUID(), created_by: userId }).execute();
    template = { id, active_version_id: versionId };
  }
  const workspaceId = randomUUID();
  await db.insertInto('workspaces').values({ id: workspaceId, created_at: t0, updated_at: t0, owner_id: userId, organization_id: ORG, template_id: template.id, name: `ws-${workspaceId.slice(0, 8)}` }).execute();
  return { workspaceId, versionId: template.active_version_id };
}

export interface StartBuildSpec {
  readonly template?: string;
  /** Seconds from the build's creation to its last agent's ready_at, which is now. Default 40. */
  readonly seconds?: number;
  /** Agent state: ready now (default), or never connected with this connection timeout. */
  readonly waitingWithTimeout?: number;
  /** Created and its job started now, nothing more: the test moves it on (job completion, agent connection, ready_at). */
  readonly progressing?: boolean;
}

export interface InsertedStartBuild {
  readonly buildId: string;
  readonly workspaceId: string;
  readonly versionId: string;
}

/**
 * A start build that ends now: created `seconds` ago, queued 1 % of it, provisioned until half of it, its
 * agent connected at three quarters and ready now. With `waitingWithTimeout`, the agent never connects.
 */
export async function insertStartBuild(db: Kysely<CoderDatabase>, spec: StartBuildSpec = {}): Promise<InsertedStartBuild> {
  const { workspaceId, versionId } = await workspace(db, spec.template ?? 'docker');
  const now = await nowMicros(db);
  const total = spec.progressing === true ? 0 : Math.round((spec.seconds ?? 40) * 1e6);
  const at = (share: number) => microsText(now - total + Math.round(total * share));
  const buildId = randomUUID();
  const jobId = randomUUID();
  const resourceId = randomUUID();
  await db
    .insertInto('provisioner_jobs')
    .values({ id: jobId, created_at: at(0), updated_at: at(0.5), started_at: at(0.01), completed_at: spec.progressing === true ? null : at(0.5), organization_id: ORG, initiator_id: randomUUID(), provisioner: 'terraform', storage_method: 'file', type: 'workspace_build', input: '{}', file_id: randomUUID() })
    .execute();
  await db
    .insertInto('workspace_builds')
    .values({ id: buildId, created_at: at(0), updated_at: at(0.5), workspace_id: workspaceId, template_version_id: versionId, build_number: 1, transition: 'start', initiator_id: randomUUID(), job_id: jobId })
    .execute();
  await db.insertInto('workspace_resources').values({ id: resourceId, created_at: at(0.5), job_id: jobId, transition: 'start', type: 'docker_container', name: 'dev' }).execute();
  const waiting = spec.waitingWithTimeout !== undefined || spec.progressing === true;
  await db
    .insertInto('workspace_agents')
    .values({
      id: randomUUID(),
      created_at: at(0.5),
      updated_at: at(0.5),
      name: 'main',
      first_connected_at: waiting ? null : at(0.75),
      ready_at: waiting ? null : at(1),
      lifecycle_state: waiting ? 'created' : 'ready',
      connection_timeout_seconds: spec.waitingWithTimeout ?? 0,
      resource_id: resourceId,
      auth_token: randomUUID(),
      architecture: 'amd64',
      operating_system: 'linux',
    })
    .execute();
  return { buildId, workspaceId, versionId };
}

/** A stop build after `build`: the start build is superseded now. */
export async function supersede(db: Kysely<CoderDatabase>, build: InsertedStartBuild): Promise<void> {
  const now = microsText(await nowMicros(db));
  const jobId = randomUUID();
  await db
    .insertInto('provisioner_jobs')
    .values({ id: jobId, created_at: now, updated_at: now, organization_id: ORG, initiator_id: randomUUID(), provisioner: 'terraform', storage_method: 'file', type: 'workspace_build', input: '{}', file_id: randomUUID() })
    .execute();
  await db
    .insertInto('workspace_builds')
    .values({ id: randomUUID(), created_at: now, updated_at: now, workspace_id: build.workspaceId, template_version_id: build.versionId, build_number: 2, transition: 'stop', initiator_id: randomUUID(), job_id: jobId })
    .execute();
}

/** Sum of the samples named `name` whose labels include every pair of `labels`. */
export function sumWhere(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  let total = 0;
  for (const sample of parseExposition(text).samples) {
    if (sample.name !== name) continue;
    const own = new Map(sample.labels);
    if (Object.entries(labels).every(([k, v]) => own.get(k) === v)) total += Number(sample.value);
  }
  return total;
}

/** Starts observed by the exporter at `url` (every outcome). */
export async function startsObserved(url: string, outcome?: string): Promise<number> {
  return sumWhere(await scrape(url), 'agentconn_workspace_start_seconds_count', outcome === undefined ? {} : { outcome });
}
