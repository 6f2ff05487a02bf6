/**
 * Plays the whole path of workspace starts against the database, writing each row when Coder would:
 * a build and its pending provisioner job; the job started by a provisioner daemon after its queue
 * wait; at completion its Terraform stage timings, and (when it succeeded) the resource, the agent and
 * its scripts; once the agent has connected (the caller connects agents) its startup script timings
 * and `ready_at`. A start's timeline is drawn up front (`planStart`); each `advance` writes what is due.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { PREBUILDS_SYSTEM_USER_ID, type CoderDatabase } from '@agentconn/kysely';
import {
  insertAgents,
  insertJobs,
  insertJobTimings,
  insertScripts,
  insertScriptTimings,
  insertWorkspaceStarts,
  updateAgentLifecycles,
  updateJobs,
  type AgentLifecycleRow,
  type AgentRow,
  type JobStateRow,
  type NewWorkspaceRow,
  type ScriptRow,
  type ScriptTimingRow,
  type TimingRow,
} from './coder-rows.js';
import {
  TEMPLATE_PROFILES,
  lifecycleAfterScripts,
  planStart,
  scriptsEndMs,
  type JobResult,
  type StartPlan,
  type TemplateProfile,
} from './start-plan.js';

interface Template {
  readonly id: string;
  readonly name: string;
  readonly versionId: string;
  readonly profile: TemplateProfile;
}

interface LiveStart {
  readonly jobId: string;
  readonly createdMs: number;
  readonly plan: StartPlan;
  state: 'queued' | 'provisioning' | 'agent';
  agent?: { readonly id: string; readonly scriptIds: readonly string[] };
}

export interface StartPathStats {
  /** Start builds created (people's and the prebuild pool's). */
  readonly starts: number;
  readonly prebuilds: number;
  /** Starts whose rows are not all written yet (queued, provisioning, or an agent not ready). */
  readonly inFlight: number;
}

/** A build of the history whose agents never connected ends, as such builds often do, in a failed or canceled job. */
const HISTORY_UNCONNECTED_FAILED = 0.35;
const HISTORY_UNCONNECTED_CANCELED = 0.15;

export class StartPath {
  readonly #db: Kysely<CoderDatabase>;
  readonly #random: () => number;
  readonly #live = new Map<string, LiveStart>();
  #organizationId = '';
  #templates: Template[] = [];
  #people: string[] = [];
  #sequence = 0;
  #starts = 0;
  #prebuilds = 0;

  constructor(db: Kysely<CoderDatabase>, random: () => number) {
    this.#db = db;
    this.#random = random;
  }

