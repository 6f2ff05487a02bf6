/**
 * Test, demo and benchmark data in the Coder schema subset, fast and reproducible: every value comes
 * from a seeded PRNG in this process, and rows go in with set-based `INSERT ... SELECT FROM unnest(...)`
 * batches (one statement per `batchSize` rows), inside one transaction. The result reports every agent
 * created with the facts that decide whether it counts, so tests compute expectations without the
 * source's query.
 */
import { formatEpochMicros, toEpochMicros } from '@agentconn/core';
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import { currentAgents } from '../queries/current-agents.js';
import { utcMicrosText } from '../queries/utc-micros-text.js';
import { createRandom, type Random } from './random.js';
import type { CoderDatabase } from '../schema.js';

/** Seconds from an agent's creation to its first connection, drawn with the generator's PRNG. */
export type ConnectDelay = (random: () => number) => number;

/** Ready-made connect-delay distributions. */
export const connectDelays = {
  fixed: (seconds: number): ConnectDelay => () => seconds,
  uniform: (minSeconds: number, maxSeconds: number): ConnectDelay => (random) =>
    minSeconds + (maxSeconds - minSeconds) * random(),
  exponential: (meanSeconds: number): ConnectDelay => (random) => -meanSeconds * Math.log(1 - random()),
  /** Log-normal with the given median; `sigma` is the standard deviation of the log. */
  logNormal: (medianSeconds: number, sigma: number): ConnectDelay => (random) => {
    const u1 = 1 - random();
    const u2 = random();
    const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    return medianSeconds * Math.exp(sigma * z);
  },
} as const;

export type GenerateProgressPhase =
  | 'users'
  | 'templates'
  | 'template_versions'
  | 'workspaces'
  | 'workspace_builds'
  | 'workspace_resources'
  | 'workspace_agents';

export interface GenerateProgress {
  readonly phase: GenerateProgressPhase;
  /** Rows of this phase inserted so far. */
  readonly done: number;
  readonly total: number;
}

/** Options shared by `generateCoderData` and `addWorkspaces`. */
export interface WorkspaceSpec {
  /** PRNG seed: the same seed and `baseTime` give the same rows. Default 1. */
  readonly seed?: number;
  readonly workspaces: number;
  /** Default 1. */
  readonly agentsPerWorkspace?: number;
  /** Builds per workspace, numbered 1..n; only the last one's agents count. Default 2. */
  readonly buildsPerWorkspace?: number;
  /** Share of workspaces marked deleted. Default 0.05. */
  readonly deletedWorkspaceRatio?: number;
  /** Share of agents marked deleted. Default 0.02. */
  readonly deletedAgentRatio?: number;
  /** Share of agents that never connected (`first_connected_at` NULL). Default 0.1. */
  readonly neverConnectedRatio?: number;
  /** Share of connected agents whose `first_connected_at` is before `created_at` (clock skew). Default 0.01. */
  readonly negativeRatio?: number;
  /** Default `connectDelays.exponential(30)`. Rounded to whole microseconds. */
  readonly connectDelay?: ConnectDelay;
  /** The latest builds are created within `spanSeconds` before this. Default: now. */
  readonly baseTime?: Date | string;
  /** Default 86 400 (one day). */
  readonly spanSeconds?: number;
  /** Names with quotes, backslashes, newlines and non-ASCII characters. Default false. */
  readonly specialLabels?: boolean;
  /** Rows per INSERT statement. Default 10 000. */
  readonly batchSize?: number;
  /** Report every agent in the result (set false for millions). Default true. */
  readonly collectAgents?: boolean;
  readonly onProgress?: (progress: GenerateProgress) => void;
}

export interface GenerateSpec extends WorkspaceSpec {
  /** Default 10. */
  readonly users?: number;
  /** Default 3. */
  readonly templates?: number;
  /** Default 2. */
  readonly versionsPerTemplate?: number;
}

export interface AddWorkspacesSpec extends WorkspaceSpec {
  /** Required here: ids come from it, so each call on one database needs its own. */
  readonly seed: number;
  /** Prefix of the new workspace names, unique per call on one database. Default `ws-s<seed>-`. */
  readonly namePrefix?: string;
}

