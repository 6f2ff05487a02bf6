/**
 * The awaiting gauges and the timeouts counter on every database, unchanged: run by
 * awaiting-pglite.test.ts and awaiting-postgres.test.ts with their own `open`.
 * Each test uses its own template names, so the other tests' agents never show in its groups.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  AwaitingAgentsRecorder,
  FirstConnectionPoller,
  FirstConnectionRecorder,
  observableGaugesAsDelta,
  toEpochMicros,
  type BackfillPolicy,
} from '@agentconn/core';
import {
  PostgresQueryCompiler,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import { createCoderAgentSource, type CoderAgentSource } from '../src/index.js';
import type { OpenTestDatabase, TestDatabase } from './helpers/databases.js';
import { CoderFixture } from './helpers/fixtures.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { parseSamples } from '@agentconn/test-support/exposition-parser';

const never = new AbortController().signal;
const LABELS = ['template_name', 'agent_name'] as const;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const iso = (ms: number) => new Date(ms).toISOString();

/** A poller with the awaiting recorder, reading the official Prometheus exporter's output (gauges as deltas, as the exporter's readers). */
class Pipeline {
  readonly exporter = observableGaugesAsDelta(new PrometheusExporter({ preventServerStart: true }));
  readonly meterProvider = new MeterProvider({ readers: [this.exporter] });
  readonly logger = createMemoryLogger();
  readonly recorder = new FirstConnectionRecorder({ meterProvider: this.meterProvider, logger: this.logger, labels: [...LABELS] });
  readonly awaiting: AwaitingAgentsRecorder;
  readonly poller: FirstConnectionPoller;

  constructor(source: CoderAgentSource, backfill?: BackfillPolicy, options: { reconcileIntervalMs?: number } = {}) {
    this.awaiting = new AwaitingAgentsRecorder({ meterProvider: this.meterProvider, logger: this.logger, labels: [...LABELS], ...options });
    this.poller = new FirstConnectionPoller({
      source,
      recorder: this.recorder,
      awaiting: this.awaiting,
      meterProvider: this.meterProvider,
      logger: this.logger,
      overlapMs: 60_000,
      ...(backfill !== undefined && { backfill }),
    });
  }

  /** Value of one family's series for a template, or undefined when the series is absent. */
  async value(family: string, templateName: string): Promise<number | undefined> {
    const { resourceMetrics } = await this.exporter.collect();
    const { PrometheusSerializer } = await import('@opentelemetry/exporter-prometheus');
    const text = new PrometheusSerializer().serialize(resourceMetrics);
    return parseSamples(text).find((s) => s.name === family && s.labels.template_name === templateName)?.value;
  }

  shutdown(): Promise<void> {
    return this.meterProvider.shutdown();
  }
}

/**
 * Fails the source's full read of the waiting agents (the reconciliation) while `failing`, at the Kysely
 * layer, before it reaches the database; every other statement runs on the real database.
 */
