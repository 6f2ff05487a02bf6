import type { MeterProvider, Meter } from '@opentelemetry/api';
import { AwaitingAgentsRecorder } from './awaiting-recorder.js';
import { diagLogger, errorMessage, type Logger } from './logger.js';
import type { AgentLabels } from './metric.js';
import type { FirstConnectionMetricOptions } from './metric-options.js';
import { FirstConnectionRecorder, type RecordOutcome } from './first-connection-recorder.js';
import type { AwaitingAgentGroup } from './first-connection-source.js';
import { toEpochMicros, type Instant } from './timestamp.js';

/** An agent the host just created. */
export interface CreatedAgent {
  readonly agentId: string;
  readonly labels: Readonly<Partial<AgentLabels>>;
  /** Default: now. */
  readonly createdAt?: Instant;
  /** This agent's connection timeout in ms (Coder's `connection_timeout_seconds` × 1000); 0: the tracker's default. */
  readonly connectionTimeoutMs?: number;
}

/** An agent that just connected for the first time. */
export interface ConnectedAgent {
  readonly agentId: string;
  /** Default: now. */
  readonly connectedAt?: Instant;
  /** Used only for an agent `created()` never saw (e.g. created before this process started). */
  readonly createdAt?: Instant;
  readonly labels?: Readonly<Partial<AgentLabels>>;
}

export type ConnectedOutcome = RecordOutcome | 'unknown_agent';

export interface AgentConnectionTrackerOptions extends FirstConnectionMetricOptions {
  readonly meter?: Meter;
  /** Default: the global provider. */
  readonly meterProvider?: MeterProvider;
  readonly logger?: Logger;
  /** Connection timeout in ms for agents created without one. Default 0: they never time out. */
  readonly connectionTimeoutMs?: number;
  /** Most agents held while they wait; past it the longest-waiting one is forgotten (logged once). Default 100 000. */
  readonly maxAwaitingAgents?: number;
  /** The clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

interface Waiting {
  readonly createdMs: number;
  readonly createdAt: Instant;
  readonly labels: Readonly<Partial<AgentLabels>>;
  readonly labelKey: string;
  timer: NodeJS.Timeout | undefined;
}

const MAX_TIMER_MS = 2_147_483_647;
export const DEFAULT_MAX_AWAITING_AGENTS = 100_000;

/**
 * In-service use (Coder #24355 style): the host says when it creates an agent and when the agent first
 * connects. `connected()` observes the wait once into `coderd_agents_first_connection_seconds`; an
 * `unref()`ed timer counts `coderd_agents_first_connection_timeouts_total` once when the agent's
 * timeout passes first; the awaiting gauges come from the agents held. An agent that times out and
 * connects later is in both. Never throws into the host: bad input is logged.
 */
export class AgentConnectionTracker {
  readonly #recorder: FirstConnectionRecorder;
  readonly #awaiting: AwaitingAgentsRecorder;
  readonly #logger: Logger;
  readonly #defaultTimeoutMs: number;
  readonly #maxAwaiting: number;
  readonly #now: () => number;
  readonly #waiting = new Map<string, Waiting>();
  #evictionLogged = false;