export interface GeneratedUser {
  readonly id: string;
  readonly username: string;
}

export interface GeneratedTemplate {
  readonly id: string;
  readonly name: string;
  readonly versions: readonly { readonly id: string; readonly name: string }[];
}

/** One agent row as created, with the facts that decide whether Coder PR #24179's rule counts it. */
export interface GeneratedAgent {
  readonly id: string;
  readonly name: string;
  readonly workspaceId: string;
  readonly workspaceName: string;
  readonly username: string;
  readonly templateName: string;
  readonly templateVersionName: string;
  readonly buildNumber: number;
  /** Whether its build is the workspace's latest. */
  readonly latestBuild: boolean;
  readonly workspaceDeleted: boolean;
  readonly deleted: boolean;
  readonly createdAtMicros: number;
  /** Null when it never connected. */
  readonly firstConnectedAtMicros: number | null;
}

export interface GeneratedCounts {
  readonly users: number;
  readonly templates: number;
  readonly templateVersions: number;
  readonly workspaces: number;
  readonly workspaceBuilds: number;
  readonly workspaceResources: number;
  readonly workspaceAgents: number;
}

export interface GeneratedCoderData {
  readonly organizationId: string;
  readonly users: readonly GeneratedUser[];
  readonly templates: readonly GeneratedTemplate[];
  /** Every agent created, unless `collectAgents` was false. */
  readonly agents: readonly GeneratedAgent[];
  /** Rows inserted by this call, per table. */
  readonly counts: GeneratedCounts;
  readonly elapsedMs: number;
}

interface Context {
  readonly organizationId: string;
  readonly users: readonly GeneratedUser[];
  readonly templates: readonly GeneratedTemplate[];
}

/**
 * Creates users, templates with versions, and workspaces with their builds, resources and agents.
 * Inserts nothing when it fails (one transaction). Once per database: user, template and workspace
 * names are fixed (`user-0`, `template-0`, `ws-0`, ...) and Coder's unique indexes reject repeats;
 * add more with `addWorkspaces` and `connectAgents`.
 */
