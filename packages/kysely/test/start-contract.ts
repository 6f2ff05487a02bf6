import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import {
  FirstConnectionPoller,
  FirstConnectionRecorder,
  toEpochMicros,
  workspaceStart,
  WorkspaceStartRecorder,
  workspaceStartViews,
  type StartBatch,
  type WorkspaceStartBuild,
} from '@agentconn/core';
import {
  checkCoderSchema,
  coderSchemaSubsetMigrationOnly,
  createCoderAgentSource,
  createCoderStartSource,
  createWorkspaceStartIndexes,
  FIRST_CONNECTION_REQUIREMENT,
  WORKSPACE_START_REQUIREMENT,
} from './start-contract-imports.js';
import type { OpenTestDatabase, TestDatabase } from './helpers/databases.js';
import { createProvisionerJobStatsView, StartFixture } from './helpers/start-fixtures.js';

const signal = new AbortController().signal;

/** What the phase model says about a build of the batch (changed or in progress), judged on the batch's clock. */
function outcomeOf(batch: StartBatch, buildId: string): string | undefined {
  const build = [...batch.builds, ...batch.inProgress].find((b) => b.buildId === buildId);
  if (build === undefined) return undefined;
  const result = workspaceStart({ ...build.instants, now: batch.now });
  return result.state === 'ended' ? result.outcome : result.state === 'in_progress' ? `in_progress:${result.phase}` : `invalid:${result.problem.message}`;
}

/**
 * The whole start's source, the same suite on every database: each outcome, phases that add up, Coder's own
 * stage seconds, scripts of the start stage only, odd rows dropped without stopping the read, and the
 * builds in progress.
 */