  constructor(options: AgentConnectionTrackerOptions = {}) {
    this.#logger = options.logger ?? diagLogger;
    this.#now = options.now ?? Date.now;
    this.#defaultTimeoutMs = options.connectionTimeoutMs ?? 0;
    if (!Number.isFinite(this.#defaultTimeoutMs) || this.#defaultTimeoutMs < 0) {
      throw new RangeError(`connectionTimeoutMs must be a non-negative number of milliseconds, got ${String(options.connectionTimeoutMs)}`);
    }
    this.#maxAwaiting = options.maxAwaitingAgents ?? DEFAULT_MAX_AWAITING_AGENTS;
    if (!Number.isSafeInteger(this.#maxAwaiting) || this.#maxAwaiting < 1) {
      throw new RangeError(`maxAwaitingAgents must be a positive integer, got ${String(options.maxAwaitingAgents)}`);
    }
    const shared = {
      ...(options.labels !== undefined && { labels: options.labels }),
      ...(options.cardinalityLimit !== undefined && { cardinalityLimit: options.cardinalityLimit }),
      ...(options.meter !== undefined && { meter: options.meter }),
      ...(options.meterProvider !== undefined && { meterProvider: options.meterProvider }),
      logger: this.#logger,
    };
    this.#recorder = new FirstConnectionRecorder(shared);
    this.#awaiting = new AwaitingAgentsRecorder({ ...shared, maxTrackedAgents: this.#maxAwaiting, collect: () => this.#groups() });
  }

  /** How many agents wait for their first connection. */
  get awaitingAgents(): number {
    return this.#waiting.size;
  }

  /** Whether `created()` started this agent's wait and it has not connected yet. */
  isAwaiting(agentId: string): boolean {
    return this.#waiting.has(agentId);
  }

  /** Starts an agent's wait (and its timeout timer). A second call for the same agent is ignored. */
  created(agent: CreatedAgent): void {
    try {
      const agentId = agent?.agentId;
      if (typeof agentId !== 'string' || agentId.length === 0) {
        this.#logger.warn('created agent has no agentId; not tracked', {});
        return;
      }
      if (this.#waiting.has(agentId) || this.#recorder.hasHandled(agentId)) return;
      const createdAt = agent.createdAt ?? new Date(this.#now());
      const createdMicros = toEpochMicros(createdAt);
      if (createdMicros === undefined) {
        this.#logger.warn('created agent has an invalid createdAt; not tracked', { agent_id: agentId, value: String(createdAt) });
        return;
      }
      const labels = agent.labels ?? {};
      const entry: Waiting = { createdMs: createdMicros / 1000, createdAt, labels, labelKey: JSON.stringify(labels), timer: undefined };
      this.#waiting.set(agentId, entry);
      const own = agent.connectionTimeoutMs;
      const timeoutMs = own !== undefined && Number.isFinite(own) && own > 0 ? own : this.#defaultTimeoutMs;
      if (timeoutMs > 0) this.#arm(agentId, entry, entry.createdMs + timeoutMs);
      this.#evictBeyondLimit();
    } catch (error) {
      this.#logger.warn('tracking a created agent failed', { error: errorMessage(error) });
    }
  }

  /** Ends an agent's wait and observes it once into the histogram (also after its timeout). */
  connected(agent: ConnectedAgent): ConnectedOutcome {
    try {
      const agentId = agent?.agentId;
      if (typeof agentId !== 'string' || agentId.length === 0) {
        this.#logger.warn('connected agent has no agentId; not observed', {});
        return 'invalid';
      }
      const connectedAt = agent.connectedAt ?? new Date(this.#now());
      const entry = this.#waiting.get(agentId);
      if (entry !== undefined) {
        this.#end(agentId, entry);
        return this.#recorder.record({ agentId, createdAt: entry.createdAt, firstConnectedAt: connectedAt, labels: fullLabels(entry.labels) });
      }
      if (this.#recorder.hasHandled(agentId)) return 'duplicate';
      if (agent.createdAt === undefined) return 'unknown_agent';
      return this.#recorder.record({ agentId, createdAt: agent.createdAt, firstConnectedAt: connectedAt, labels: fullLabels(agent.labels ?? {}) });
    } catch (error) {
      this.#logger.warn('observing a connected agent failed', { error: errorMessage(error) });
      return 'invalid';
    }
  }

  /** Stops waiting for an agent without observing it (e.g. it was deleted before connecting). */
  forget(agentId: string): void {
    const entry = this.#waiting.get(agentId);
    if (entry !== undefined) this.#end(agentId, entry);
  }

  /** Clears every timer; the tracker holds nothing afterwards. */
  destroy(): void {
    for (const [id, entry] of this.#waiting) this.#end(id, entry);
  }

  [Symbol.dispose](): void {
    this.destroy();
  }

  #arm(agentId: string, entry: Waiting, dueMs: number): void {
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, dueMs - this.#now()));
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      try {
        if (this.#waiting.get(agentId) !== entry) return;
        if (this.#now() < dueMs) {
          this.#arm(agentId, entry, dueMs);
          return;
        }
        this.#awaiting.recordTimeout({ agentId, timedOutAt: new Date(dueMs), labels: fullLabels(entry.labels) });
      } catch (error) {
        this.#logger.warn('counting an agent timeout failed', { error: errorMessage(error) });
      }
    }, delay);
    entry.timer.unref();
  }

  #end(agentId: string, entry: Waiting): void {
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = undefined;
    this.#waiting.delete(agentId);
  }

  #evictBeyondLimit(): void {
    while (this.#waiting.size > this.#maxAwaiting) {
      const first = this.#waiting.entries().next();
      if (first.done) return;
      this.#end(first.value[0], first.value[1]);
      if (!this.#evictionLogged) {
        this.#evictionLogged = true;
        this.#logger.warn('too many agents waiting for their first connection; forgetting the earliest tracked', {
          max_awaiting_agents: this.#maxAwaiting,
          agent_id: first.value[0],
        });
      }
    }
  }

  #groups(): AwaitingAgentGroup[] {
    const nowMs = this.#now();
    const groups = new Map<string, { labels: Readonly<Partial<AgentLabels>>; count: number; oldestWaitSeconds: number }>();
    for (const entry of this.#waiting.values()) {
      const wait = Math.max(0, (nowMs - entry.createdMs) / 1000);
      const group = groups.get(entry.labelKey);
      if (group === undefined) groups.set(entry.labelKey, { labels: entry.labels, count: 1, oldestWaitSeconds: wait });
      else {
        group.count++;
        if (wait > group.oldestWaitSeconds) group.oldestWaitSeconds = wait;
      }
    }
    return [...groups.values()];
  }
}

function fullLabels(labels: Readonly<Partial<AgentLabels>>): AgentLabels {
  return {
    template_name: labels.template_name ?? '',
    agent_name: labels.agent_name ?? '',
    username: labels.username ?? '',
    workspace_name: labels.workspace_name ?? '',
  };
}