export async function generateCoderData(db: Kysely<CoderDatabase>, spec: GenerateSpec): Promise<GeneratedCoderData> {
  const started = performance.now();
  const seed = spec.seed ?? 1;
  const userCount = positiveInteger('users', spec.users ?? 10);
  const templateCount = positiveInteger('templates', spec.templates ?? 3);
  const versionsPerTemplate = positiveInteger('versionsPerTemplate', spec.versionsPerTemplate ?? 2);
  const plan = planWorkspaces(spec);
  const random = createRandom(seed);
  const special = plan.specialLabels;
  const base = plan.baseMicros;

  const organizationId = random.uuid();
  const users: GeneratedUser[] = [];
  for (let i = 0; i < userCount; i++) users.push({ id: random.uuid(), username: userName(i, special) });
  const templates: GeneratedTemplate[] = [];
  for (let i = 0; i < templateCount; i++) {
    const versions = [];
    for (let v = 0; v < versionsPerTemplate; v++) versions.push({ id: random.uuid(), name: versionName(v, special) });
    templates.push({ id: random.uuid(), name: templateName(i, special), versions });
  }
  const context: Context = { organizationId, users, templates };
  const createdText = formatEpochMicros(base - plan.spanMicros - 30 * DAY_MICROS);

  return db.transaction().execute(async (trx) => {
    const progress = spec.onProgress;
    await insertBatches('users', users, plan.batchSize, progress, (rows, start) =>
      trx
        .insertInto('users')
        .columns(['id', 'email', 'username', 'hashed_password', 'created_at', 'updated_at'])
        .expression(
          sql`SELECT id, email, username, ''::bytea, ${createdText}::timestamptz, ${createdText}::timestamptz FROM ${unnest([
            [rows.map((u) => u.id), 'uuid'],
            [rows.map((_, i) => `user-${start + i}@example.com`), 'text'],
            [rows.map((u) => u.username), 'text'],
          ])} AS t(id, email, username)`,
        ),
    );
    const creator = users[0]!.id;
    await insertBatches('templates', templates, plan.batchSize, progress, (rows) =>
      trx
        .insertInto('templates')
        .columns(['id', 'created_at', 'updated_at', 'organization_id', 'name', 'provisioner', 'active_version_id', 'created_by'])
        .expression(
          sql`SELECT id, ${createdText}::timestamptz, ${createdText}::timestamptz, ${organizationId}::uuid, name, 'terraform'::provisioner_type, active_version_id, ${creator}::uuid FROM ${unnest(
            [
              [rows.map((t) => t.id), 'uuid'],
              [rows.map((t) => t.name), 'text'],
              [rows.map((t) => t.versions.at(-1)!.id), 'uuid'],
            ],
          )} AS t(id, name, active_version_id)`,
        ),
    );
    const versions = templates.flatMap((t) => t.versions.map((v) => ({ ...v, templateId: t.id, jobId: random.uuid() })));
    await insertBatches('template_versions', versions, plan.batchSize, progress, (rows) =>
      trx
        .insertInto('template_versions')
        .columns(['id', 'template_id', 'organization_id', 'created_at', 'updated_at', 'name', 'readme', 'job_id', 'created_by'])
        .expression(
          sql`SELECT id, template_id, ${organizationId}::uuid, ${createdText}::timestamptz, ${createdText}::timestamptz, name, '', job_id, ${creator}::uuid FROM ${unnest(
            [
              [rows.map((v) => v.id), 'uuid'],
              [rows.map((v) => v.templateId), 'uuid'],
              [rows.map((v) => v.name), 'text'],
              [rows.map((v) => v.jobId), 'uuid'],
            ],
          )} AS t(id, template_id, name, job_id)`,
        ),
    );
    const created = await insertWorkspaces(trx, context, plan, random, (i) => workspaceName('ws-', i, special));
    return {
      ...context,
      agents: created.agents,
      counts: {
        users: users.length,
        templates: templates.length,
        templateVersions: versions.length,
        ...created.counts,
      },
      elapsedMs: performance.now() - started,
    };
  });
}

/**
 * Adds workspaces (with builds, resources and agents) owned by the existing users and based on the
 * existing templates and their versions. Give each call its own `seed` (ids come from it).
 */
export async function addWorkspaces(db: Kysely<CoderDatabase>, spec: AddWorkspacesSpec): Promise<GeneratedCoderData> {
  const started = performance.now();
  const plan = planWorkspaces(spec);
  const seed = spec.seed;
  const random = createRandom(seed ^ 0x5bd1e995);
  const prefix = spec.namePrefix ?? `ws-s${seed}-`;
  const special = plan.specialLabels;
  return db.transaction().execute(async (trx) => {
    const users = await trx
      .selectFrom('users')
      .select(['id', 'username'])
      .where('deleted', '=', false)
      .orderBy('id')
      .execute();
    const templateRows = await trx
      .selectFrom('templates as t')
      .innerJoin('template_versions as tv', 'tv.template_id', 't.id')
      .select(['t.id as template_id', 't.name as template_name', 't.organization_id', 'tv.id as version_id', 'tv.name as version_name'])
      .where('t.deleted', '=', false)
      .orderBy('t.id')
      .orderBy('tv.created_at')
      .orderBy('tv.id')
      .execute();
    if (users.length === 0 || templateRows.length === 0) {
      throw new Error('addWorkspaces needs existing users and templates with versions: run generateCoderData first');
    }
    const templates = new Map<string, { id: string; name: string; versions: { id: string; name: string }[] }>();
    for (const row of templateRows) {
      let template = templates.get(row.template_id);
      if (template === undefined) {
        template = { id: row.template_id, name: row.template_name, versions: [] };
        templates.set(row.template_id, template);
      }
      template.versions.push({ id: row.version_id, name: row.version_name });
    }
    const context: Context = { organizationId: templateRows[0]!.organization_id, users, templates: [...templates.values()] };
    const created = await insertWorkspaces(trx, context, plan, random, (i) => workspaceName(prefix, i, special));
    return {
      ...context,
      agents: created.agents,
      counts: { users: 0, templates: 0, templateVersions: 0, ...created.counts },
      elapsedMs: performance.now() - started,
    };
  });
}

