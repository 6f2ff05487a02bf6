/**
 * The contract every database must pass, unchanged: run by source-pglite.test.ts and
 * source-postgres.test.ts with their own `open`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { FIRST_CONNECTION_METRIC_NAME, FirstConnectionPoller, LABEL_KEYS, toEpochMicros } from '@agentconn/core';
import { createCoderAgentSource, type CoderAgentSource } from '../src/index.js';
import type { OpenTestDatabase, TestDatabase } from './helpers/databases.js';
import { CoderFixture } from './helpers/fixtures.js';
import { histogramBy, parseSamples } from '@agentconn/test-support/exposition-parser';
import { PrometheusHarness } from './helpers/prometheus.js';

const never = new AbortController().signal;
const ids = (agents: readonly { agentId: string }[]): Set<string> => new Set(agents.map((a) => a.agentId));
/** Label text with every character the exposition format escapes, and some it must not touch. */
const TRICKY = 'q"uote back\\slash new\nline ü 日本 🚀 =,{}';

export function defineSourceContract(name: string, open: OpenTestDatabase): void {
  describe(`Coder agent source contract: ${name}`, () => {
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

    it('returns only the agents of the latest build of each workspace', async () => {
      const { workspaceId, resourceId: build1, versionId } = await fixture.workspaceWithBuild();
      const old = await fixture.agent({ resourceId: build1, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:05Z' });
      const build2 = await fixture.build({ workspaceId, buildNumber: 2, versionId });
      const current = await fixture.agent({ resourceId: build2, createdAt: '2026-01-02T00:00:00Z', firstConnectedAt: '2026-01-02T00:00:07Z' });
      const single = await fixture.workspaceWithBuild();
      const onlyBuild = await fixture.agent({ resourceId: single.resourceId, createdAt: '2026-01-02T00:00:00Z', firstConnectedAt: '2026-01-02T00:00:01Z' });

      const returned = ids((await source.listAgents({ signal: never })).agents);
      expect(returned.has(current)).toBe(true);
      expect(returned.has(onlyBuild)).toBe(true);
      expect(returned.has(old)).toBe(false);
    });

    it('leaves out deleted workspaces and deleted agents', async () => {
      const gone = await fixture.workspaceWithBuild({ deleted: true });
      const inDeletedWorkspace = await fixture.agent({ resourceId: gone.resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:03Z' });
      const live = await fixture.workspaceWithBuild();
      const deletedAgent = await fixture.agent({ resourceId: live.resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:03Z', deleted: true });
      const kept = await fixture.agent({ resourceId: live.resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:03Z' });

      const returned = ids((await source.listAgents({ signal: never })).agents);
      expect(returned.has(kept)).toBe(true);
      expect(returned.has(inDeletedWorkspace)).toBe(false);
      expect(returned.has(deletedAgent)).toBe(false);
    });

    it('neither returns nor observes agents that never connected', async () => {
      const { resourceId } = await fixture.workspaceWithBuild();
      const waiting = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: null });
      const connected = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:02Z' });

      const { agents } = await source.listAgents({ signal: never });
      expect(ids(agents).has(waiting)).toBe(false);
      expect(ids(agents).has(connected)).toBe(true);
      for (const agent of agents) expect(agent.firstConnectedAt).not.toBeNull();

      const harness = new PrometheusHarness();
      try {
        for (const agent of agents) harness.recorder.record(agent);
        expect(harness.recorder.hasHandled(connected)).toBe(true);
        expect(harness.recorder.hasHandled(waiting)).toBe(false);
      } finally {
        await harness.meterProvider.shutdown();
      }
    });

    it('returns agents whose template version row is missing (LEFT JOIN), with a null version name', async () => {
      const ownerId = await fixture.user();
      const { templateId, versionId } = await fixture.template();
      const workspaceId = await fixture.workspace({ ownerId, templateId });
      const resourceId = await fixture.build({ workspaceId, buildNumber: 1, versionId, missingVersion: true });
      const agent = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:04Z' });
      const withVersion = await fixture.workspaceWithBuild({ versionName: 'v-named' });
      const other = await fixture.agent({ resourceId: withVersion.resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:04Z' });

      const { agents } = await source.listAgents({ signal: never });
      expect(agents.find((a) => a.agentId === agent)?.templateVersionName).toBeNull();
      expect(agents.find((a) => a.agentId === other)?.templateVersionName).toBe('v-named');
    });

    it('with connectedSince returns only agents that first connected at or after it (inclusive, to the microsecond)', async () => {
      const { resourceId } = await fixture.workspaceWithBuild();
      const since = new Date('2026-03-01T12:00:00.123Z');
      const before = await fixture.agent({ resourceId, createdAt: '2026-03-01T11:00:00Z', firstConnectedAt: '2026-03-01T12:00:00.122999Z' });
      const exactly = await fixture.agent({ resourceId, createdAt: '2026-03-01T11:00:00Z', firstConnectedAt: '2026-03-01T12:00:00.123000Z' });
      const after = await fixture.agent({ resourceId, createdAt: '2026-03-01T11:00:00Z', firstConnectedAt: '2026-03-01T12:00:00.123001Z' });
      const older = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:01Z' });

      const incremental = ids((await source.listAgents({ connectedSince: since, signal: never })).agents);
      expect(incremental.has(exactly)).toBe(true);
      expect(incremental.has(after)).toBe(true);
      expect(incremental.has(before)).toBe(false);
      expect(incremental.has(older)).toBe(false);

      const full = ids((await source.listAgents({ signal: never })).agents);
      for (const id of [before, exactly, after, older]) expect(full.has(id)).toBe(true);
    });

    it("reports the database's clock as sourceTime", async () => {
      const clock = async (): Promise<number> => {
        const { rows } = await sql<{ t: string }>`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`.execute(database.db);
        return toEpochMicros(rows[0]!.t)!;
      };
      const before = await clock();
      const { sourceTime } = await source.listAgents({ signal: never });
      const after = await clock();
      const sourceMicros = sourceTime.getTime() * 1000;
      // now() is the transaction start, truncated to ms: between the two clock readings (ms-floored).
      expect(sourceMicros).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(sourceMicros).toBeLessThanOrEqual(after);
    });

    it('on a primary (not in recovery) reports no replay bound and no replay lag', async () => {
      const batch = await source.listAgents({ signal: never });
      expect(batch).not.toHaveProperty('visibleUntil');
      expect(batch).not.toHaveProperty('replayLagMs');
    });

    it('returns label values with quotes, backslashes, newlines and Unicode exactly, and the exporter escapes them', async () => {
      const names = {
        username: `user ${TRICKY} ${Math.random()}`,
        templateName: `template ${TRICKY} ${Math.random()}`.slice(0, 64),
        workspaceName: `ws ${TRICKY}`,
      };
      const { resourceId } = await fixture.workspaceWithBuild(names);
      const agentName = `agent ${TRICKY}`;
      const agent = await fixture.agent({ resourceId, name: agentName, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:09.5Z' });

      const { agents } = await source.listAgents({ signal: never });
      const row = agents.find((a) => a.agentId === agent);
      expect(row?.labels).toEqual({
        template_name: names.templateName,
        agent_name: agentName,
        username: names.username,
        workspace_name: names.workspaceName,
      });

      // Coder PR #24179's four labels, so that every value is a series label (the default is Coder #24355's two).
      const harness = new PrometheusHarness({ labels: LABEL_KEYS });
      await harness.start();
      try {
        expect(harness.recorder.record(row!)).toBe('observed');
        const text = await harness.scrape();
        const series = parseSamples(text).filter(
          (s) => s.name === `${FIRST_CONNECTION_METRIC_NAME}_count` && s.labels.template_name === names.templateName,
        );
        expect(series).toHaveLength(1);
        expect(series[0]!.labels).toMatchObject({ agent_name: agentName, username: names.username, workspace_name: names.workspaceName });
        // The raw text carries the escaped forms, not a literal newline inside a label value.
        expect(text).toContain(`agent_name="agent q\\"uote back\\\\slash new\\nline ü 日本 🚀 =,{}"`);
      } finally {
        await harness.shutdown();
      }
    });

    it('keeps an odd row (infinity, a year BC) from failing the query; the recorder drops it as invalid', async () => {
      const { resourceId } = await fixture.workspaceWithBuild();
      const infinite = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: 'infinity' });
      const negativeInfinite = await fixture.agent({ resourceId, createdAt: '-infinity', firstConnectedAt: '2026-01-01T00:00:00Z' });
      const ancient = await fixture.agent({ resourceId, createdAt: '0044-03-15 12:00:00+00 BC', firstConnectedAt: '2026-01-01T00:00:00Z' });
      const normal = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: '2026-01-01T00:00:01Z' });

      const { agents } = await source.listAgents({ signal: never });
      const byId = new Map(agents.map((a) => [a.agentId, a]));
      expect(byId.get(infinite)?.firstConnectedAt).toBe('infinity');
      expect(byId.get(negativeInfinite)?.createdAt).toBe('-infinity');
      expect(byId.get(normal)?.firstConnectedAt).toBe('2026-01-01T00:00:01.000000Z');

      const harness = new PrometheusHarness();
      try {
        expect(harness.recorder.record(byId.get(infinite)!)).toBe('invalid');
        expect(harness.recorder.record(byId.get(negativeInfinite)!)).toBe('invalid');
        expect(harness.recorder.record(byId.get(ancient)!)).toBe('invalid');
        expect(harness.recorder.record(byId.get(normal)!)).toBe('observed');
        expect(harness.logger.records.filter((l) => l.level === 'warn')).toHaveLength(3);
      } finally {
        await harness.meterProvider.shutdown();
      }
    });

    it('drops an infinity first_connected_at with one warning, not one every overlap window (the query returns it forever)', async () => {
      const { resourceId } = await fixture.workspaceWithBuild();
      const infinite = await fixture.agent({ resourceId, createdAt: '2026-01-01T00:00:00Z', firstConnectedAt: 'infinity' });
      const harness = new PrometheusHarness();
      try {
        // A tiny overlap: each tick's query starts after the instant the previous tick handled the row.
        const poller = new FirstConnectionPoller({
          source,
          recorder: harness.recorder,
          meterProvider: harness.meterProvider,
          logger: harness.logger,
          overlapMs: 1,
        });
        const dropped: number[] = [];
        for (let tick = 0; tick < 4; tick++) {
          const result = await poller.tick();
          expect(result.outcome).toBe('success');
          dropped.push(result.dropped);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const warnings = harness.logger.records.filter((l) => l.level === 'warn' && l.fields?.agent_id === infinite);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]!.fields).toMatchObject({ field: 'first_connected_at', value: 'infinity' });
        // Dropped (and counted) at the first tick only, however many windows pass.
        expect(dropped[0]).toBeGreaterThanOrEqual(1);
        expect(dropped.slice(1)).toEqual([0, 0, 0]);
      } finally {
        await harness.meterProvider.shutdown();
      }
    });

    it('rejects at once when the signal is aborted, naming the reason', async () => {
      const aborted = new AbortController();
      aborted.abort(new Error('poll timed out after 5 ms'));
      await expect(source.listAgents({ signal: aborted.signal })).rejects.toThrow(
        'listing agents from the Coder database failed: poll timed out after 5 ms',
      );

      const during = new AbortController();
      const pending = source.listAgents({ signal: during.signal });
      during.abort(new Error('poller stopped'));
      await expect(pending).rejects.toThrow('listing agents from the Coder database failed: poller stopped');
      // The source still works afterwards.
      await expect(source.listAgents({ signal: never })).resolves.toHaveProperty('agents');
    });

    it('fails a poll tick with a clear error when the tables are missing; the process goes on', async () => {
      const empty = await open({ migrate: false });
      try {
        const harness = new PrometheusHarness();
        const poller = new FirstConnectionPoller({
          source: createCoderAgentSource(empty.db),
          recorder: harness.recorder,
          meterProvider: harness.meterProvider,
          logger: harness.logger,
        });
        const result = await poller.tick();
        expect(result.outcome).toBe('error');
        // The query reads workspaces first, so that is the relation the database names.
        expect(result.error?.message).toBe('listing agents from the Coder database failed: relation "workspaces" does not exist');
        expect(harness.logger.records.some((l) => l.level === 'error' && l.fields?.error === result.error?.message)).toBe(true);
        await harness.meterProvider.shutdown();
      } finally {
        await empty.destroy();
      }
    });

    it('with excludeAgentIds leaves exactly those agents out; ids that are not UUIDs are ignored, not an error', async () => {
      const { resourceId } = await fixture.workspaceWithBuild();
      const since = new Date('2026-04-01T00:00:00Z');
      const kept = await fixture.agent({ resourceId, createdAt: '2026-04-01T00:00:00Z', firstConnectedAt: '2026-04-01T00:00:01Z' });
      const left = await fixture.agent({ resourceId, createdAt: '2026-04-01T00:00:00Z', firstConnectedAt: '2026-04-01T00:00:02Z' });
      const returned = ids(
        (await source.listAgents({ connectedSince: since, excludeAgentIds: [left, 'not-a-uuid', "x'); DROP TABLE users; --"], signal: never })).agents,
      );
      expect(returned.has(kept)).toBe(true);
      expect(returned.has(left)).toBe(false);
      // Only with connectedSince: a full scan returns every agent.
      expect(ids((await source.listAgents({ excludeAgentIds: [left], signal: never })).agents).has(left)).toBe(true);
    });

    it('a steady poller reads only the new rows, not the 5-minute overlap again (before: ~6x the new ones at 60 s), and a late row counts once', async () => {
      const { resourceId } = await fixture.workspaceWithBuild({ templateName: 'steady' });
      const ago = (ms: number): string => new Date(Date.now() - ms).toISOString();
      const first = await Promise.all(
        Array.from({ length: 12 }, () => fixture.agent({ resourceId, createdAt: ago(90_000), firstConnectedAt: ago(60_000) })),
      );
      const harness = new PrometheusHarness();
      await harness.start();
      try {
        const poller = new FirstConnectionPoller({
          source,
          recorder: harness.recorder,
          meterProvider: harness.meterProvider,
          logger: harness.logger,
          backfill: { sinceMs: 10 * 60_000 },
        });
        const start = await poller.tick();
        expect(start.outcome).toBe('success');
        expect(start.observed).toBe(12);
        const steady = await poller.tick();
        // Before: the 12 rows of the overlap came back on every tick.
        expect([steady.outcome, steady.rowsRead, steady.observed]).toEqual(['success', 0, 0]);

        // Committed late: first connected 2 minutes ago (inside the overlap) but visible only now.
        const late = await fixture.agent({ resourceId, createdAt: ago(150_000), firstConnectedAt: ago(120_000) });
        const withLate = await poller.tick();
        expect(withLate.rowsRead).toBe(1);
        expect(withLate.observed).toBe(1);
        const after = await poller.tick();
        expect([after.rowsRead, after.observed]).toEqual([0, 0]);
        expect(harness.recorder.hasHandled(late)).toBe(true);
        for (const id of first) expect(harness.recorder.hasHandled(id)).toBe(true);
        const steadySeries = histogramBy(parseSamples(await harness.scrape()), FIRST_CONNECTION_METRIC_NAME, 'template_name').get('steady');
        expect(steadySeries?.count).toBe(13);
      } finally {
        await harness.shutdown();
      }
    });

    for (const timeZone of ['America/St_Johns', 'Asia/Kathmandu']) {
      it(`measures durations to the microsecond whatever the session time zone (${timeZone}, DateStyle SQL, DMY)`, async () => {
        const zoned = await open({ timeZone, dateStyle: 'SQL, DMY' });
        const harness = new PrometheusHarness();
        await harness.start();
        try {
          const { rows } = await sql<{ tz: string }>`SELECT current_setting('TimeZone') AS tz`.execute(zoned.db);
          expect(rows[0]!.tz).toBe(timeZone);
          const zonedFixture = new CoderFixture(zoned.db);
          const templateName = `tz-${timeZone}`;
          const { resourceId } = await zonedFixture.workspaceWithBuild({ templateName });
          // Created across a DST change of St John's and at a :45 offset of Kathmandu; written in UTC.
          const createdAt = '2026-03-08T05:29:59.999999Z';
          const above = await zonedFixture.agent({ resourceId, createdAt, firstConnectedAt: '2026-03-08T05:31:00.000000Z' }); // 60.000001 s
          const exact = await zonedFixture.agent({ resourceId, createdAt, firstConnectedAt: '2026-03-08T05:30:59.999999Z' }); // 60 s
          const below = await zonedFixture.agent({ resourceId, createdAt, firstConnectedAt: '2026-03-08T05:30:59.999998Z' }); // 59.999999 s

          const { agents } = await createCoderAgentSource(zoned.db).listAgents({ signal: never });
          const byId = new Map(agents.map((a) => [a.agentId, a]));
          expect(byId.get(above)?.createdAt).toBe(createdAt);
          expect(byId.get(above)?.firstConnectedAt).toBe('2026-03-08T05:31:00.000000Z');
          expect(byId.get(exact)?.firstConnectedAt).toBe('2026-03-08T05:30:59.999999Z');
          expect(byId.get(below)?.firstConnectedAt).toBe('2026-03-08T05:30:59.999998Z');
          for (const agent of agents) expect(harness.recorder.record(agent)).toBe('observed');

          const series = histogramBy(parseSamples(await harness.scrape()), FIRST_CONNECTION_METRIC_NAME, 'template_name').get(templateName);
          expect(series?.count).toBe(3);
          expect(series?.buckets.get('30')).toBe(0);
          expect(series?.buckets.get('60')).toBe(2); // 59.999999 and exactly 60 (le is inclusive)
          expect(series?.buckets.get('120')).toBe(3); // 60.000001 lands above 60
          expect(series!.sum).toBeCloseTo(59.999999 + 60 + 60.000001, 9);
        } finally {
          await harness.shutdown();
          await zoned.destroy();
        }
      });
    }
  });
}
