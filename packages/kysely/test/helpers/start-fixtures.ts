import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { PREBUILDS_SYSTEM_USER_ID, type CoderDatabase, type ProvisionerJobType, type WorkspaceAgentLifecycleState } from '../../src/index.js';

/** Epoch µs as RFC 3339 text with six fraction digits. */
export function microsText(micros: number): string {
  const ms = Math.floor(micros / 1000);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(micros - ms * 1000).padStart(3, '0')}Z`;
}

export interface StartJobSpec {
  readonly startedAt?: string | null;
  readonly completedAt?: string | null;
  readonly canceledAt?: string | null;
  readonly error?: string | null;
  readonly type?: ProvisionerJobType;
}

/**
 * Hand-made rows of the whole start with exact values: a job per build, agents with their lifecycle, stage
 * timings, scripts and their runs. `at(s)` is an instant `s` seconds after a base an hour before the
 * database's clock, so timeouts are judged on the same clock the source uses.
 */
export class StartFixture {
  readonly #db: Kysely<CoderDatabase>;
  readonly #baseMicros: number;
  readonly organizationId = randomUUID();
  #counter = 0;
  #prebuildsUser = false;

  private constructor(db: Kysely<CoderDatabase>, baseMicros: number) {
    this.#db = db;
    this.#baseMicros = baseMicros;
  }

  static async create(db: Kysely<CoderDatabase>): Promise<StartFixture> {
    const { rows } = await sql<{ micros: string }>`SELECT (extract(epoch FROM date_trunc('second', now())) * 1000000)::bigint::text AS micros`.execute(db);
    return new StartFixture(db, Number(rows[0]!.micros) - 3600 * 1_000_000);
  }

  /** The base plus `seconds`, µs text. */
  at(seconds: number): string {
    return microsText(this.#baseMicros + Math.round(seconds * 1e6));
  }

  async user(username = `user-${this.#next()}`): Promise<string> {
    const id = randomUUID();
    await this.#insertUser(id, username);
    return id;
  }

  async #insertUser(id: string, username: string): Promise<void> {
    await this.#db
      .insertInto('users')
      .values({ id, email: `${id}@example.com`, username, hashed_password: new Uint8Array(0), created_at: this.at(0), updated_at: this.at(0) })
      .execute();
  }

  async template(name = `template-${this.#next()}`): Promise<{ templateId: string; versionId: string }> {
    const templateId = randomUUID();
    const versionId = randomUUID();
    const creator = await this.user();
    await this.#db
      .insertInto('templates')
      .values({ id: templateId, created_at: this.at(0), updated_at: this.at(0), organization_id: this.organizationId, name, provisioner: 'terraform', active_version_id: versionId, created_by: creator })
      .execute();
    await this.#db
      .insertInto('template_versions')
      .values({ id: versionId, template_id: templateId, organization_id: this.organizationId, created_at: this.at(0), updated_at: this.at(0), name: 'v1', readme: '', job_id: randomUUID(), created_by: creator })
      .execute();
    return { templateId, versionId };
  }

  /** A workspace of `templateName` (created once per name), owned by a new user or by the prebuilds user. */
  async workspace(template: { templateId: string; versionId: string }, options: { prebuild?: boolean; name?: string; deleted?: boolean } = {}) {
    let ownerId: string;
    if (options.prebuild === true) {
      if (!this.#prebuildsUser) {
        await this.#insertUser(PREBUILDS_SYSTEM_USER_ID, 'prebuilds');
        this.#prebuildsUser = true;
      }
      ownerId = PREBUILDS_SYSTEM_USER_ID;
    } else {
      ownerId = await this.user();
    }
    const id = randomUUID();
    await this.#db
      .insertInto('workspaces')
      .values({
        id,
        created_at: this.at(0),
        updated_at: this.at(0),
        owner_id: ownerId,
        organization_id: this.organizationId,
        template_id: template.templateId,
        deleted: options.deleted ?? false,
        name: options.name ?? `ws-${this.#next()}`,
      })
      .execute();
    return { workspaceId: id, versionId: template.versionId };
  }

  /** A build with its job and one resource. */
  async build(options: {
    workspaceId: string;
    versionId: string;
    buildNumber?: number;
    createdAt: string;
    transition?: 'start' | 'stop' | 'delete';
    job: StartJobSpec;
  }): Promise<{ buildId: string; jobId: string; resourceId: string }> {
    const buildId = randomUUID();
    const jobId = randomUUID();
    const resourceId = randomUUID();
    const { job } = options;
    await this.#db
      .insertInto('provisioner_jobs')
      .values({
        id: jobId,
        created_at: options.createdAt,
        updated_at: options.createdAt,
        started_at: job.startedAt ?? null,
        completed_at: job.completedAt ?? null,
        canceled_at: job.canceledAt ?? null,
        error: job.error ?? null,
        organization_id: this.organizationId,
        initiator_id: randomUUID(),
        provisioner: 'terraform',
        storage_method: 'file',
        type: job.type ?? 'workspace_build',
        input: '{}',
        file_id: randomUUID(),
      })
      .execute();
    await this.#db
      .insertInto('workspace_builds')
      .values({
        id: buildId,
        created_at: options.createdAt,
        updated_at: options.createdAt,
        workspace_id: options.workspaceId,
        template_version_id: options.versionId,
        build_number: options.buildNumber ?? 1,
        transition: options.transition ?? 'start',
        initiator_id: randomUUID(),
        job_id: jobId,
      })
      .execute();
    await this.#db
      .insertInto('workspace_resources')
      .values({ id: resourceId, created_at: options.createdAt, job_id: jobId, transition: options.transition ?? 'start', type: 'docker_container', name: 'dev' })
      .execute();
    return { buildId, jobId, resourceId };
  }

  async agent(options: {
    resourceId: string;
    createdAt: string;
    firstConnectedAt?: string | null;
    readyAt?: string | null;
    lifecycleState?: WorkspaceAgentLifecycleState;
    connectionTimeoutSeconds?: number;
    parentId?: string;
  }): Promise<string> {
    const id = randomUUID();
    await this.#db
      .insertInto('workspace_agents')
      .values({
        id,
        created_at: options.createdAt,
        updated_at: options.createdAt,
        name: `agent-${this.#next()}`,
        first_connected_at: options.firstConnectedAt ?? null,
        ready_at: options.readyAt ?? null,
        lifecycle_state: options.lifecycleState ?? (options.readyAt == null ? 'created' : 'ready'),
        connection_timeout_seconds: options.connectionTimeoutSeconds ?? 0,
        resource_id: options.resourceId,
        auth_token: randomUUID(),
        architecture: 'amd64',
        operating_system: 'linux',
        ...(options.parentId !== undefined && { parent_id: options.parentId }),
      })
      .execute();
    return id;
  }

  async timing(jobId: string, stage: 'init' | 'plan' | 'graph' | 'apply', startedAt: string, endedAt: string): Promise<void> {
    await this.#db
      .insertInto('provisioner_job_timings')
      .values({ job_id: jobId, stage, started_at: startedAt, ended_at: endedAt, source: 'terraform', action: 'create', resource: `r-${this.#next()}` })
      .execute();
  }

  async script(agentId: string, displayName: string): Promise<string> {
    const row = await this.#db
      .insertInto('workspace_agent_scripts')
      .values({
        workspace_agent_id: agentId,
        log_source_id: randomUUID(),
        log_path: '/tmp/log',
        created_at: this.at(0),
        script: 'echo',
        cron: '',
        start_blocks_login: false,
        run_on_start: true,
        run_on_stop: false,
        timeout_seconds: 0,
        display_name: displayName,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }

  async scriptRun(
    scriptId: string,
    run: { stage: 'start' | 'stop' | 'cron'; status: 'ok' | 'exit_failure' | 'timed_out' | 'pipes_left_open'; startedAt: string; endedAt: string },
  ): Promise<void> {
    await this.#db
      .insertInto('workspace_agent_script_timings')
      .values({ script_id: scriptId, stage: run.stage, status: run.status, started_at: run.startedAt, ended_at: run.endedAt, exit_code: run.status === 'ok' ? 0 : 1 })
      .execute();
  }

  #next(): string {
    this.#counter++;
    return `${this.#counter}-${randomUUID().slice(0, 8)}`;
  }
}