export interface ConnectAgentsSpec {
  /** How many not-yet-connected agents to connect. */
  readonly count: number;
  /** Their `first_connected_at`. Default: the database's `clock_timestamp()`. */
  readonly at?: Date | string;
}

export interface ConnectedAgent {
  readonly id: string;
  readonly name: string;
  readonly workspaceName: string;
  readonly username: string;
  readonly templateName: string;
  readonly createdAtMicros: number;
  readonly firstConnectedAtMicros: number;
}

/**
 * A trickle of first connections: sets `first_connected_at` (and `last_connected_at`) on up to `count`
 * agents that have not connected yet, oldest first, choosing among agents that count (not deleted, of
 * the latest build of a non-deleted workspace). Resolves with the agents it connected.
 */
export async function connectAgents(db: Kysely<CoderDatabase>, spec: ConnectAgentsSpec): Promise<ConnectedAgent[]> {
  const count = nonNegativeInteger('count', spec.count);
  if (count === 0) return [];
  return db.transaction().execute(async (trx) => {
    const candidates = await currentAgents(trx)
      .select(['wa.id', 'wa.name', 'w.name as workspace_name', 'u.username', 't.name as template_name'])
      .where('wa.first_connected_at', 'is', null)
      .orderBy('wa.created_at')
      .orderBy('wa.id')
      .limit(count)
      .forUpdate('wa')
      .execute();
    if (candidates.length === 0) return [];
    const at = spec.at === undefined ? sql<Date>`clock_timestamp()` : sql<Date>`${toText(spec.at)}::timestamptz`;
    const updated = await trx
      .updateTable('workspace_agents')
      .set({ first_connected_at: at, last_connected_at: at, lifecycle_state: 'ready' })
      .where(
        'id',
        'in',
        candidates.map((c) => c.id),
      )
      .returning((eb) => [
        'id',
        utcMicrosText(eb.ref('created_at')).as('created_at'),
        utcMicrosText(eb.ref('first_connected_at')).as('first_connected_at'),
      ])
      .execute();
    const byId = new Map(updated.map((row) => [row.id, row]));
    return candidates.map((c) => {
      const row = byId.get(c.id)!;
      return {
        id: c.id,
        name: c.name,
        workspaceName: c.workspace_name,
        username: c.username,
        templateName: c.template_name,
        createdAtMicros: micros(row.created_at),
        firstConnectedAtMicros: micros(row.first_connected_at),
      };
    });
  });
}

const SECOND_MICROS = 1_000_000;
const DAY_MICROS = 86_400 * SECOND_MICROS;
const BUILD_GAP_MICROS = 3600 * SECOND_MICROS;
/** Largest clock skew of a negative duration. */
const MAX_SKEW_MICROS = 5 * SECOND_MICROS;

interface WorkspacePlan {
  readonly workspaces: number;
  readonly agentsPerWorkspace: number;
  readonly buildsPerWorkspace: number;
  readonly deletedWorkspaceRatio: number;
  readonly deletedAgentRatio: number;
  readonly neverConnectedRatio: number;
  readonly negativeRatio: number;
  readonly connectDelay: ConnectDelay;
  readonly baseMicros: number;
  readonly spanMicros: number;
  readonly batchSize: number;
  readonly collectAgents: boolean;
  readonly specialLabels: boolean;
  readonly onProgress: ((progress: GenerateProgress) => void) | undefined;
}

