import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { toEpochMicros, WorkspaceStartRecorder, workspaceStartViews, type WorkspaceStartBuild } from '../src/index.js';
import { createTestMetrics } from './helpers.js';

const LABELS = { template_name: 'docker', username: 'alice', workspace_name: 'dev', is_prebuild: false };

function readyBuild(buildId: string, overrides: Partial<WorkspaceStartBuild> = {}): WorkspaceStartBuild {
  return {
    buildId,
    labels: LABELS,
    instants: {
      buildCreatedAt: '2026-12-01T10:00:00.000000Z',
      job: { startedAt: '2026-12-01T10:00:00.250000Z', completedAt: '2026-12-01T10:00:20.000000Z', canceledAt: null, error: null },
      agents: [
        {
          createdAt: '2026-12-01T10:00:19.000000Z',
          firstConnectedAt: '2026-12-01T10:00:25.000000Z',
          readyAt: '2026-12-01T10:00:40.000000Z',
          lifecycleState: 'ready',
          connectionTimeoutSeconds: 0,
        },
      ],
    },
    ...overrides,
  };
}

const NOW = '2026-12-01T11:00:00.000000Z';

/** `name{labels}` value from the Prometheus text (a trailing `,le="…"` matched after the scope labels), or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const [series = '', le] = labels.split(',le=');
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${series}`) && (le === undefined || l.includes(`le=${le}}`)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('WorkspaceStartRecorder', () => {
  it('observes a build once across repeated records, the start and its four phases', async () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger: createMemoryLogger() });
    expect(recorder.recordBuild(readyBuild('b1'), NOW)).toEqual({ observed: 5, dropped: 0 });
    expect(recorder.recordBuild(readyBuild('b1'), NOW)).toEqual({ observed: 0, dropped: 0 });
    const text = await metrics.text();
    expect(sample(text, 'agentconn_workspace_start_seconds_count', 'template_name="docker",is_prebuild="false",outcome="ready"')).toBe(1);
    expect(sample(text, 'agentconn_workspace_start_seconds_sum', 'template_name="docker",is_prebuild="false",outcome="ready"')).toBe(40);
    expect(sample(text, 'agentconn_workspace_start_seconds_bucket', 'template_name="docker",is_prebuild="false",outcome="ready",le="30"')).toBe(0);
    expect(sample(text, 'agentconn_workspace_start_seconds_bucket', 'template_name="docker",is_prebuild="false",outcome="ready",le="60"')).toBe(1);
    expect(sample(text, 'agentconn_workspace_start_phase_seconds_sum', 'template_name="docker",is_prebuild="false",phase="queued"')).toBe(0.25);
    expect(sample(text, 'agentconn_workspace_start_phase_seconds_bucket', 'template_name="docker",is_prebuild="false",phase="queued",le="0.5"')).toBe(1);
    expect(sample(text, 'agentconn_workspace_start_phase_seconds_sum', 'template_name="docker",is_prebuild="false",phase="starting"')).toBe(15);
    await metrics.shutdown();
  });

  it('observes a phase when it ends, before the outcome, and never twice', async () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger: createMemoryLogger() });
    const running = readyBuild('b2');
    const connecting = { ...running, instants: { ...running.instants, agents: [{ ...running.instants.agents[0]!, firstConnectedAt: null, readyAt: null }] } };
    expect(recorder.recordBuild(connecting, NOW)).toEqual({ observed: 2, dropped: 0 });
    expect(recorder.recordBuild(running, NOW)).toEqual({ observed: 3, dropped: 0 });
    const text = await metrics.text();
    expect(sample(text, 'agentconn_workspace_start_phase_seconds_count', 'template_name="docker",is_prebuild="false",phase="queued"')).toBe(1);
    await metrics.shutdown();
  });

  it('leaves out what is before countFrom and what happened after the build was superseded', () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger: createMemoryLogger() });
    const from = toEpochMicros('2026-12-01T10:00:21.000000Z')!;
    expect(recorder.recordBuild(readyBuild('b3'), NOW, { countFrom: from })).toEqual({ observed: 3, dropped: 0 }); // connecting, starting, start
    expect(recorder.recordBuild(readyBuild('b4', { supersededAt: '2026-12-01T10:00:30.000000Z' }), NOW)).toEqual({ observed: 3, dropped: 0 });
  });

  it('drops a negative phase once with one warning, counted, and observes the rest of the start', async () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const logger = createMemoryLogger();
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger });
    const odd = readyBuild('b5');
    const skewed = { ...odd, instants: { ...odd.instants, job: { ...odd.instants.job, completedAt: '2026-12-01T10:00:00.100000Z' } } };
    expect(recorder.recordBuild(skewed, NOW)).toEqual({ observed: 4, dropped: 1 });
    expect(recorder.recordBuild(skewed, NOW)).toEqual({ observed: 0, dropped: 0 });
    expect(logger.records.filter((e) => e.level === 'warn').map((e) => [e.message, e.fields['build_id']])).toEqual([
      ['negative provisioning phase of a workspace start (possible clock skew); dropping phase', 'b5'],
    ]);
    const text = await metrics.text();
    expect(sample(text, 'agentconn_samples_dropped_total', 'reason="negative_duration"')).toBe(1);
    expect(sample(text, 'agentconn_workspace_start_seconds_count', 'template_name="docker",is_prebuild="false",outcome="ready"')).toBe(1);
    await metrics.shutdown();
  });

  it('drops a build Coder would not write once with one warning, counted as invalid', async () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const logger = createMemoryLogger();
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger });
    const odd = readyBuild('b8');
    const noConnection = { ...odd, instants: { ...odd.instants, agents: [{ ...odd.instants.agents[0]!, firstConnectedAt: null }] } };
    expect(recorder.recordBuild(noConnection, NOW)).toEqual({ observed: 0, dropped: 1 });
    expect(recorder.recordBuild(noConnection, NOW)).toEqual({ observed: 0, dropped: 0 });
    expect(sample(await metrics.text(), 'agentconn_samples_dropped_total', 'reason="invalid"')).toBe(1);
    await metrics.shutdown();
  });

  it('serves the in-progress groups with the configured labels, and nothing once cleared', async () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger: createMemoryLogger() });
    recorder.setInProgress([
      { labels: LABELS, phase: 'connecting', count: 2, oldestSeconds: 30 },
      { labels: { ...LABELS, is_prebuild: true }, phase: 'connecting', count: 1, oldestSeconds: 90 },
    ]);
    const text = await metrics.text();
    expect(sample(text, 'agentconn_workspace_starts_in_progress', 'template_name="docker",phase="connecting"')).toBe(3);
    expect(sample(text, 'agentconn_workspace_starts_in_progress_oldest_seconds', 'template_name="docker",phase="connecting"')).toBe(90);
    recorder.clearInProgress();
    expect(await metrics.text()).not.toContain('agentconn_workspace_starts_in_progress{');
    await metrics.shutdown();
  });

  it('stages and script runs once each; an odd timing dropped and counted', async () => {
    const metrics = createTestMetrics(workspaceStartViews());
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger: createMemoryLogger() });
    const job = {
      jobId: 'j1',
      buildId: 'b6',
      completedAt: '2026-12-01T10:00:20.000000Z',
      labels: LABELS,
      stages: [
        { stage: 'init', startedAt: '2026-12-01T10:00:01.000000Z', endedAt: '2026-12-01T10:00:03.500000Z', negativeRows: 0 },
        { stage: 'apply', startedAt: '2026-12-01T10:00:05.000000Z', endedAt: '2026-12-01T10:00:19.000000Z', negativeRows: 1 },
      ],
    };
    expect(recorder.recordStages(job)).toEqual({ observed: 1, dropped: 1 });
    expect(recorder.recordStages(job)).toEqual({ observed: 0, dropped: 0 });
    const run = { scriptId: 's1', buildId: 'b6', script: 'install', status: 'ok', startedAt: '2026-12-01T10:00:26.000000Z', endedAt: '2026-12-01T10:00:31.000000Z', labels: LABELS };
    expect(recorder.recordScriptRun(run)).toEqual({ observed: 1, dropped: 0 });
    expect(recorder.recordScriptRun(run)).toEqual({ observed: 0, dropped: 0 });
    const text = await metrics.text();
    expect(sample(text, 'agentconn_provisioner_stage_seconds_sum', 'template_name="docker",stage="init"')).toBe(2.5);
    expect(text).not.toContain('stage="apply"');
    expect(sample(text, 'agentconn_agent_startup_script_seconds_sum', 'template_name="docker",script="install",status="ok"')).toBe(5);
    await metrics.shutdown();
  });

  it('keeps the exemplar of the latest build per bucket, naming the build', () => {
    const recorder = new WorkspaceStartRecorder({ meterProvider: createTestMetrics(workspaceStartViews()).meterProvider, logger: createMemoryLogger() });
    recorder.recordBuild(readyBuild('00000000-0000-4000-8000-000000000007'), NOW);
    const exemplars = recorder.exemplars.histogramExemplars('agentconn_workspace_start_seconds', {
      template_name: 'docker',
      is_prebuild: 'false',
      outcome: 'ready',
    });
    expect(exemplars?.find((e) => e !== undefined)).toEqual({
      labels: { build_id: '00000000-0000-4000-8000-000000000007', workspace_name: 'dev', username: 'alice' },
      value: 40,
      timestampSeconds: toEpochMicros('2026-12-01T10:00:40.000000Z')! / 1e6,
    });
  });

  it('holds the cardinality limit: a label set past it goes to the overflow series, counted and logged once', async () => {
    const metrics = createTestMetrics(workspaceStartViews({ cardinalityLimit: 2 }));
    const logger = createMemoryLogger();
    const recorder = new WorkspaceStartRecorder({ meterProvider: metrics.meterProvider, logger, cardinalityLimit: 2 });
    recorder.recordBuild(readyBuild('c1'), NOW);
    recorder.recordBuild({ ...readyBuild('c2'), labels: { ...LABELS, template_name: 'k8s' } }, NOW);
    recorder.recordBuild({ ...readyBuild('c3'), labels: { ...LABELS, template_name: 'nomad' } }, NOW);
    const text = await metrics.text();
    expect(sample(text, 'agentconn_workspace_start_seconds_count', 'template_name="docker",is_prebuild="false",outcome="ready"')).toBe(1);
    expect(sample(text, 'agentconn_workspace_start_seconds_count', 'otel_metric_overflow="true"')).toBe(2);
    expect(sample(text, 'agentconn_label_set_overflow_samples_total', 'instrument="agentconn_workspace_start_seconds"')).toBe(2);
    expect(logger.records.filter((r) => r.fields['metric'] === 'agentconn_workspace_start_seconds')).toHaveLength(1);
    await metrics.shutdown();
  });

  it('rejects a label outside the allow-list, naming it', () => {
    expect(() => new WorkspaceStartRecorder({ labels: ['agent_name' as never] })).toThrow(
      'unknown start label "agent_name": labels must be among template_name, is_prebuild, username, workspace_name',
    );
  });
});
