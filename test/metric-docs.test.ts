/**
 * The metrics tables of the READMEs are made from the metric definitions of `@agentconn/core`, and every instrument
 * the product creates has a definition. The instruments are the ones really created: by the exporter as the CLI
 * starts it (leader election and OTLP on), and by the core's recorder, poller, awaiting recorder and tracker.
 * After adding a metric: `AGENTCONN_UPDATE_README=1 pnpm exec vitest run test/metric-docs.test.ts` rewrites the tables.
 */
import { fileURLToPath } from 'node:url';
import {
  AgentConnectionTracker,
  AwaitingAgentsRecorder,
  FirstConnectionPoller,
  FirstConnectionRecorder,
  LABEL_KEYS,
  METRIC_DEFINITIONS,
  OVERFLOW_ATTRIBUTE,
  SELF_METRICS,
  START_METRICS,
  TICK_OUTCOMES,
  WorkspaceStartRecorder,
  firstConnectionView,
  workspaceStartViews,
  type AgentLabels,
  type FirstConnectionSource,
  type MetricDefinition,
} from '@agentconn/core';
import { parseCommand, startExporter } from '@agentconn/exporter';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { freePort } from '@agentconn/test-support/ports';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  instrumentsCreatedBy,
  metricsTableMarkdown,
  readmeMetricsTable,
  writeReadmeMetricsTable,
  type CreatedInstrument,
} from './helpers/metric-docs.js';

class CollectingReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const LABELS: AgentLabels = { template_name: 'docker', agent_name: 'main', username: 'alice', workspace_name: 'dev' };

/** A hot standby's answer: a first connection, one with a negative duration, a waiting agent, and a replay lag. */
function standbySource(nowMs: number): FirstConnectionSource {
  return {
    async listAgents(query) {
      return {
        sourceTime: new Date(nowMs),
        visibleUntil: new Date(nowMs),
        replayLagMs: 2_000,
        agents: [
          { agentId: '00000000-0000-4000-8000-000000000001', createdAt: new Date(nowMs - 30_000), firstConnectedAt: new Date(nowMs - 20_000), labels: LABELS },
          { agentId: '00000000-0000-4000-8000-000000000002', createdAt: new Date(nowMs - 10_000), firstConnectedAt: new Date(nowMs - 20_000), labels: LABELS },
        ],
        awaitingAgents: [{ agentId: '00000000-0000-4000-8000-000000000003', createdAt: new Date(nowMs - 5_000), timedOutAt: null, labels: LABELS }],
        awaitingComplete: query.awaiting?.full ?? false,
        timeoutChecks: [],
      };
    },
  };
}

/** One sample into each instrument of the start family, so their labels are checked too. */
function recordEveryStartInstrument(starts: WorkspaceStartRecorder): void {
  const labels = { template_name: 'docker', username: 'alice', workspace_name: 'dev', is_prebuild: false };
  const instants = {
    buildCreatedAt: '2026-12-01T10:00:00Z',
    job: { startedAt: '2026-12-01T10:00:01Z', completedAt: '2026-12-01T10:00:20Z', canceledAt: null, error: null },
    agents: [],
  };
  starts.recordBuild({ buildId: 'b1', labels, instants }, '2026-12-01T11:00:00Z');
  starts.recordStages({ jobId: 'j1', buildId: 'b1', completedAt: '2026-12-01T10:00:20Z', labels, stages: [{ stage: 'plan', startedAt: '2026-12-01T10:00:02Z', endedAt: '2026-12-01T10:00:04Z', negativeRows: 0 }] });
  starts.recordScriptRun({ scriptId: 's1', buildId: 'b1', script: 'install', status: 'ok', startedAt: '2026-12-01T10:00:21Z', endedAt: '2026-12-01T10:00:22Z', labels });
  starts.setInProgress([{ labels, phase: 'queued', count: 1, oldestSeconds: 2 }]);
}

interface CoreRun {
  readonly instruments: CreatedInstrument[];
  readonly collected: ResourceMetrics;
}

/** The core's public classes, each with every option that adds an instrument; one tick, then a collection. */
async function runCore(): Promise<CoreRun> {
  let collected: ResourceMetrics | undefined;
  const instruments = await instrumentsCreatedBy(async () => {
    const reader = new CollectingReader();
    const meterProvider = new MeterProvider({ readers: [reader], views: [firstConnectionView(), ...workspaceStartViews()] });
    const logger = createMemoryLogger();
    const recorder = new FirstConnectionRecorder({ meterProvider, logger });
    const awaiting = new AwaitingAgentsRecorder({ meterProvider, logger });
    const poller = new FirstConnectionPoller({
      source: standbySource(Date.now()),
      recorder,
      awaiting,
      meterProvider,
      logger,
      backfill: 'all',
      leadership: { isLeader: async () => true },
    });
    await poller.tick();
    const starts = new WorkspaceStartRecorder({ meterProvider, logger });
    recordEveryStartInstrument(starts);
    collected = (await reader.collect()).resourceMetrics;
    await poller.stop();
    await meterProvider.shutdown();

    // The in-service path, on a provider of its own (the same names on one provider would be duplicates).
    const serviceProvider = new MeterProvider();
    const tracker = new AgentConnectionTracker({ meterProvider: serviceProvider, logger, connectionTimeoutMs: 60_000 });
    tracker.created({ agentId: '00000000-0000-4000-8000-000000000004', labels: LABELS });
    tracker.connected({ agentId: '00000000-0000-4000-8000-000000000004' });
    tracker.destroy();
    await serviceProvider.shutdown();
  });
  if (collected === undefined) throw new Error('the core run collected nothing');
  return { instruments, collected };
}