function planWorkspaces(spec: WorkspaceSpec): WorkspacePlan {
  const baseMicros = spec.baseTime === undefined ? Date.now() * 1000 : toEpochMicros(spec.baseTime);
  if (baseMicros === undefined) throw new RangeError(`baseTime is not a valid time: ${String(spec.baseTime)}`);
  const spanSeconds = spec.spanSeconds ?? 86_400;
  if (!Number.isFinite(spanSeconds) || spanSeconds < 0) throw new RangeError(`spanSeconds must be >= 0, got ${spanSeconds}`);
  return {
    workspaces: nonNegativeInteger('workspaces', spec.workspaces),
    agentsPerWorkspace: positiveInteger('agentsPerWorkspace', spec.agentsPerWorkspace ?? 1),
    buildsPerWorkspace: positiveInteger('buildsPerWorkspace', spec.buildsPerWorkspace ?? 2),
    deletedWorkspaceRatio: ratio('deletedWorkspaceRatio', spec.deletedWorkspaceRatio ?? 0.05),
    deletedAgentRatio: ratio('deletedAgentRatio', spec.deletedAgentRatio ?? 0.02),
    neverConnectedRatio: ratio('neverConnectedRatio', spec.neverConnectedRatio ?? 0.1),
    negativeRatio: ratio('negativeRatio', spec.negativeRatio ?? 0.01),
    connectDelay: spec.connectDelay ?? connectDelays.exponential(30),
    baseMicros,
    spanMicros: Math.round(spanSeconds * SECOND_MICROS),
    batchSize: positiveInteger('batchSize', spec.batchSize ?? 10_000),
    collectAgents: spec.collectAgents ?? true,
    specialLabels: spec.specialLabels ?? false,
    onProgress: spec.onProgress,
  };
}

/** Column arrays for one table, filled row by row, then inserted in batches. */
type Columns = Record<string, unknown[]>;