/**
 * Coder's view `provisioner_job_stats` (coderd/database/dump.sql), created in the test schema as Coder
 * defines it, so the contract compares our stage seconds with Coder's own on the same rows.
 */
export async function createProvisionerJobStatsView(db: Kysely<CoderDatabase>): Promise<void> {
  const stage = (name: string) =>
    sql.raw(`GREATEST(date_part('epoch'::text, (max(
        CASE
            WHEN (pjt.stage = '${name}'::provisioner_job_timing_stage) THEN pjt.ended_at
            ELSE NULL::timestamp with time zone
        END) - min(
        CASE
            WHEN (pjt.stage = '${name}'::provisioner_job_timing_stage) THEN pjt.started_at
            ELSE NULL::timestamp with time zone
        END))), (0)::double precision) AS ${name}_secs`);
  await sql`CREATE OR REPLACE VIEW provisioner_job_stats AS
 SELECT pj.id AS job_id,
    pj.job_status,
    wb.workspace_id,
    pj.worker_id,
    pj.error,
    pj.error_code,
    pj.updated_at,
    GREATEST(date_part('epoch'::text, (pj.started_at - pj.created_at)), (0)::double precision) AS queued_secs,
    GREATEST(date_part('epoch'::text, (pj.completed_at - pj.started_at)), (0)::double precision) AS completion_secs,
    GREATEST(date_part('epoch'::text, (pj.canceled_at - pj.started_at)), (0)::double precision) AS canceled_secs,
    ${stage('init')},
    ${stage('plan')},
    ${stage('graph')},
    ${stage('apply')}
   FROM ((provisioner_jobs pj
     JOIN workspace_builds wb ON ((wb.job_id = pj.id)))
     LEFT JOIN provisioner_job_timings pjt ON ((pjt.job_id = pj.id)))
  GROUP BY pj.id, wb.workspace_id`.execute(db);
}