  get stats(): StartPathStats {
    return { starts: this.#starts, prebuilds: this.#prebuilds, inFlight: this.#live.size };
  }

  /** Reads the templates and users, and adds Coder's prebuilds system user, which owns the prebuild pool. */
  async load(): Promise<void> {
    const templates = await this.#db
      .selectFrom('templates')
      .select(['id', 'name', 'active_version_id', 'organization_id'])
      .where('deleted', '=', false)
      .orderBy('name')
      .execute();
    if (templates.length === 0) throw new Error('the start path needs templates: generate the history first');
    this.#organizationId = templates[0]!.organization_id;
    this.#templates = templates.map((t, i) => ({
      id: t.id,
      name: t.name,
      versionId: t.active_version_id,
      profile: TEMPLATE_PROFILES[i % TEMPLATE_PROFILES.length]!,
    }));
    const users = await this.#db.selectFrom('users').select('id').where('deleted', '=', false).orderBy('id').execute();
    this.#people = users.map((u) => u.id).filter((id) => id !== PREBUILDS_SYSTEM_USER_ID);
    await sql`
      INSERT INTO users (id, email, username, hashed_password, created_at, updated_at)
      VALUES (${PREBUILDS_SYSTEM_USER_ID}::uuid, 'prebuilds@system', 'prebuilds', ''::bytea, now(), now())
      ON CONFLICT (id) DO NOTHING`.execute(this.#db);
  }

  /**
   * Gives the history's start builds (made without jobs) the rest of their path: a job that ended
   * just before their agents were created, the build moved back by its queue and provisioning time,
   * stage timings, scripts; builds whose agents never connected often failed or were canceled (their
   * agents are removed, as Coder creates none for a failed job). Agents of templates with a connection
   * timeout get it. The connected agents' scripts finish at the next `advance`.
   */
  async adoptHistory(): Promise<void> {
    const builds = await sql<{
      build_id: string;
      job_id: string;
      owner_id: string;
      template_id: string;
      first_agent_ms: number;
      agents: string[];
      connected: number;
    }>`
      SELECT b.id AS build_id, b.job_id, w.owner_id, w.template_id,
             (extract(epoch FROM min(a.created_at)) * 1000)::float8 AS first_agent_ms,
             array_agg(a.id ORDER BY a.id) AS agents,
             count(a.first_connected_at)::int AS connected
      FROM workspace_builds b
      JOIN workspaces w ON w.id = b.workspace_id
      JOIN workspace_resources r ON r.job_id = b.job_id
      JOIN workspace_agents a ON a.resource_id = r.id
      WHERE NOT EXISTS (SELECT 1 FROM provisioner_jobs j WHERE j.id = b.job_id)
      GROUP BY b.id, b.job_id, w.owner_id, w.template_id
      ORDER BY b.id`.execute(this.#db);
    const buildMoves: { id: string; createdMs: number }[] = [];
    const newJobs: { id: string; initiatorId: string; createdMs: number }[] = [];
    const jobs: JobStateRow[] = [];
    const timings: TimingRow[] = [];
    const scripts: ScriptRow[] = [];
    const removedAgents: string[] = [];
    const timeouts: { agentId: string; seconds: number }[] = [];
    for (const row of builds.rows) {
      const template = this.#templates.find((t) => t.id === row.template_id);
      if (template === undefined) continue;
      const draw = this.#random();
      const result: JobResult =
        row.connected > 0 || draw >= HISTORY_UNCONNECTED_FAILED + HISTORY_UNCONNECTED_CANCELED
          ? 'succeeded'
          : draw < HISTORY_UNCONNECTED_FAILED
            ? 'failed'
            : 'canceled';
      const plan = planStart(this.#random, template.profile, result);
      const completedMs = Number(row.first_agent_ms) - 100;
      const startedMs = plan.canceledInQueue ? null : completedMs - plan.provisionMs;
      const createdMs = (startedMs ?? completedMs) - plan.queueMs;
      buildMoves.push({ id: row.build_id, createdMs });
      newJobs.push({ id: row.job_id, initiatorId: row.owner_id, createdMs });
      jobs.push({
        id: row.job_id,
        startedMs,
        completedMs,
        canceledMs: result === 'canceled' ? Math.max(createdMs, completedMs - 250) : null,
        error: plan.error,
      });
      if (startedMs !== null) timings.push(...stageTimings(row.job_id, startedMs, plan));
      if (result !== 'succeeded') {
        removedAgents.push(...row.agents);
        continue;
      }
      for (const agentId of row.agents) {
        const scriptIds = plan.scripts.map(() => randomUUID());
        scripts.push(
          ...plan.scripts.map((s, i) => ({
            scriptId: scriptIds[i]!,
            agentId,
            createdMs: completedMs + 100,
            displayName: s.displayName,
            timeoutSeconds: s.timeoutSeconds,
          })),
        );
        if (plan.connectionTimeoutSeconds > 0) timeouts.push({ agentId, seconds: plan.connectionTimeoutSeconds });
        this.#live.set(`${row.build_id}/${agentId}`, {
          jobId: row.job_id,
          createdMs,
          plan,
          state: 'agent',
          agent: { id: agentId, scriptIds },
        });
      }
      this.#starts++;
    }
    const db = this.#db;
    if (buildMoves.length > 0) {
      await sql`
        UPDATE workspace_builds AS b SET created_at = t.created_at, updated_at = t.created_at
        FROM unnest(${sql.val(buildMoves.map((m) => m.id))}::uuid[], ${sql.val(buildMoves.map((m) => new Date(m.createdMs).toISOString()))}::timestamptz[]) AS t(id, created_at)
        WHERE b.id = t.id`.execute(db);
    }
    await insertJobs(db, this.#organizationId, newJobs);
    await updateJobs(db, jobs);
    await insertJobTimings(db, timings);
    if (removedAgents.length > 0) {
      await sql`DELETE FROM workspace_agents WHERE id = ANY(${sql.val(removedAgents)}::uuid[])`.execute(db);
    }
    if (timeouts.length > 0) {
      await sql`
        UPDATE workspace_agents AS a SET connection_timeout_seconds = t.seconds
        FROM unnest(${sql.val(timeouts.map((t) => t.agentId))}::uuid[], ${sql.val(timeouts.map((t) => t.seconds))}::int4[]) AS t(id, seconds)
        WHERE a.id = t.id`.execute(db);
    }
    // The generator marks connected agents ready; here they are ready only once their scripts ran.
    await sql`UPDATE workspace_agents SET lifecycle_state = 'created' WHERE ready_at IS NULL`.execute(db);
    await insertScripts(db, scripts);
  }

  /**
   * New start builds created at `createdMs(i)`: people's workspaces of random templates, or the
   * prebuild pool's (owned by the prebuilds system user) of the first template.
   */
  async createStarts(
    count: number,
    options: { readonly prebuild?: boolean; readonly createdMs?: (i: number) => number } = {},
  ): Promise<void> {
    const rows: NewWorkspaceRow[] = [];
    for (let i = 0; i < count; i++) {
      const prebuild = options.prebuild ?? false;
      const template = prebuild ? this.#templates[0]! : this.#templates[Math.floor(this.#random() * this.#templates.length)]!;
      const ownerId = prebuild ? PREBUILDS_SYSTEM_USER_ID : this.#people[Math.floor(this.#random() * this.#people.length)]!;
      const createdMs = options.createdMs?.(i) ?? Date.now();
      const row: NewWorkspaceRow = {
        workspaceId: randomUUID(),
        name: `${prebuild ? 'prebuild' : 'live'}-${++this.#sequence}`,
        ownerId,
        templateId: template.id,
        versionId: template.versionId,
        buildId: randomUUID(),
        jobId: randomUUID(),
        createdMs,
      };
      rows.push(row);
      this.#live.set(row.buildId, {
        jobId: row.jobId,
        createdMs,
        plan: planStart(this.#random, template.profile),
        state: 'queued',
      });
      this.#starts++;
      if (prebuild) this.#prebuilds++;
    }
    await insertWorkspaceStarts(this.#db, this.#organizationId, rows);
  }

  /** Writes every row that is due at `nowMs`. */
  async advance(nowMs: number): Promise<void> {
    const jobs: JobStateRow[] = [];
    const timings: TimingRow[] = [];
    const agents: AgentRow[] = [];
    const scripts: ScriptRow[] = [];
    for (const [key, start] of this.#live) {
      const { plan } = start;
      const startedMs = start.createdMs + plan.queueMs;
      if (start.state === 'queued') {
        if (nowMs < startedMs) continue;
        if (plan.canceledInQueue) {
          // Canceled while queued: no daemon ever starts it.
          jobs.push({
            id: start.jobId,
            startedMs: null,
            completedMs: startedMs,
            canceledMs: Math.max(start.createdMs, startedMs - 250),
            error: null,
          });
          this.#live.delete(key);
          continue;
        }
        start.state = 'provisioning';
        jobs.push({ id: start.jobId, startedMs, completedMs: null, canceledMs: null, error: null });
      }
      if (start.state === 'provisioning') {
        const completedMs = startedMs + plan.provisionMs;
        if (nowMs < completedMs) continue;
        jobs.push({
          id: start.jobId,
          startedMs,
          completedMs,
          canceledMs: plan.result === 'canceled' ? completedMs - 250 : null,
          error: plan.error,
        });
        timings.push(...stageTimings(start.jobId, startedMs, plan));
        if (plan.result !== 'succeeded') {
          this.#live.delete(key);
          continue;
        }
        const agentId = randomUUID();
        const createdMs = Math.min(nowMs, completedMs + 20);
        const scriptIds = plan.scripts.map(() => randomUUID());
        agents.push({
          agentId,
          resourceId: randomUUID(),
          jobId: start.jobId,
          createdMs,
          connectionTimeoutSeconds: plan.connectionTimeoutSeconds,
        });
        scripts.push(
          ...plan.scripts.map((s, i) => ({
            scriptId: scriptIds[i]!,
            agentId,
            createdMs,
            displayName: s.displayName,
            timeoutSeconds: s.timeoutSeconds,
          })),
        );
        start.agent = { id: agentId, scriptIds };
        start.state = 'agent';
      }
    }
    const db = this.#db;
    await updateJobs(db, dedupeLast(jobs));
    await insertJobTimings(db, timings);
    await insertAgents(db, agents);
    await insertScripts(db, scripts);
    await this.#finishConnectedAgents(nowMs);
  }

  /** Agents that connected: `starting` now, and ready (or start_error, start_timeout) when their scripts end. */
  async #finishConnectedAgents(nowMs: number): Promise<void> {
    const waiting = new Map<string, [string, LiveStart]>();
    for (const entry of this.#live) if (entry[1].agent !== undefined) waiting.set(entry[1].agent.id, entry);
    if (waiting.size === 0) return;
    const connected = await sql<{ id: string; connected_ms: number; started: boolean }>`
      SELECT id, (extract(epoch FROM first_connected_at) * 1000)::float8 AS connected_ms, started_at IS NOT NULL AS started
      FROM workspace_agents WHERE id = ANY(${sql.val([...waiting.keys()])}::uuid[]) AND first_connected_at IS NOT NULL`.execute(
      this.#db,
    );
    const lifecycles: AgentLifecycleRow[] = [];
    const runs: ScriptTimingRow[] = [];
    for (const row of connected.rows) {
      const [key, start] = waiting.get(row.id)!;
      const connectedMs = Number(row.connected_ms);
      const scripts = start.plan.scripts;
      const startedMs = Math.min(nowMs, connectedMs + 100);
      const readyMs = connectedMs + scriptsEndMs(scripts);
      if (nowMs >= readyMs) {
        lifecycles.push({ agentId: row.id, state: lifecycleAfterScripts(scripts), startedMs, readyMs });
        runs.push(
          ...scripts.map((s, i) => ({
            scriptId: start.agent!.scriptIds[i]!,
            startedMs: connectedMs + s.startMs,
            endedMs: connectedMs + s.endMs,
            exitCode: s.exitCode,
            status: s.status,
          })),
        );
        this.#live.delete(key);
      } else if (!row.started) {
        lifecycles.push({ agentId: row.id, state: 'starting', startedMs, readyMs: null });
      }
    }
    await insertScriptTimings(this.#db, runs);
    await updateAgentLifecycles(this.#db, lifecycles);
  }
}

function stageTimings(jobId: string, startedMs: number, plan: StartPlan): TimingRow[] {
  return plan.stages.flatMap((stage) =>
    stage.resources.map((resource, i) => {
      // Resources of a stage overlap: the stage spans MIN(started_at) to MAX(ended_at) of its rows.
      const offset = Math.round(((stage.endMs - stage.startMs) * i) / (2 * stage.resources.length));
      return {
        jobId,
        stage: stage.stage,
        startedMs: startedMs + stage.startMs + offset,
        endedMs: startedMs + stage.endMs - offset,
        resource,
      };
    }),
  );
}

/** The last state of each job: a job may be started and completed in one advance. */
function dedupeLast(rows: readonly JobStateRow[]): JobStateRow[] {
  return [...new Map(rows.map((r) => [r.id, r])).values()];
}