/** The exporter as the CLI starts it, with leader election (the default), OTLP and --phases; the database is not there. */
async function runExporter(): Promise<CreatedInstrument[]> {
  const closedPort = await freePort();
  const listenPort = await freePort();
  const command = parseCommand(
    [
      '--database-url',
      `postgres://agentconn@127.0.0.1:${closedPort}/coder`,
      '--listen',
      `127.0.0.1:${listenPort}`,
      '--otlp-endpoint',
      `http://127.0.0.1:${closedPort}/v1/metrics`,
      '--phases',
      'true',
    ],
    {},
  );
  if (command.kind !== 'run') throw new Error(`expected a run, got ${command.kind}`);
  const { config } = command;
  return instrumentsCreatedBy(async () => {
    const exporter = await startExporter({ config, logger: createMemoryLogger() });
    await exporter.stop();
  });
}

const START_DEFINITIONS: readonly MetricDefinition[] = Object.values(START_METRICS);

const definitionsOf = (instruments: readonly CreatedInstrument[]): MetricDefinition[] =>
  METRIC_DEFINITIONS.filter((d) => instruments.some((i) => i.name === d.name));

let core: CoreRun;
let exporter: CreatedInstrument[];

beforeAll(async () => {
  core = await runCore();
  exporter = await runExporter();
});

describe('metric definitions', () => {
  it('every instrument the exporter and the core create has a definition with its type, unit and description', () => {
    const created = [...exporter, ...core.instruments];
    expect(exporter.length, 'the exporter run created no instrument: the recording MeterProvider was not used').toBeGreaterThan(0);
    for (const instrument of created) {
      const definition = METRIC_DEFINITIONS.find((d) => d.name === instrument.name);
      expect(definition, `${instrument.name} has no definition in METRIC_DEFINITIONS (packages/core/src/metric.ts)`).toBeDefined();
      expect({ name: instrument.name, type: instrument.type, unit: instrument.unit, description: instrument.description }).toEqual({
        name: definition?.name,
        type: definition?.type,
        unit: definition?.unit,
        description: definition?.description,
      });
    }
  });

  it('every definition is created by the exporter or the core, so no table lists a metric nobody serves', () => {
    const created = new Set([...exporter, ...core.instruments].map((i) => i.name));
    expect(METRIC_DEFINITIONS.map((d) => d.name).filter((name) => !created.has(name))).toEqual([]);
    expect(new Set(METRIC_DEFINITIONS.map((d) => d.name)).size, 'two definitions share a name').toBe(METRIC_DEFINITIONS.length);
  });

  it("the labels of the core's data points are the ones their definitions list", () => {
    const seen = new Set<string>();
    for (const scope of core.collected.scopeMetrics) {
      for (const metric of scope.metrics) {
        const definition = METRIC_DEFINITIONS.find((d) => d.name === metric.descriptor.name);
        expect(definition, metric.descriptor.name).toBeDefined();
        const allowed: Readonly<Record<string, readonly string[] | undefined>> =
          definition?.labels === 'series' ? {} : (definition?.labels ?? {});
        for (const point of metric.dataPoints) {
          for (const [key, value] of Object.entries(point.attributes)) {
            seen.add(`${metric.descriptor.name}{${key}}`);
            if (definition?.labels === 'series') {
              expect([...LABEL_KEYS, OVERFLOW_ATTRIBUTE], `${metric.descriptor.name}: label ${key}`).toContain(key);
            } else if (allowed[key]?.length === 0) {
              // An empty list: a value that names something (a template, a script), any string.
              expect(typeof value, `${metric.descriptor.name}: label ${key}`).toBe('string');
            } else {
              expect(allowed[key], `${metric.descriptor.name}: label ${key} is not in its definition`).toContain(value);
            }
          }
        }
      }
    }
    // The run did produce labelled points, so the loop above checked something.
    expect(seen).toContain(`${SELF_METRICS.polls.name}{outcome}`);
    expect(seen).toContain(`${SELF_METRICS.samplesDropped.name}{reason}`);
    expect(seen).toContain(`${METRIC_DEFINITIONS[0]?.name}{template_name}`);
    expect(seen).toContain('agentconn_agent_startup_script_seconds{script}');
  });

  it("the poll outcomes of the definition are the poller's", () => {
    expect([...SELF_METRICS.polls.labels.outcome]).toEqual([...TICK_OUTCOMES]);
  });
});

const root = (path: string): string => fileURLToPath(new URL(`../${path}`, import.meta.url));

describe('the metrics tables of the READMEs are made from the definitions', () => {
  const readmes: ReadonlyArray<readonly [string, () => MetricDefinition[]]> = [
    ['README.md', () => definitionsOf(exporter).filter((d) => d.labels === 'series')],
    // The whole start's six have their table on their own page, so the README stays within its word limit.
    ['packages/exporter/README.md', () => definitionsOf(exporter).filter((d) => !START_DEFINITIONS.includes(d))],
    ['packages/exporter/docs/whole-start.md', () => definitionsOf(exporter).filter((d) => START_DEFINITIONS.includes(d))],
    ['packages/core/README.md', () => definitionsOf(core.instruments)],
  ];
  it.each(readmes)('%s', (path, definitions) => {
    const expected = metricsTableMarkdown(definitions());
    if (process.env['AGENTCONN_UPDATE_README'] === '1') writeReadmeMetricsTable(root(path), expected);
    expect(readmeMetricsTable(root(path)), 'run with AGENTCONN_UPDATE_README=1 to rewrite the table').toBe(expected);
  });
});