async function insertWorkspaces(
  trx: Transaction<CoderDatabase>,
  context: Context,
  plan: WorkspacePlan,
  random: Random,
  nameOf: (index: number) => string,
): Promise<{ agents: GeneratedAgent[]; counts: Omit<GeneratedCounts, 'users' | 'templates' | 'templateVersions'> }> {
  const { users, templates, organizationId } = context;
  const agents: GeneratedAgent[] = [];
  const ws: Columns = { id: [], created: [], owner: [], template: [], deleted: [], name: [] };
  const builds: Columns = { id: [], created: [], workspace: [], version: [], number: [], initiator: [], job: [] };
  const resources: Columns = { id: [], created: [], job: [] };
  const agentCols: Columns = { id: [], created: [], name: [], connected: [], resource: [], token: [], state: [], deleted: [] };
  const uniform = (): number => random.next();

  for (let w = 0; w < plan.workspaces; w++) {
    const owner = users[random.int(users.length)]!;
    const template = templates[random.int(templates.length)]!;
    const workspaceId = random.uuid();
    const workspaceName = nameOf(w);
    const workspaceDeleted = random.chance(plan.deletedWorkspaceRatio);
    const latestCreated = plan.baseMicros - Math.floor(uniform() * plan.spanMicros);
    const firstBuildCreated = latestCreated - (plan.buildsPerWorkspace - 1) * BUILD_GAP_MICROS;
    ws.id!.push(workspaceId);
    ws.created!.push(formatEpochMicros(firstBuildCreated - 60 * SECOND_MICROS));
    ws.owner!.push(owner.id);
    ws.template!.push(template.id);
    ws.deleted!.push(workspaceDeleted);
    ws.name!.push(workspaceName);
    for (let b = 1; b <= plan.buildsPerWorkspace; b++) {
      const version = template.versions[random.int(template.versions.length)]!;
      const buildId = random.uuid();
      const jobId = random.uuid();
      const resourceId = random.uuid();
      const buildCreated = firstBuildCreated + (b - 1) * BUILD_GAP_MICROS;
      builds.id!.push(buildId);
      builds.created!.push(formatEpochMicros(buildCreated));
      builds.workspace!.push(workspaceId);
      builds.version!.push(version.id);
      builds.number!.push(b);
      builds.initiator!.push(owner.id);
      builds.job!.push(jobId);
      resources.id!.push(resourceId);
      resources.created!.push(formatEpochMicros(buildCreated));
      resources.job!.push(jobId);
      for (let a = 0; a < plan.agentsPerWorkspace; a++) {
        const agentId = random.uuid();
        const name = agentName(a, plan.agentsPerWorkspace, plan.specialLabels);
        const createdMicros = buildCreated + 1 + random.int(5 * SECOND_MICROS);
        const deleted = random.chance(plan.deletedAgentRatio);
        let connectedMicros: number | null = null;
        if (!random.chance(plan.neverConnectedRatio)) {
          connectedMicros = random.chance(plan.negativeRatio)
            ? createdMicros - 1 - random.int(MAX_SKEW_MICROS)
            : createdMicros + Math.max(0, Math.round(plan.connectDelay(uniform) * SECOND_MICROS));
        }
        agentCols.id!.push(agentId);
        agentCols.created!.push(formatEpochMicros(createdMicros));
        agentCols.name!.push(name);
        agentCols.connected!.push(connectedMicros === null ? null : formatEpochMicros(connectedMicros));
        agentCols.resource!.push(resourceId);
        agentCols.token!.push(random.uuid());
        agentCols.state!.push(connectedMicros === null ? 'created' : 'ready');
        agentCols.deleted!.push(deleted);
        if (plan.collectAgents) {
          agents.push({
            id: agentId,
            name,
            workspaceId,
            workspaceName,
            username: owner.username,
            templateName: template.name,
            templateVersionName: version.name,
            buildNumber: b,
            latestBuild: b === plan.buildsPerWorkspace,
            workspaceDeleted,
            deleted,
            createdAtMicros: createdMicros,
            firstConnectedAtMicros: connectedMicros,
          });
        }
      }
    }
  }

  const progress = plan.onProgress;
  await insertColumns('workspaces', ws, plan.batchSize, progress, (c) =>
    trx
      .insertInto('workspaces')
      .columns(['id', 'created_at', 'updated_at', 'owner_id', 'organization_id', 'template_id', 'deleted', 'name'])
      .expression(
        sql`SELECT id, created_at, created_at, owner_id, ${organizationId}::uuid, template_id, deleted, name FROM ${unnest([
          [c.id!, 'uuid'],
          [c.created!, 'timestamptz'],
          [c.owner!, 'uuid'],
          [c.template!, 'uuid'],
          [c.deleted!, 'boolean'],
          [c.name!, 'text'],
        ])} AS t(id, created_at, owner_id, template_id, deleted, name)`,
      ),
  );
  await insertColumns('workspace_builds', builds, plan.batchSize, progress, (c) =>
    trx
      .insertInto('workspace_builds')
      .columns(['id', 'created_at', 'updated_at', 'workspace_id', 'template_version_id', 'build_number', 'transition', 'initiator_id', 'job_id'])
      .expression(
        sql`SELECT id, created_at, created_at, workspace_id, template_version_id, build_number, 'start'::workspace_transition, initiator_id, job_id FROM ${unnest(
          [
            [c.id!, 'uuid'],
            [c.created!, 'timestamptz'],
            [c.workspace!, 'uuid'],
            [c.version!, 'uuid'],
            [c.number!, 'integer'],
            [c.initiator!, 'uuid'],
            [c.job!, 'uuid'],
          ],
        )} AS t(id, created_at, workspace_id, template_version_id, build_number, initiator_id, job_id)`,
      ),
  );
  await insertColumns('workspace_resources', resources, plan.batchSize, progress, (c) =>
    trx
      .insertInto('workspace_resources')
      .columns(['id', 'created_at', 'job_id', 'transition', 'type', 'name'])
      .expression(
        sql`SELECT id, created_at, job_id, 'start'::workspace_transition, 'docker_container', 'dev' FROM ${unnest([
          [c.id!, 'uuid'],
          [c.created!, 'timestamptz'],
          [c.job!, 'uuid'],
        ])} AS t(id, created_at, job_id)`,
      ),
  );
  await insertColumns('workspace_agents', agentCols, plan.batchSize, progress, (c) =>
    trx
      .insertInto('workspace_agents')
      .columns([
        'id',
        'created_at',
        'updated_at',
        'name',
        'first_connected_at',
        'last_connected_at',
        'resource_id',
        'auth_token',
        'architecture',
        'operating_system',
        'lifecycle_state',
        'deleted',
      ])
      .expression(
        sql`SELECT id, created_at, created_at, name, first_connected_at, first_connected_at, resource_id, auth_token, 'amd64', 'linux', lifecycle_state::workspace_agent_lifecycle_state, deleted FROM ${unnest(
          [
            [c.id!, 'uuid'],
            [c.created!, 'timestamptz'],
            [c.name!, 'text'],
            [c.connected!, 'timestamptz'],
            [c.resource!, 'uuid'],
            [c.token!, 'uuid'],
            [c.state!, 'text'],
            [c.deleted!, 'boolean'],
          ],
        )} AS t(id, created_at, name, first_connected_at, resource_id, auth_token, lifecycle_state, deleted)`,
      ),
  );
  return {
    agents,
    counts: {
      workspaces: ws.id!.length,
      workspaceBuilds: builds.id!.length,
      workspaceResources: resources.id!.length,
      workspaceAgents: agentCols.id!.length,
    },
  };
}

