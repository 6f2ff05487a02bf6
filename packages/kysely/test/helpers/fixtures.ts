import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { CoderDatabase } from '../../src/index.js';

const T0 = '2026-01-01T00:00:00.000000Z';

/**
 * Inserts hand-made rows with exact values, one at a time (independent of the generator, so the
 * contract tests do not rest on it).
 */
export class CoderFixture {
  readonly #db: Kysely<CoderDatabase>;
  readonly organizationId = randomUUID();
  #counter = 0;

  constructor(db: Kysely<CoderDatabase>) {
    this.#db = db;
  }

  async user(username = `user-${this.#next()}`): Promise<string> {
    const id = randomUUID();
    await this.#db
      .insertInto('users')
      .values({ id, email: `${id}@example.com`, username, hashed_password: new Uint8Array(0), created_at: T0, updated_at: T0 })
      .execute();
    return id;
  }

  /** A template with one version; resolves with both ids. */
  async template(name = `template-${this.#next()}`, versionName = 'v1'): Promise<{ templateId: string; versionId: string }> {
    const templateId = randomUUID();
    const versionId = randomUUID();
    const creator = await this.user();
    await this.#db
      .insertInto('templates')
      .values({
        id: templateId,
        created_at: T0,
        updated_at: T0,
        organization_id: this.organizationId,
        name,
        provisioner: 'terraform',
        active_version_id: versionId,
        created_by: creator,
      })
      .execute();
    await this.#db
      .insertInto('template_versions')
      .values({
        id: versionId,
        template_id: templateId,
        organization_id: this.organizationId,
        created_at: T0,
        updated_at: T0,
        name: versionName,
        readme: '',
        job_id: randomUUID(),
        created_by: creator,
      })
      .execute();
    return { templateId, versionId };
  }

  async workspace(options: { ownerId: string; templateId: string; name?: string; deleted?: boolean }): Promise<string> {
    const id = randomUUID();
    await this.#db
      .insertInto('workspaces')
      .values({
        id,
        created_at: T0,
        updated_at: T0,
        owner_id: options.ownerId,
        organization_id: this.organizationId,
        template_id: options.templateId,
        deleted: options.deleted ?? false,
        name: options.name ?? `ws-${this.#next()}`,
      })
      .execute();
    return id;
  }

  /**
   * A build with one resource; resolves with the resource id agents attach to. With
   * `missingVersion`, the build points at a template version that does not exist (Coder's foreign key
   * forbids it; Coder PR #24179's LEFT JOIN allows it), inserted with foreign keys off for this transaction.
   */
  async build(options: { workspaceId: string; buildNumber: number; versionId: string; missingVersion?: boolean }): Promise<string> {
    const jobId = randomUUID();
    const resourceId = randomUUID();
    const insertBuild = async (db: Kysely<CoderDatabase>): Promise<void> => {
      await db
        .insertInto('workspace_builds')
        .values({
          id: randomUUID(),
          created_at: T0,
          updated_at: T0,
          workspace_id: options.workspaceId,
          template_version_id: options.missingVersion ? randomUUID() : options.versionId,
          build_number: options.buildNumber,
          transition: 'start',
          initiator_id: randomUUID(),
          job_id: jobId,
        })
        .execute();
    };
    if (options.missingVersion) {
      await this.#db.transaction().execute(async (trx) => {
        await sql`SET LOCAL session_replication_role = replica`.execute(trx);
        await insertBuild(trx);
      });
    } else {
      await insertBuild(this.#db);
    }
    await this.#db
      .insertInto('workspace_resources')
      .values({ id: resourceId, created_at: T0, job_id: jobId, transition: 'start', type: 'docker_container', name: 'dev' })
      .execute();
    return resourceId;
  }

  /** An agent; timestamps are text so they keep microseconds (`infinity` allowed). */
  async agent(options: {
    resourceId: string;
    name?: string;
    createdAt: string;
    firstConnectedAt: string | null;
    deleted?: boolean;
    connectionTimeoutSeconds?: number;
  }): Promise<string> {
    const id = randomUUID();
    await this.#db
      .insertInto('workspace_agents')
      .values({
        id,
        created_at: options.createdAt,
        updated_at: options.createdAt,
        name: options.name ?? `agent-${this.#next()}`,
        first_connected_at: options.firstConnectedAt,
        resource_id: options.resourceId,
        auth_token: randomUUID(),
        architecture: 'amd64',
        operating_system: 'linux',
        deleted: options.deleted ?? false,
        ...(options.connectionTimeoutSeconds !== undefined && { connection_timeout_seconds: options.connectionTimeoutSeconds }),
      })
      .execute();
    return id;
  }

  /** A user, template, workspace and latest build in one go; resolves with what agents need. */
  async workspaceWithBuild(
    options: { username?: string; templateName?: string; workspaceName?: string; versionName?: string; deleted?: boolean } = {},
  ): Promise<{ workspaceId: string; resourceId: string; versionId: string }> {
    const ownerId = await this.user(options.username);
    const { templateId, versionId } = await this.template(options.templateName, options.versionName);
    const workspaceId = await this.workspace({
      ownerId,
      templateId,
      ...(options.workspaceName !== undefined && { name: options.workspaceName }),
      ...(options.deleted !== undefined && { deleted: options.deleted }),
    });
    const resourceId = await this.build({ workspaceId, buildNumber: 1, versionId });
    return { workspaceId, resourceId, versionId };
  }

  #next(): string {
    this.#counter++;
    return `${this.#counter}-${randomUUID().slice(0, 8)}`;
  }
}