export function defineStartContract(name: string, open: OpenTestDatabase): void {
  describe(`createCoderStartSource contract: ${name}`, () => {
    let database: TestDatabase;
    let f: StartFixture;
    const ids: Record<string, string> = {};
    let readyJob = '';
    let readyAgent = '';

    beforeAll(async () => {
      database = await open();
      f = await StartFixture.create(database.db);
      const docker = await f.template('docker');
      const k8s = await f.template('k8s');
      const completed = { startedAt: f.at(0.5), completedAt: f.at(20) };
      const newBuild = async (key: string, job: Parameters<StartFixture['build']>[0]['job'], options: { template?: typeof docker; prebuild?: boolean } = {}) => {
        const ws = await f.workspace(options.template ?? docker, { prebuild: options.prebuild ?? false });
        const built = await f.build({ ...ws, createdAt: f.at(0), job });
        ids[key] = built.buildId;
        return { ...built, ...ws };
      };

      // ready: two agents and a sub-agent that never connects; µs-precise instants.
      const ready = await newBuild('ready', { startedAt: f.at(0.000001), completedAt: f.at(20) });
      readyJob = ready.jobId;
      readyAgent = await f.agent({ resourceId: ready.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(25), readyAt: f.at(40.000001) });
      await f.agent({ resourceId: ready.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(30), readyAt: f.at(35) });
      await f.agent({ resourceId: ready.resourceId, createdAt: f.at(50), parentId: readyAgent });
      await f.timing(ready.jobId, 'init', f.at(1), f.at(2.5));
      await f.timing(ready.jobId, 'plan', f.at(3), f.at(4.25));
      await f.timing(ready.jobId, 'apply', f.at(5), f.at(12));
      await f.timing(ready.jobId, 'apply', f.at(6), f.at(19.000001));
      const install = await f.script(readyAgent, 'install');
      await f.scriptRun(install, { stage: 'start', status: 'ok', startedAt: f.at(26), endedAt: f.at(33.5) });
      await f.scriptRun(install, { stage: 'stop', status: 'ok', startedAt: f.at(100), endedAt: f.at(101) });
      await f.scriptRun(install, { stage: 'cron', status: 'exit_failure', startedAt: f.at(200), endedAt: f.at(201) });

      const errored = await newBuild('start_error', completed, { template: k8s });
      await f.agent({ resourceId: errored.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(21), readyAt: f.at(22), lifecycleState: 'start_error' });
      await f.agent({ resourceId: errored.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(21), readyAt: f.at(23), lifecycleState: 'start_timeout' });
      const slow = await newBuild('start_timeout', completed);
      await f.agent({ resourceId: slow.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(21), readyAt: f.at(90), lifecycleState: 'start_timeout' });
      await newBuild('build_failed', { ...completed, error: 'terraform apply: exit status 1' });
      await newBuild('canceled', { startedAt: f.at(1), canceledAt: f.at(5), completedAt: f.at(6) });
      const late = await newBuild('connect_timeout', completed);
      await f.agent({ resourceId: late.resourceId, createdAt: f.at(19), connectionTimeoutSeconds: 60 });
      await newBuild('no_agents', completed, { prebuild: true });

      // In progress: queued, provisioning, connecting with no timeout (never counted), starting.
      await newBuild('queued', {});
      await newBuild('provisioning', { startedAt: f.at(1) });
      const waiting = await newBuild('connecting', completed);
      await f.agent({ resourceId: waiting.resourceId, createdAt: f.at(19), connectionTimeoutSeconds: 0 });
      const starting = await newBuild('starting', completed);
      await f.agent({ resourceId: starting.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(21) });
      // Superseded by a stop build: gone from the builds in progress.
      const superseded = await newBuild('superseded', completed);
      await f.agent({ resourceId: superseded.resourceId, createdAt: f.at(19) });
      await f.build({ ...superseded, buildNumber: 2, createdAt: f.at(600), transition: 'stop', job: { startedAt: f.at(601), completedAt: f.at(610) } });

      // Odd rows.
      await newBuild('completed_before_started', { startedAt: f.at(10), completedAt: f.at(9) });
      const noConnection = await newBuild('ready_without_connection', completed);
      await f.agent({ resourceId: noConnection.resourceId, createdAt: f.at(19), readyAt: f.at(30) });
      const early = await newBuild('ready_before_completed', completed);
      await f.agent({ resourceId: early.resourceId, createdAt: f.at(10), firstConnectedAt: f.at(21), readyAt: f.at(15) });
      await newBuild('other_job_type', { ...completed, type: 'template_version_import' });
      const skewed = await newBuild('skewed_timing', completed);
      await f.timing(skewed.jobId, 'plan', f.at(5), f.at(4));
      const skewedAgent = await f.agent({ resourceId: skewed.resourceId, createdAt: f.at(19), firstConnectedAt: f.at(21), readyAt: f.at(30) });
      await f.scriptRun(await f.script(skewedAgent, 'clone'), { stage: 'start', status: 'ok', startedAt: f.at(29), endedAt: f.at(28) });
    });
    afterAll(async () => {
      await database?.destroy();
    });

    it('tells every outcome and every phase in progress, writing nothing to the console', async () => {
      // The exporter's stdout and a benchmark's report carry nothing else (Kysely warns there of deprecated calls).
      const writes = [vi.spyOn(console, 'log'), vi.spyOn(console, 'warn'), vi.spyOn(console, 'error')];
      const batch = await createCoderStartSource(database.db).listStarts({ since: new Date(Date.parse(f.at(-60))), signal });
      for (const spy of writes) {
        expect(spy.mock.calls).toEqual([]);
        spy.mockRestore();
      }
      const expected: Record<string, string> = {
        ready: 'ready',
        start_error: 'start_error',
        start_timeout: 'start_timeout',
        build_failed: 'build_failed',
        canceled: 'canceled',
        connect_timeout: 'connect_timeout',
        no_agents: 'ready',
        queued: 'in_progress:queued',
        provisioning: 'in_progress:provisioning',
        connecting: 'in_progress:connecting',
        starting: 'in_progress:starting',
      };
      for (const [key, outcome] of Object.entries(expected)) expect({ key, outcome: outcomeOf(batch, ids[key]!) }).toEqual({ key, outcome });
      expect(batch.builds.find((b) => b.buildId === ids['no_agents'])?.labels.is_prebuild).toBe(true);
      expect(batch.builds.find((b) => b.buildId === ids['ready'])?.labels).toEqual(expect.objectContaining({ template_name: 'docker', is_prebuild: false }));
    });

    it('the phases of a ready start add up exactly to the start, at µs precision', async () => {
      const batch = await createCoderStartSource(database.db).listStarts({ since: new Date(Date.parse(f.at(-60))), signal });
      const build = batch.builds.find((b) => b.buildId === ids['ready'])!;
      const result = workspaceStart({ ...build.instants, now: batch.now });
      if (result.state !== 'ended') throw new Error(result.state);
      expect(result.seconds).toBe(40.000001);
      expect(result.phases.map((p) => [p.phase, p.seconds])).toEqual([
        ['queued', 0.000001],
        ['provisioning', 19.999999],
        ['connecting', 10],
        ['starting', 10.000001],
      ]);
      expect(result.phases.reduce((sum, p) => sum + p.endMicros - p.startMicros, 0)).toBe(result.atMicros - result.createdMicros);
    });

    it("stage seconds equal Coder's provisioner_job_stats on the same rows", async () => {
      await createProvisionerJobStatsView(database.db);
      const batch = await createCoderStartSource(database.db).listStarts({ since: new Date(Date.parse(f.at(-60))), signal });
      const job = batch.jobs.find((j) => j.jobId === readyJob)!;
      const ours = Object.fromEntries(job.stages.map((s) => [`${s.stage}_secs`, (toEpochMicros(s.endedAt)! - toEpochMicros(s.startedAt)!) / 1e6]));
      const { rows } = await sql<Record<string, number>>`SELECT init_secs, plan_secs, apply_secs FROM provisioner_job_stats WHERE job_id = ${readyJob}`.execute(database.db);
      expect(ours).toEqual(rows[0]);
      expect(ours['apply_secs']).toBe(14.000001);
      expect(job.stages.map((s) => s.stage)).toEqual(['init', 'plan', 'apply']);
    });

    it('reads the start stage of scripts only', async () => {
      const batch = await createCoderStartSource(database.db).listStarts({ since: new Date(Date.parse(f.at(-60))), signal });
      const install = batch.scripts.filter((s) => s.script === 'install');
      expect(install.map((s) => [s.status, s.startedAt, s.endedAt])).toEqual([['ok', f.at(26), f.at(33.5)]]);
    });

    it('odd rows never stop a tick: each dropped with one warning and counted by reason, the rest observed', async () => {
      const exporter = new PrometheusExporter({ preventServerStart: true });
      const meterProvider = new MeterProvider({ readers: [exporter], views: workspaceStartViews() });
      const logger = createMemoryLogger();
      const poller = new FirstConnectionPoller({
        source: createCoderAgentSource(database.db),
        recorder: new FirstConnectionRecorder({ meterProvider, logger }),
        starts: { source: createCoderStartSource(database.db), recorder: new WorkspaceStartRecorder({ meterProvider, logger }) },
        meterProvider,
        logger,
        backfill: { sinceMs: 2 * 3600_000 }, // the fixture's builds are an hour old
      });
      try {
        expect((await poller.tick()).outcome).toBe('success');
        expect((await poller.tick()).outcome).toBe('success');
      } finally {
        await poller.stop();
      }
      const warnings = logger.records.filter((r) => r.level === 'warn' && r.message.includes('dropping'));
      expect(warnings.map((w) => w.message).sort()).toEqual(
        [
          'negative provisioning phase of a workspace start (possible clock skew); dropping phase',
          'negative starting phase of a workspace start (possible clock skew); dropping phase',
          'agent has a ready_at without a first_connected_at; dropping workspace start',
          "the build's job is not a workspace build job; dropping workspace start",
          'provisioner job timing ends before it starts (possible clock skew); dropping stage',
          'agent script timing ends before it starts (possible clock skew); dropping sample',
        ].sort(),
      );
      const { resourceMetrics } = await exporter.collect();
      const text = new PrometheusSerializer().serialize(resourceMetrics);
      const dropped = (reason: string) =>
        Number(/^agentconn_samples_dropped_total\{([^}]*)\} (\S+)$/m.exec(text.split('\n').filter((l) => l.includes(`reason="${reason}"`)).join('\n'))?.[2]);
      expect([dropped('negative_duration'), dropped('invalid')]).toEqual([4, 2]);
      expect(outcomeOf(await createCoderStartSource(database.db).listStarts({ since: new Date(Date.parse(f.at(-60))), signal }), ids['skewed_timing']!)).toBe('ready');
      await meterProvider.shutdown();
    });

    it('in progress: the latest start builds without an outcome, a superseded one gone', async () => {
      const batch = await createCoderStartSource(database.db).listStarts({ since: new Date(Date.parse(f.at(-60))), signal });
      const inProgress = batch.inProgress
        .filter((b) => workspaceStart({ ...b.instants, now: batch.now }).state === 'in_progress')
        .map((b) => b.buildId)
        .sort();
      expect(inProgress).toEqual([ids['queued'], ids['provisioning'], ids['connecting'], ids['starting']].sort());
      expect(batch.builds.find((b) => b.buildId === ids['superseded'])?.supersededAt).toBe(f.at(600));
    });

    it('reads only what changed since the bound', async () => {
      const source = createCoderStartSource(database.db);
      const later = await source.listStarts({ since: new Date(Date.parse(f.at(35))), signal });
      const keys = Object.entries(ids)
        .filter(([, id]) => later.builds.some((b: WorkspaceStartBuild) => b.buildId === id))
        .map(([key]) => key)
        .sort();
      // ready (ready_at 40), start_timeout (ready_at 90), connect_timeout (timeout at 79); superseded is not
      // returned: the job completed at 610 is its stop build's, another build.
      expect(keys).toEqual(['connect_timeout', 'ready', 'start_timeout']);
      expect(later.scripts).toEqual([]);
      expect(later.jobs).toEqual([]);
    });

    it('leaves out what the poller handled in the overlap: the next read returns only builds still going', async () => {
      const source = createCoderStartSource(database.db);
      const since = new Date(Date.parse(f.at(-60)));
      const first = await source.listStarts({ since, signal });
      const recorder = new WorkspaceStartRecorder({ meterProvider: new MeterProvider(), logger: createMemoryLogger() });
      for (const build of first.builds) recorder.recordBuild(build, first.now);
      for (const job of first.jobs) recorder.recordStages(job);
      for (const run of first.scripts) recorder.recordScriptRun(run);
      const exclude = recorder.handledExclusions(since.getTime() * 1000, 10_000);
      const second = await source.listStarts({ since, signal, exclude });
      const going = first.builds.filter((b) => workspaceStart({ ...b.instants, now: first.now }).state === 'in_progress').map((b) => b.buildId);
      expect(second.builds.map((b) => b.buildId).sort()).toEqual(going.sort());
      expect(going.length).toBeGreaterThan(0);
      expect(second.jobs).toEqual([]);
      expect(second.scripts).toEqual([]);
      expect(second.rowsRead - second.inProgress.length).toBeLessThan(first.rowsRead - first.inProgress.length);
    });

    it('finds the builds in progress by key from the last read, as the reconciliation does', async () => {
      const source = createCoderStartSource(database.db);
      const since = new Date(Date.parse(f.at(-60)));
      const going = (batch: StartBatch) =>
        batch.inProgress.filter((b) => workspaceStart({ ...b.instants, now: batch.now }).state === 'in_progress').map((b) => b.buildId).sort();
      const reconciled = going(await source.listStarts({ since, signal }));
      // Nothing known, everything changed since: found through the changed builds.
      expect(going(await source.listStarts({ since, signal, inProgressBuildIds: [] }))).toEqual(reconciled);
      // A later read: nothing changed since, only the builds known to be in progress (and unfinished jobs) looked up.
      const later = new Date(Date.parse(f.at(3000)));
      expect(going(await source.listStarts({ since: later, signal, inProgressBuildIds: reconciled }))).toEqual(reconciled);
      // Unknown and unchanged, a build whose job completed is not looked for: the agents are not scanned.
      const withoutConnecting = reconciled.filter((id) => id !== ids['connecting']);
      expect(going(await source.listStarts({ since: later, signal, inProgressBuildIds: withoutConnecting }))).toEqual(withoutConnecting);
    });

    it('reads start script runs through the agents that became ready, not every run', async () => {
      const source = createCoderStartSource(database.db);
      const since = new Date(Date.parse(f.at(-60)));
      const scan = (await source.listStarts({ since, signal })).scripts.map((r) => r.script).sort();
      expect(scan).toEqual(['clone', 'install']);
      // Through the changed builds' agents: the same runs.
      expect((await source.listStarts({ since, signal, readyAgentIds: [] })).scripts.map((r) => r.script).sort()).toEqual(scan);
      // The ready build left out as handled: its run is found only through the agent the poller passes.
      const exclude = { buildIds: [ids['ready']!], jobIds: [], scriptRuns: [] };
      expect((await source.listStarts({ since, signal, exclude, readyAgentIds: [] })).scripts.map((r) => r.script)).toEqual(['clone']);
      expect((await source.listStarts({ since, signal, exclude, readyAgentIds: [readyAgent] })).scripts.map((r) => r.script).sort()).toEqual(scan);
    });

    if (name === 'PGlite') {
      // PGlite only: CREATE INDEX CONCURRENTLY waits for every older transaction of the shared server.
      it('reads the same with the opt-in indexes', async () => {
        const source = createCoderStartSource(database.db);
        const since = new Date(Date.parse(f.at(-60)));
        const strip = (batch: StartBatch) => ({ builds: batch.builds, jobs: batch.jobs, scripts: batch.scripts, inProgress: batch.inProgress });
        const before = strip(await source.listStarts({ since, signal }));
        await createWorkspaceStartIndexes(database.db);
        await createWorkspaceStartIndexes(database.db);
        expect(strip(await source.listStarts({ since, signal }))).toEqual(before);
      });
    }

    it('without the start tables, the preflight turns this family off alone', async () => {
      const older = await open({ migrate: false });
      try {
        await coderSchemaSubsetMigrationOnly(older.db);
        const check = await checkCoderSchema(older.db as unknown as Kysely<unknown>, [FIRST_CONNECTION_REQUIREMENT, WORKSPACE_START_REQUIREMENT]);
        expect(check.features[0]?.problems).toEqual([]);
        // On the shared server other tests' schemas hold these tables: "not on the search path" there.
        expect(check.features[1]?.problems.map((p) => p.table).sort()).toEqual([
          'provisioner_job_timings',
          'provisioner_jobs',
          'workspace_agent_script_timings',
          'workspace_agent_scripts',
        ]);
      } finally {
        await older.destroy();
      }
    });
  });
}
