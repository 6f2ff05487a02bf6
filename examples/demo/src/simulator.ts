import { sql, type Kysely } from 'kysely';
import { type CoderDatabase } from '@agentconn/kysely';
import { connectDelays, generateCoderData } from '@agentconn/kysely/testing';
import { StartPath } from './start-path.js';

export interface SimulatorOptions {
  /** Workspaces created before the exporter starts, over the last `historySeconds`. Default 240. */
  readonly historyWorkspaces?: number;
  readonly historySeconds?: number;
  /** New workspaces per step. Default 2. */
  readonly workspacesPerStep?: number;
  /** Every this many steps a prebuild pool workspace of the first template starts. Default 5. */
  readonly prebuildEverySteps?: number;
  /** Starts begun before the exporter starts, within the last 150 s, so that some are under way. Default 24. */
  readonly warmStarts?: number;
  /** Time between steps. Default 2 000 ms. */
  readonly stepMs?: number;
  /** Chance per step and pending agent that it connects now: waiting times are geometric, a long tail. Default 0.08. */
  readonly connectChance?: number;
  /** Chance per step that one pending agent connects with a skewed clock (negative duration). Default 0.03. */
  readonly skewChance?: number;
  readonly seed?: number;
}

export interface SimulatorStats {
  readonly workspacesCreated: number;
  readonly agentsConnected: number;
  readonly skewedConnections: number;
  readonly pendingAgents: number;
  /** Start builds (the history's, the warm and the live ones, the prebuild pool's included). */
  readonly starts: number;
  readonly prebuilds: number;
  /** Starts still queued, provisioning, or with an agent not ready. */
  readonly startsInFlight: number;
}

/**
 * Plays a Coder deployment against the database: a history of workspaces whose agents connected after
 * log-normal delays (seconds to tens of minutes, some never, a few with clock skew), then new workspaces
 * every step, each going through the queue, Terraform and its startup scripts (`StartPath`), whose
 * agents connect at random later steps.
 */
export class WorkspaceSimulator {
  readonly #db: Kysely<CoderDatabase>;
  readonly #options: Required<SimulatorOptions>;
  #timer: NodeJS.Timeout | undefined;
  #step = 0;
  #stepping: Promise<void> | undefined;
  #stats = { workspacesCreated: 0, agentsConnected: 0, skewedConnections: 0, pendingAgents: 0 };
  #random: () => number;
  readonly #starts: StartPath;

  constructor(db: Kysely<CoderDatabase>, options: SimulatorOptions = {}) {
    this.#db = db;
    this.#options = {
      historyWorkspaces: options.historyWorkspaces ?? 240,
      historySeconds: options.historySeconds ?? 3600,
      workspacesPerStep: options.workspacesPerStep ?? 2,
      prebuildEverySteps: options.prebuildEverySteps ?? 5,
      warmStarts: options.warmStarts ?? 24,
      stepMs: options.stepMs ?? 2000,
      connectChance: options.connectChance ?? 0.08,
      skewChance: options.skewChance ?? 0.03,
      seed: options.seed ?? 7,
    };
    let state = this.#options.seed >>> 0 || 1;
    this.#random = () => {
      // xorshift32: reproducible without a dependency
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      return state / 0x1_0000_0000;
    };
    this.#starts = new StartPath(db, this.#random);
  }

  get stats(): SimulatorStats {
    const starts = this.#starts.stats;
    return { ...this.#stats, starts: starts.starts, prebuilds: starts.prebuilds, startsInFlight: starts.inFlight };
  }

  /**
   * Creates the history: users, templates and workspaces whose agents already connected, the rest of
   * their start path (jobs, stage timings, scripts), and starts under way, some of the prebuild pool.
   */
  async populate(): Promise<void> {
    const created = await generateCoderData(this.#db, {
      seed: this.#options.seed,
      users: 12,
      templates: 4,
      versionsPerTemplate: 3,
      workspaces: this.#options.historyWorkspaces,
      agentsPerWorkspace: 1,
      buildsPerWorkspace: 2,
      deletedWorkspaceRatio: 0.03,
      deletedAgentRatio: 0.01,
      neverConnectedRatio: 0.06,
      negativeRatio: 0.02,
      connectDelay: connectDelays.logNormal(40, 1.3),
      spanSeconds: this.#options.historySeconds,
      collectAgents: false,
    });
    await this.#starts.load();
    await this.#starts.adoptHistory();
    const now = Date.now();
    const warm = this.#options.warmStarts;
    const prebuilds = Math.ceil(warm / 4);
    await this.#starts.createStarts(warm - prebuilds, { createdMs: () => now - Math.round(this.#random() * 150_000) });
    await this.#starts.createStarts(prebuilds, { prebuild: true, createdMs: () => now - Math.round(this.#random() * 150_000) });
    await this.#starts.advance(now);
    this.#stats = { ...this.#stats, workspacesCreated: created.counts.workspaces + warm };
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      if (this.#stepping !== undefined) return;
      this.#stepping = this.step().finally(() => {
        this.#stepping = undefined;
      });
    }, this.#options.stepMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#stepping;
  }

  /**
   * One step: new workspace starts (now and then one of the prebuild pool), the rows of every start
   * that are due (jobs started or completed, agents created, scripts run), then some pending agents
   * connect now.
   */
  async step(): Promise<void> {
    this.#step++;
    const workspaces = this.#options.workspacesPerStep;
    await this.#starts.createStarts(workspaces);
    const prebuild = this.#step % this.#options.prebuildEverySteps === 0;
    if (prebuild) await this.#starts.createStarts(1, { prebuild: true });
    // This process's clock, not clock_timestamp(): PGlite's clock is coarse.
    const now = new Date();
    await this.#starts.advance(now.getTime());
    const connected = await sql<{ id: string }>`
      UPDATE workspace_agents SET first_connected_at = ${now}, last_connected_at = ${now}
      WHERE first_connected_at IS NULL AND NOT deleted AND created_at <= ${now} AND random() < ${this.#options.connectChance}
      RETURNING id`.execute(this.#db);
    let skewed = 0;
    if (this.#random() < this.#options.skewChance) {
      // A coderd replica whose clock runs 40 s behind the one that created the agent.
      const result = await sql<{ id: string }>`
        UPDATE workspace_agents SET first_connected_at = created_at - interval '40 seconds', last_connected_at = ${now}
        WHERE id = (SELECT id FROM workspace_agents WHERE first_connected_at IS NULL AND NOT deleted LIMIT 1)
        RETURNING id`.execute(this.#db);
      skewed = result.rows.length;
    }
    const pending = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM workspace_agents WHERE first_connected_at IS NULL AND NOT deleted`.execute(this.#db);
    this.#stats = {
      workspacesCreated: this.#stats.workspacesCreated + workspaces + (prebuild ? 1 : 0),
      agentsConnected: this.#stats.agentsConnected + connected.rows.length,
      skewedConnections: this.#stats.skewedConnections + skewed,
      pendingAgents: pending.rows[0]?.n ?? 0,
    };
  }
}