class FullReadFault implements KyselyPlugin {
  failing = false;
  failures = 0;
  fullReads = 0;
  readonly #compiler = new PostgresQueryCompiler();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const { sql } = this.#compiler.compileQuery(args.node, args.queryId);
    // The full read is the only one that joins from the workspaces and asks for `first_connected_at is null`.
    if (/from "workspaces" as "w"/.test(sql) && /"wa"\."first_connected_at" is null/.test(sql)) {
      this.fullReads++;
      if (this.failing) {
        this.failures++;
        throw new Error('injected fault in the full read');
      }
    }
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

const AWAITING = 'coderd_agents_awaiting_first_connection';
const OLDEST = 'coderd_agents_awaiting_first_connection_oldest_seconds';
const TIMEOUTS = 'coderd_agents_first_connection_timeouts_total';

export function defineAwaitingContract(name: string, open: OpenTestDatabase): void {
  describe(`awaiting agents and timeouts: ${name}`, () => {
    let database: TestDatabase;
    let fixture: CoderFixture;
    let source: CoderAgentSource;

    beforeAll(async () => {
      database = await open();
      fixture = new CoderFixture(database.db);
      source = createCoderAgentSource(database.db);
    });
    afterAll(async () => {
      await database?.destroy();
    });

    const template = () => `awaiting-${randomUUID().slice(0, 8)}`;

    it('counts waiting agents of the latest build only, not of deleted workspaces or deleted agents, with the exact oldest wait', async () => {
      const templateName = template();
      const now = Date.now();
      const { templateId, versionId } = await fixture.template(templateName);
      const workspaceId = await fixture.workspace({ ownerId: await fixture.user(), templateId });
      const build1 = await fixture.build({ workspaceId, buildNumber: 1, versionId });
      await fixture.agent({ resourceId: build1, name: 'main', createdAt: iso(now - 3_600_000), firstConnectedAt: null }); // old build
      const build2 = await fixture.build({ workspaceId, buildNumber: 2, versionId });
      const oldest = await fixture.agent({ resourceId: build2, name: 'main', createdAt: '2026-01-01T00:00:00.000001Z', firstConnectedAt: null });
      const recent = await fixture.agent({ resourceId: build2, name: 'main', createdAt: iso(now - 5000), firstConnectedAt: null });
      await fixture.agent({ resourceId: build2, name: 'main', createdAt: iso(now - 99_000_000), firstConnectedAt: iso(now - 1000) }); // connected
      await fixture.agent({ resourceId: build2, name: 'main', createdAt: '2025-01-01T00:00:00Z', firstConnectedAt: null, deleted: true });
      const goneWorkspace = await fixture.workspace({ ownerId: await fixture.user(), templateId, deleted: true });
      const gone = await fixture.build({ workspaceId: goneWorkspace, buildNumber: 1, versionId });
      await fixture.agent({ resourceId: gone, name: 'main', createdAt: '2025-01-01T00:00:00Z', firstConnectedAt: null });

      const batch = await source.listAgents({ signal: never, awaiting: { full: true, timeoutCandidates: [] } });
      expect(batch.awaitingComplete).toBe(true);
      const mine = batch.awaitingAgents?.filter((a) => a.labels.template_name === templateName);
      expect(new Set(mine?.map((a) => a.agentId))).toEqual(new Set([oldest, recent]));
      expect(mine?.find((a) => a.agentId === oldest)?.createdAt).toBe('2026-01-01T00:00:00.000001Z');

      // Through the poller and the official exporter: the count, and the oldest wait to the microsecond
      // on the database's clock (this process's clock plus the offset the query measured).
      const pipeline = new Pipeline(source);
      try {
        await pipeline.poller.tick();
        const before = Date.now();
        const waited = await pipeline.value(OLDEST, templateName);
        const after = Date.now();
        expect(await pipeline.value(AWAITING, templateName)).toBe(2);
        const created = toEpochMicros('2026-01-01T00:00:00.000001Z')! / 1e6;
        // The clock offset is measured at the tick (sourceTime is now() at its transaction start, truncated to ms): allow 50 ms.
        expect(waited).toBeGreaterThanOrEqual(before / 1000 - created - 0.05);
        expect(waited).toBeLessThanOrEqual(after / 1000 - created + 0.05);
      } finally {
        await pipeline.shutdown();
      }
    });

    it('the gauges fold the waiting agents by the configured labels only', async () => {
      const templateName = template();
      const { templateId, versionId } = await fixture.template(templateName);
      const resourceId = await fixture.build({ workspaceId: await fixture.workspace({ ownerId: await fixture.user(), templateId }), buildNumber: 1, versionId });
      const other = { resourceId: await fixture.build({ workspaceId: await fixture.workspace({ ownerId: await fixture.user(), templateId }), buildNumber: 1, versionId }) };
      await fixture.agent({ resourceId, name: 'a', createdAt: iso(Date.now()), firstConnectedAt: null });
      await fixture.agent({ resourceId: other.resourceId, name: 'b', createdAt: iso(Date.now()), firstConnectedAt: null });
      const exporter = new PrometheusExporter({ preventServerStart: true });
      const meterProvider = new MeterProvider({ readers: [exporter] });
      const poller = new FirstConnectionPoller({
        source,
        recorder: new FirstConnectionRecorder({ meterProvider, labels: ['template_name'] }),
        awaiting: new AwaitingAgentsRecorder({ meterProvider, labels: ['template_name'] }),
        meterProvider,
      });
      try {
        await poller.tick();
        const { PrometheusSerializer } = await import('@opentelemetry/exporter-prometheus');
        const series = parseSamples(new PrometheusSerializer().serialize((await exporter.collect()).resourceMetrics)).filter(
          (s) => s.name === AWAITING && s.labels.template_name === templateName,
        );
        expect(series.map((s) => [s.labels.agent_name, s.value])).toEqual([[undefined, 2]]);
      } finally {
        await meterProvider.shutdown();
      }
    });

    it("applies Coder's rule: timed out when not connected by created_at + timeout (strictly), 0 never, connecting late still counts", async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      const created = '2026-02-01T10:00:00.000000Z';
      const waiting = await fixture.agent({ resourceId, createdAt: created, firstConnectedAt: null, connectionTimeoutSeconds: 120 });
      const late = await fixture.agent({ resourceId, createdAt: created, firstConnectedAt: '2026-02-01T10:02:00.000001Z', connectionTimeoutSeconds: 120 });
      const exactly = await fixture.agent({ resourceId, createdAt: created, firstConnectedAt: '2026-02-01T10:02:00.000000Z', connectionTimeoutSeconds: 120 });
      const inTime = await fixture.agent({ resourceId, createdAt: created, firstConnectedAt: '2026-02-01T10:01:00Z', connectionTimeoutSeconds: 120 });
      const noTimeout = await fixture.agent({ resourceId, createdAt: created, firstConnectedAt: null, connectionTimeoutSeconds: 0 });
      const notYet = await fixture.agent({ resourceId, createdAt: iso(Date.now()), firstConnectedAt: null, connectionTimeoutSeconds: 3600 });

      const read = async (s: CoderAgentSource) => {
        const batch = await s.listAgents({ signal: never, awaiting: { full: true, timeoutCandidates: [waiting, noTimeout, notYet, late] } });
        const passed = new Map(batch.agents.filter((a) => a.labels.template_name === templateName).map((a) => [a.agentId, a.timedOutAt]));
        const checks = new Map((batch.timeoutChecks ?? []).map((c) => [c.agentId, c]));
        const waitingRows = new Map((batch.awaitingAgents ?? []).filter((a) => a.labels.template_name === templateName).map((a) => [a.agentId, a]));
        return { passed, checks, waitingRows };
      };
      const { passed, checks, waitingRows } = await read(source);
      expect(passed.get(late)).toBe('2026-02-01T10:02:00.000000Z');
      expect(passed.get(exactly)).toBeNull();
      expect(passed.get(inTime)).toBeNull();
      expect(checks.get(waiting)).toMatchObject({ timedOutAt: '2026-02-01T10:02:00.000000Z', due: true });
      expect(checks.get(notYet)?.due).toBe(false);
      expect(checks.has(noTimeout)).toBe(false); // 0: never times out
      expect(checks.has(late)).toBe(false); // connected: no longer waits
      expect(waitingRows.get(noTimeout)?.timedOutAt).toBeNull();
      expect(waitingRows.get(waiting)?.due).toBe(true);

      // connection_timeout_seconds = 0 times out only with a fallback (--connection-timeout).
      const withFallback = await read(createCoderAgentSource(database.db, { fallbackConnectionTimeoutSeconds: 60 }));
      expect(withFallback.checks.get(noTimeout)).toMatchObject({ timedOutAt: '2026-02-01T10:01:00.000000Z', due: true });
      expect(withFallback.checks.get(waiting)?.timedOutAt).toBe('2026-02-01T10:02:00.000000Z'); // its own 120 s wins
      expect(() => createCoderAgentSource(database.db, { fallbackConnectionTimeoutSeconds: -1 })).toThrow(/fallbackConnectionTimeoutSeconds/);
    });

    it('reads only the agents created since the lower bound between reconciliations, and drops deleted ones at the next one', async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      const pipeline = new Pipeline(source, undefined, { reconcileIntervalMs: 3_600_000 });
      try {
        await pipeline.poller.tick(); // a reconciliation
        const a1 = await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null });
        await pipeline.poller.tick(); // incremental: a1 is new
        expect(await pipeline.value(AWAITING, templateName)).toBe(1);
        await database.db.updateTable('workspace_agents').set({ deleted: true }).where('id', '=', a1).execute();
        await pipeline.poller.tick();
        expect(await pipeline.value(AWAITING, templateName)).toBe(1); // not seen until the next reconciliation
      } finally {
        await pipeline.shutdown();
      }
      const eager = new Pipeline(source, undefined, { reconcileIntervalMs: 0 });
      try {
        await eager.poller.tick();
        expect(await eager.value(AWAITING, templateName)).toBeUndefined();
      } finally {
        await eager.shutdown();
      }
    });

    it('a failed reconciliation does not fail the tick: connections and timeouts go on, the gauges wait for a full read, retried next tick', async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      const fault = new FullReadFault();
      const faulty = createCoderAgentSource(database.db.withPlugin(fault));
      const pipeline = new Pipeline(faulty, undefined, { reconcileIntervalMs: 3_600_000 });
      try {
        fault.failing = true;
        let result = await pipeline.poller.tick(); // the start tick: its reconciliation fails
        expect(result.outcome).toBe('success');
        expect(fault.failures).toBe(1);
        const late = await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null, connectionTimeoutSeconds: 1 });
        const quick = await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null });
        await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null });
        await sleep(1200);
        await database.db.updateTable('workspace_agents').set({ first_connected_at: iso(Date.now()) }).where('id', '=', quick).execute();
        result = await pipeline.poller.tick(); // tried again, fails again; the incremental read holds
        expect(result.outcome).toBe('success');
        expect(fault.failures).toBe(2);
        expect(result.observed).toBe(1);
        expect(result.timeouts).toBe(1);
        expect(await pipeline.value(TIMEOUTS, templateName)).toBe(1);
        // Two agents wait, but without one full read the held set may miss older ones: nothing is reported.
        expect(await pipeline.value(AWAITING, templateName)).toBeUndefined();
        const warnings = pipeline.logger.records.filter((e) => e.message.startsWith('reading all waiting agents failed'));
        expect(warnings).toHaveLength(2);
        expect(String(warnings[0]?.fields.error)).toContain('injected fault in the full read');

        fault.failing = false;
        result = await pipeline.poller.tick();
        expect(result.timeouts).toBe(0);
        expect(await pipeline.value(AWAITING, templateName)).toBe(2);
        expect(await pipeline.value(TIMEOUTS, templateName)).toBe(1);
        expect(fault.fullReads).toBe(3);
        await pipeline.poller.tick(); // not due again for an hour
        expect(fault.fullReads).toBe(3);
        expect(late).toBeDefined();
      } finally {
        await pipeline.shutdown();
      }
    });

    it('an agent whose timeout instant is past the last representable time does not fail the tick', async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      const pipeline = new Pipeline(source);
      try {
        await pipeline.poller.tick();
        // created_at + 1 day overflows timestamptz (294276 AD): computing its timeout must not error the read.
        await fixture.agent({ resourceId, name: 'main', createdAt: '294276-12-31T00:00:00Z', firstConnectedAt: null, connectionTimeoutSeconds: 86_400 });
        await fixture.agent({ resourceId, name: 'main', createdAt: '294276-12-31T00:00:00Z', firstConnectedAt: '294276-12-31T12:00:00Z', connectionTimeoutSeconds: 86_400 });
        const ok = await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now() - 5_000), firstConnectedAt: null });
        await database.db.updateTable('workspace_agents').set({ first_connected_at: iso(Date.now()) }).where('id', '=', ok).execute();
        const result = await pipeline.poller.tick();
        expect(result.outcome).toBe('success');
        expect(result.observed).toBe(1);
        const reconciling = new Pipeline(source, undefined, { reconcileIntervalMs: 0 });
        try {
          expect((await reconciling.poller.tick()).outcome).toBe('success');
          expect(reconciling.logger.records.filter((e) => e.message.startsWith('reading all waiting agents failed'))).toEqual([]);
        } finally {
          await reconciling.shutdown();
        }
      } finally {
        await pipeline.shutdown();
      }
    });

    it('an agent with connection_timeout_seconds = 1 is counted once after it passes, never again across ticks or a restart', async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      const first = new Pipeline(source);
      try {
        await first.poller.tick(); // the start tick: counting starts now
        const agentId = await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null, connectionTimeoutSeconds: 1 });
        await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null, connectionTimeoutSeconds: 0 });
        let result = await first.poller.tick();
        expect(result.timeouts).toBe(0);
        expect(await first.value(AWAITING, templateName)).toBe(2);
        expect(await first.value(TIMEOUTS, templateName)).toBeUndefined();
        await sleep(1200);
        result = await first.poller.tick();
        expect(result.timeouts).toBe(1);
        expect(await first.value(TIMEOUTS, templateName)).toBe(1);
        expect(await first.value(AWAITING, templateName)).toBe(2);
        expect(await first.value(OLDEST, templateName)).toBeGreaterThanOrEqual(1.2);
        for (let i = 0; i < 3; i++) expect((await first.poller.tick()).timeouts).toBe(0);
        expect(await first.value(TIMEOUTS, templateName)).toBe(1);

        // It connects: it leaves the awaiting gauge (0 now, not absent), its timeout is not counted again.
        await database.db.updateTable('workspace_agents').set({ first_connected_at: iso(Date.now()) }).where('id', '=', agentId).execute();
        result = await first.poller.tick();
        expect(result.timeouts).toBe(0);
        expect(result.observed).toBe(1);
        expect(await first.value(AWAITING, templateName)).toBe(1);
        expect(await first.value(TIMEOUTS, templateName)).toBe(1);
      } finally {
        await first.shutdown();
      }

      // A restart with the default backfill: the timeout happened before it, so it is not counted.
      const restarted = new Pipeline(source);
      try {
        for (let i = 0; i < 2; i++) expect((await restarted.poller.tick()).timeouts).toBe(0);
        expect(await restarted.value(TIMEOUTS, templateName)).toBeUndefined();
        expect(await restarted.value(AWAITING, templateName)).toBe(1);
      } finally {
        await restarted.shutdown();
      }
    });

    it('counts a timeout that passes during a database outage once the database is back (the window holds)', async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      let down = false;
      const flaky: CoderAgentSource = {
        listAgents: (query) => (down ? Promise.reject(new Error('connection refused')) : source.listAgents(query)),
      };
      const pipeline = new Pipeline(flaky);
      try {
        await pipeline.poller.tick();
        await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null, connectionTimeoutSeconds: 1 });
        // Connects during the outage, after its timeout: it timed out and it connected.
        const late = await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now()), firstConnectedAt: null, connectionTimeoutSeconds: 1 });
        down = true;
        expect((await pipeline.poller.tick()).outcome).toBe('error');
        await sleep(1200);
        await database.db.updateTable('workspace_agents').set({ first_connected_at: iso(Date.now()) }).where('id', '=', late).execute();
        expect((await pipeline.poller.tick()).outcome).toBe('error');
        down = false;
        const result = await pipeline.poller.tick();
        expect(result.outcome).toBe('success');
        expect(result.timeouts).toBe(2);
        expect(result.observed).toBe(1);
        expect((await pipeline.poller.tick()).timeouts).toBe(0);
        expect(await pipeline.value(TIMEOUTS, templateName)).toBe(2);
        expect(await pipeline.value(AWAITING, templateName)).toBe(1);
      } finally {
        await pipeline.shutdown();
      }
    });

    it("with backfill 'all' a restart counts timeouts from before it once; full-scan mode counts once too", async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: null, connectionTimeoutSeconds: 1 });
      const all = new Pipeline(source, 'all');
      try {
        expect((await all.poller.tick()).timeouts).toBeGreaterThanOrEqual(1);
        expect(await all.value(TIMEOUTS, templateName)).toBe(1);
        await all.poller.tick();
        expect(await all.value(TIMEOUTS, templateName)).toBe(1);
      } finally {
        await all.shutdown();
      }
      const exporter = new PrometheusExporter({ preventServerStart: true });
      const meterProvider = new MeterProvider({ readers: [exporter] });
      const awaiting = new AwaitingAgentsRecorder({ meterProvider, labels: [...LABELS] });
      const poller = new FirstConnectionPoller({
        source,
        recorder: new FirstConnectionRecorder({ meterProvider, labels: [...LABELS] }),
        awaiting,
        meterProvider,
        mode: 'full-scan',
        backfill: 'all',
      });
      try {
        const counts = [];
        for (let i = 0; i < 3; i++) counts.push((await poller.tick()).timeouts ?? 0);
        expect(counts[0]).toBeGreaterThanOrEqual(1);
        expect(counts.slice(1)).toEqual([0, 0]);
      } finally {
        await meterProvider.shutdown();
      }
    });

    it('a follower reports no awaiting series (the leader has the values) and counts nothing', async () => {
      const templateName = template();
      const { resourceId } = await fixture.workspaceWithBuild({ templateName });
      await fixture.agent({ resourceId, name: 'main', createdAt: iso(Date.now() - 10_000), firstConnectedAt: null, connectionTimeoutSeconds: 1 });
      let leader = true;
      const exporter = observableGaugesAsDelta(new PrometheusExporter({ preventServerStart: true }));
      const meterProvider = new MeterProvider({ readers: [exporter] });
      const awaiting = new AwaitingAgentsRecorder({ meterProvider, labels: [...LABELS] });
      const poller = new FirstConnectionPoller({
        source,
        recorder: new FirstConnectionRecorder({ meterProvider, labels: [...LABELS] }),
        awaiting,
        meterProvider,
        leadership: { isLeader: () => Promise.resolve(leader) },
      });
      const { PrometheusSerializer } = await import('@opentelemetry/exporter-prometheus');
      const text = async () => new PrometheusSerializer().serialize((await exporter.collect()).resourceMetrics);
      try {
        await poller.tick();
        const series = (t: string, family: string) => parseSamples(t).find((s) => s.name === family && s.labels.template_name === templateName)?.value;
        expect(series(await text(), AWAITING)).toBe(1);
        expect(series(await text(), OLDEST)).toBeGreaterThanOrEqual(10);
        leader = false;
        expect((await poller.tick()).outcome).toBe('skipped_not_leader');
        expect(series(await text(), AWAITING)).toBeUndefined();
        expect(series(await text(), OLDEST)).toBeUndefined();
      } finally {
        await meterProvider.shutdown();
      }
    });
  });
}