/** `unnest($1::type[], $2::type[], ...)`: one array parameter per column. */
function unnest(columns: readonly (readonly [values: readonly unknown[], pgType: string])[]): RawBuilder<unknown> {
  return sql`unnest(${sql.join(columns.map(([values, pgType]) => sql`${sql.val(values)}::${sql.raw(pgType)}[]`))})`;
}

async function insertBatches<T>(
  phase: GenerateProgressPhase,
  rows: readonly T[],
  batchSize: number,
  progress: ((p: GenerateProgress) => void) | undefined,
  insert: (batch: readonly T[], start: number) => { execute(): Promise<unknown> },
): Promise<void> {
  for (let start = 0; start < rows.length; start += batchSize) {
    const batch = rows.slice(start, start + batchSize);
    await insert(batch, start).execute();
    progress?.({ phase, done: start + batch.length, total: rows.length });
  }
}

async function insertColumns(
  phase: GenerateProgressPhase,
  columns: Columns,
  batchSize: number,
  progress: ((p: GenerateProgress) => void) | undefined,
  insert: (batch: Columns) => { execute(): Promise<unknown> },
): Promise<void> {
  const total = Object.values(columns)[0]?.length ?? 0;
  for (let start = 0; start < total; start += batchSize) {
    const batch: Columns = {};
    for (const [key, values] of Object.entries(columns)) batch[key] = values.slice(start, start + batchSize);
    await insert(batch).execute();
    progress?.({ phase, done: Math.min(total, start + batchSize), total });
  }
}

// Names. Special ones carry a double quote, a backslash, a newline and characters outside ASCII
// (one outside the BMP), and stay within varchar(64) and unique (case-insensitively, as Coder's
// unique indexes on lower(name) require).
const SPECIAL = 'q"b\\n\nü日🚀';

function userName(i: number, special: boolean): string {
  return special ? `user ${i} ${SPECIAL}` : `user-${i}`;
}

function templateName(i: number, special: boolean): string {
  return special ? `template ${i} ${SPECIAL}` : `template-${i}`;
}

function versionName(i: number, special: boolean): string {
  return special ? `v${i} ${SPECIAL}` : `v${i}`;
}

function workspaceName(prefix: string, i: number, special: boolean): string {
  return special ? `${prefix}${i} ${SPECIAL}` : `${prefix}${i}`;
}

function agentName(i: number, perWorkspace: number, special: boolean): string {
  const base = perWorkspace === 1 ? 'main' : `agent-${i}`;
  return special ? `${base} ${SPECIAL}` : base;
}

function toText(value: Date | string): string {
  if (typeof value === 'string') return value;
  return value.toISOString();
}

function micros(text: string): number {
  const value = toEpochMicros(text);
  if (value === undefined) throw new Error(`not a valid timestamp from the database: ${text}`);
  return value;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${String(value)}`);
  return value;
}

function ratio(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0 || value > 1) throw new RangeError(`${name} must be between 0 and 1, got ${String(value)}`);
  return value;
}
