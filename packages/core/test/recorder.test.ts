import { afterEach, describe, expect, it } from 'vitest';
import {
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FirstConnectionRecorder,
  firstConnectionView,
  LABEL_KEYS,
  type AgentFirstConnection,
} from '../src/index.js';
import { samples } from '@agentconn/test-support/exposition-parser';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { agent, createTestMetrics, type TestMetrics } from './helpers.js';

const NAME = 'coderd_agents_first_connection_seconds';
/** Coder PR #24179's four labels, for the tests about them (the default is Coder #24355's two). */
const FOUR_LABELS = { labels: [...LABEL_KEYS] };
let metrics: TestMetrics | undefined;
afterEach(async () => {
  await metrics?.shutdown();
  metrics = undefined;
});

function setup(options: { views?: boolean; labels?: Parameters<typeof firstConnectionView>[0] } = {}) {
  metrics = createTestMetrics(options.views === false ? [] : [firstConnectionView(options.labels)]);
  const logger = createMemoryLogger();
  const recorder = new FirstConnectionRecorder({
    meterProvider: metrics.meterProvider,
    logger,
    ...(options.labels ?? {}),
  });
  return { metrics, logger, recorder };
}

describe('exposition through the official Prometheus exporter', () => {
  it('has the exact HELP and TYPE lines, every bucket bound and the four labels in order', async () => {
    const { metrics, recorder } = setup({ labels: FOUR_LABELS });
    expect(recorder.record(agent({ delaySeconds: 5 }))).toBe('observed');
    const text = await metrics.text();
    expect(text).toContain(
      `# HELP ${NAME} Duration from agent creation to first connection to the control plane in seconds.\n`,
    );
    expect(text).toContain(`# TYPE ${NAME} histogram\n`);
    const buckets = [...text.matchAll(new RegExp(`^${NAME}_bucket\\{.*le="([^"]+)"\\} `, 'gm'))].map((m) => m[1]);
    expect(buckets).toEqual([...FIRST_CONNECTION_BUCKET_BOUNDARIES.map(String), '+Inf']);
    const line = text.split('\n').find((l) => l.startsWith(`${NAME}_count`));
    expect(line).toMatch(/template_name="docker",agent_name="main",username="alice",workspace_name="ws-1"/);
  });

  it('uses the advice buckets when the host registers no View', async () => {
    const { metrics, recorder } = setup({ views: false });
    recorder.record(agent({ delaySeconds: 45 }));
    const text = await metrics.text();
    const buckets = [...text.matchAll(new RegExp(`^${NAME}_bucket\\{.*le="([^"]+)"\\} `, 'gm'))].map((m) => m[1]);
    expect(buckets).toEqual([...FIRST_CONNECTION_BUCKET_BOUNDARIES.map(String), '+Inf']);
  });
});

describe('the test of Coder PR #24179', () => {
  it('one agent connected 45 s after creation: count 1, sum 45, in the 60 s bucket and above, not in 30 s', async () => {
    const { metrics, recorder } = setup({ labels: FOUR_LABELS });
    recorder.record(agent({ delaySeconds: 45 }));
    const s = samples(await metrics.text(), NAME);
    const labels = 'template_name="docker",agent_name="main",username="alice",workspace_name="ws-1"';
    expect(s.get(`${NAME}_count{${labels}}`)).toBe(1);
    expect(s.get(`${NAME}_sum{${labels}}`)).toBeCloseTo(45, 3);
    expect(s.get(`${NAME}_bucket{${labels},le="30"}`)).toBe(0);
    for (const le of ['60', '120', '300', '600', '1800', '3600', '+Inf']) {
      expect(s.get(`${NAME}_bucket{${labels},le="${le}"}`), `le=${le}`).toBe(1);
    }
  });
});

describe('microsecond precision', () => {
  it('60.000001 s lands above the 60 s bound, 60.000000 s on it', async () => {
    const { metrics, recorder } = setup({ labels: { labels: ['template_name'] } });
    const just = agent({
      createdAt: '2026-11-25 10:00:00.000000+00',
      firstConnectedAt: '2026-11-25 10:01:00.000001+00',
      labels: { template_name: 'above', agent_name: 'a', username: 'u', workspace_name: 'w' },
    });
    const exact = agent({
      createdAt: '2026-11-25T15:30:00.250000+05:30',
      firstConnectedAt: '2026-11-25T10:01:00.25Z',
      labels: { template_name: 'on', agent_name: 'a', username: 'u', workspace_name: 'w' },
    });
    expect(recorder.record(just)).toBe('observed');
    expect(recorder.record(exact)).toBe('observed');
    const s = samples(await metrics.text(), NAME);
    expect(s.get(`${NAME}_bucket{template_name="above",le="60"}`)).toBe(0);
    expect(s.get(`${NAME}_bucket{template_name="above",le="120"}`)).toBe(1);
    expect(s.get(`${NAME}_sum{template_name="above"}`)).toBe(60.000001);
    expect(s.get(`${NAME}_bucket{template_name="on",le="60"}`)).toBe(1);
  });
});

describe('observe once', () => {
  it('an agent seen on many calls is observed once', async () => {
    const { metrics, recorder } = setup();
    const a = agent({ delaySeconds: 12 });
    const outcomes = Array.from({ length: 10 }, () => recorder.record(a));
    expect(outcomes[0]).toBe('observed');
    expect(outcomes.slice(1).every((o) => o === 'duplicate')).toBe(true);
    const s = samples(await metrics.text(), `${NAME}_count`);
    expect([...s.values()]).toEqual([1]);
  });

  it('an agent first seen without first_connected_at and later with it is observed exactly once', async () => {
    const { metrics, recorder } = setup();
    const pending = agent({ firstConnectedAt: null });
    expect(recorder.record(pending)).toBe('not_connected');
    expect(recorder.record(pending)).toBe('not_connected');
    const connected = { ...pending, firstConnectedAt: new Date(new Date(pending.createdAt).getTime() + 90_000) };
    expect(recorder.record(connected)).toBe('observed');
    expect(recorder.record(connected)).toBe('duplicate');
    const s = samples(await metrics.text(), NAME);
    const counts = [...s].filter(([k]) => k.startsWith(`${NAME}_count`)).map(([, v]) => v);
    expect(counts).toEqual([1]);
    const sums = [...s].filter(([k]) => k.startsWith(`${NAME}_sum`)).map(([, v]) => v);
    expect(sums[0]).toBeCloseTo(90, 6);
  });
});

describe('drops', () => {
  it('a negative duration gives no sample, one warning with the fields of Coder PR #24179, and one count', async () => {
    const { metrics, recorder, logger } = setup();
    const skewed = agent({
      createdAt: '2026-11-25T10:00:05.000001Z',
      firstConnectedAt: '2026-11-25T10:00:00Z',
    });
    for (let i = 0; i < 5; i++) recorder.record(skewed);
    const warnings = logger.records.filter((r) => r.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toBe('negative agent first connection duration (possible clock skew); dropping sample');
    expect(warnings[0]?.fields).toEqual({
      agent_id: skewed.agentId,
      created_at: '2026-11-25T10:00:05.000001Z',
      first_connected_at: '2026-11-25T10:00:00.000000Z',
      duration_s: -5.000001,
    });
    const text = await metrics.text();
    expect(text).not.toMatch(new RegExp(`^${NAME}_count`, 'm'));
    expect(samples(text, 'agentconn_samples_dropped_total').get('agentconn_samples_dropped_total{reason="negative_duration"}')).toBe(1);
  });

  it('invalid input is not observed, is logged with what was wrong, is counted, and never throws', async () => {
    const { metrics, recorder, logger } = setup();
    const bad: unknown[] = [
      { ...agent(), agentId: '' },
      { ...agent(), agentId: undefined },
      agent({ createdAt: new Date(Number.NaN) }),
      agent({ firstConnectedAt: 'yesterday' }),
      agent({ firstConnectedAt: '2026-02-31T00:00:00Z' }),
      agent({ createdAt: '2026-11-25T10:00:00' }), // no offset: ambiguous
      agent({ labels: { template_name: 'x' } as unknown as AgentFirstConnection['labels'] }),
      null,
    ];
    for (const input of bad) {
      expect(() => recorder.record(input as AgentFirstConnection)).not.toThrow();
      expect(recorder.record(input as AgentFirstConnection)).toMatch(/^(invalid|duplicate)$/);
    }
    const messages = logger.records.filter((r) => r.level === 'warn').map((r) => r.message);
    expect(messages).toContain('agent record has no agentId');
    expect(messages).toContain('agent created_at is not a valid timestamp; dropping sample');
    expect(messages).toContain('agent first_connected_at is not a valid timestamp; dropping sample');
    expect(messages).toContain('agent labels are missing or not strings; dropping sample');
    const text = await metrics.text();
    expect(text).not.toMatch(new RegExp(`^${NAME}_count`, 'm'));
    // Records with an id are counted once; the three without an id (or not an object) each time they come.
    expect(samples(text, 'agentconn_samples_dropped_total').get('agentconn_samples_dropped_total{reason="invalid"}')).toBe(5 + 3 * 2);
    expect(samples(text, 'agentconn_samples_observed_total').get('agentconn_samples_observed_total{}')).toBe(0);
  });
});

describe('labels and cardinality', () => {
  it('defaults to Coder #24355\'s template_name and agent_name in the View and the recorder', async () => {
    const { metrics, recorder } = setup({ labels: {} });
    expect(recorder.labels).toEqual(['template_name', 'agent_name']);
    recorder.record(agent({ delaySeconds: 4, labels: { template_name: 'docker', agent_name: 'main', username: 'bob', workspace_name: 'ws-2' } }));
    recorder.record(agent({ delaySeconds: 5, labels: { template_name: 'docker', agent_name: 'main', username: 'eve', workspace_name: 'ws-3' } }));
    const s = samples(await metrics.text(), NAME);
    expect(s.get(`${NAME}_count{template_name="docker",agent_name="main"}`)).toBe(2);
  });

  it('keeps only the chosen labels (Coder #24355: template_name, agent_name)', async () => {
    const { metrics, recorder } = setup({ labels: { labels: ['agent_name', 'template_name'] } });
    recorder.record(agent({ delaySeconds: 3 }));
    recorder.record(agent({ delaySeconds: 4, labels: { template_name: 'docker', agent_name: 'main', username: 'bob', workspace_name: 'ws-2' } }));
    const s = samples(await metrics.text(), `${NAME}_count`);
    expect([...s]).toEqual([[`${NAME}_count{template_name="docker",agent_name="main"}`, 2]]);
  });

  it('rejects an unknown label and a bad cardinality limit with an error naming it', () => {
    expect(() => firstConnectionView({ labels: ['template'] as never })).toThrow(/unknown label "template"/);
    expect(() => firstConnectionView({ cardinalityLimit: 1 })).toThrow(/cardinalityLimit/);
    expect(() => new FirstConnectionRecorder({ cardinalityLimit: Number.NaN })).toThrow(/cardinalityLimit/);
  });

  it('past the cardinality limit new label sets go to the overflow series, logged once and counted', async () => {
    const { metrics, recorder, logger } = setup({ labels: { ...FOUR_LABELS, cardinalityLimit: 4 } });
    for (let i = 0; i < 6; i++) {
      recorder.record(agent({ delaySeconds: 2, labels: { template_name: 't', agent_name: 'main', username: `u${i}`, workspace_name: 'w' } }));
    }
    const text = await metrics.text();
    const counts = samples(text, `${NAME}_count`);
    expect(counts.size).toBe(4);
    expect(counts.get(`${NAME}_count{otel_metric_overflow="true"}`)).toBe(3);
    expect(logger.records.filter((r) => r.message.startsWith('cardinality limit'))).toHaveLength(1);
    expect(samples(text, 'agentconn_label_set_overflow_samples_total').get(`agentconn_label_set_overflow_samples_total{instrument="${NAME}"}`)).toBe(3);
  });
});

describe('label-set keys', () => {
  it('keeps label sets apart whose values only concatenate alike, and counts each against the limit once', async () => {
    const { metrics, recorder } = setup({ labels: { cardinalityLimit: 4 } });
    const sets = [
      { template_name: 'ab', agent_name: 'c', username: '1:', workspace_name: '' },
      { template_name: 'a', agent_name: 'bc', username: '1:', workspace_name: '' },
      { template_name: 'a', agent_name: 'b', username: 'c1:', workspace_name: '' },
    ];
    for (let round = 0; round < 3; round++) for (const labels of sets) recorder.record(agent({ delaySeconds: 2, labels }));
    const counts = samples(await metrics.text(), `${NAME}_count`);
    // Three sets of three samples each, all under the limit of 4 (3 sets + overflow): no overflow series.
    expect([...counts.values()]).toEqual([3, 3, 3]);
    expect(counts.has(`${NAME}_count{otel_metric_overflow="true"}`)).toBe(false);
  });
});

describe('label sets by label count', () => {
  it.each([
    [[], 1],
    [['workspace_name'], 2],
    [['template_name', 'workspace_name'], 3],
    [[...LABEL_KEYS], 4],
  ] as const)('labels %j: as many series as distinct value combinations', async (labels, expected) => {
    const { metrics, recorder } = setup({ labels: { labels } });
    const sets = [
      { template_name: 't1', agent_name: 'main', username: 'u1', workspace_name: 'w1' },
      { template_name: 't1', agent_name: 'main', username: 'u1', workspace_name: 'w2' },
      { template_name: 't2', agent_name: 'main', username: 'u1', workspace_name: 'w2' },
      { template_name: 't2', agent_name: 'main', username: 'u2', workspace_name: 'w2' },
    ];
    for (const l of sets) recorder.record(agent({ delaySeconds: 2, labels: l }));
    for (const l of sets) recorder.record(agent({ delaySeconds: 2, labels: { ...l } }));
    const counts = samples(await metrics.text(), `${NAME}_count`);
    expect(counts.size).toBe(expected);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(8);
    expect(recorder.exemplars.seriesCount).toBe(expected);
  });

  it('a label that is not a string is dropped as invalid on a known and on a new set alike', async () => {
    const { metrics, recorder } = setup({ labels: FOUR_LABELS });
    const labels = { template_name: 't', agent_name: 'main', username: 'u', workspace_name: 'w' };
    expect(recorder.record(agent({ labels }))).toBe('observed');
    const broken = (patch: object) => ({ ...labels, ...patch }) as unknown as AgentFirstConnection['labels'];
    expect(recorder.record(agent({ labels: broken({ workspace_name: 1 }) }))).toBe('invalid');
    expect(recorder.record(agent({ labels: broken({ username: undefined }) }))).toBe('invalid');
    expect(recorder.record(agent({ labels: broken({ template_name: null }) }))).toBe('invalid');
    expect(recorder.record(agent({ labels: broken({ template_name: 'new', agent_name: 2 }) }))).toBe('invalid');
    const counts = samples(await metrics.text(), `${NAME}_count`);
    expect([...counts.values()]).toEqual([1]);
  });
});

describe('self-metric series', () => {
  it('exist at 0 before anything happens, so rate() and increase() see the first drop', async () => {
    const { metrics } = setup();
    const text = await metrics.text();
    const dropped = samples(text, 'agentconn_samples_dropped_total');
    expect(dropped.get('agentconn_samples_dropped_total{reason="negative_duration"}')).toBe(0);
    expect(dropped.get('agentconn_samples_dropped_total{reason="invalid"}')).toBe(0);
    expect(samples(text, 'agentconn_label_set_overflow_samples_total').get(`agentconn_label_set_overflow_samples_total{instrument="${NAME}"}`)).toBe(0);
    expect(samples(text, 'agentconn_samples_observed_total').get('agentconn_samples_observed_total{}')).toBe(0);
  });
});

describe('cardinality over many collections', () => {
  it('caps the label sets over the process lifetime, not per collection (sdk-metrics 3.1 resets its count each collection)', async () => {
    const { metrics, recorder } = setup({ labels: { ...FOUR_LABELS, cardinalityLimit: 5 } });
    let user = 0;
    for (let collection = 0; collection < 3; collection++) {
      for (let i = 0; i < 10; i++) {
        recorder.record(agent({ delaySeconds: 2, labels: { template_name: 't', agent_name: 'main', username: `u${user++}`, workspace_name: 'w' } }));
      }
      const counts = samples(await metrics.text(), `${NAME}_count`);
      expect(counts.size, `series after collection ${collection + 1}`).toBe(5);
      expect(counts.get(`${NAME}_count{otel_metric_overflow="true"}`)).toBe(user - 4);
    }
  });
});

describe('pruning', () => {
  it('retainOnly forgets ids outside the current set; forgetConnectedBefore forgets older connections', () => {
    const recorder = new FirstConnectionRecorder({ logger: createMemoryLogger() });
    const early = agent({ firstConnectedAt: '2026-11-25T10:00:10Z' });
    const late = agent({ firstConnectedAt: '2026-11-25T10:05:00Z' });
    recorder.record(early);
    recorder.record(late);
    expect(recorder.trackedAgents).toBe(2);
    recorder.forgetConnectedBefore(new Date('2026-11-25T10:01:00Z'));
    expect(recorder.hasHandled(early.agentId)).toBe(false);
    expect(recorder.hasHandled(late.agentId)).toBe(true);
    recorder.retainOnly(new Set());
    expect(recorder.trackedAgents).toBe(0);
  });

  it.each([
    ['a few', 2],
    ['most', 8],
  ])('forgetting %s of the ids keeps the others in the order they were handled', (_, forgotten) => {
    const recorder = new FirstConnectionRecorder({ logger: createMemoryLogger(), maxTrackedAgents: 10 });
    // Handled in another order than their connections; the first `forgotten` by connection time go.
    const order = [3, 9, 0, 7, 5, 1, 8, 2, 6, 4];
    const agents = order.map((minute) => ({ minute, agent: agent({ firstConnectedAt: new Date(Date.UTC(2026, 10, 25, 10, minute, 30)) }) }));
    for (const { agent: a } of agents) recorder.record(a);
    recorder.forgetConnectedBefore(new Date(Date.UTC(2026, 10, 25, 10, forgotten)));
    const kept = agents.filter((a) => a.minute >= forgotten).map((a) => a.agent.agentId);
    expect(recorder.trackedAgents).toBe(kept.length);
    expect(recorder.handledIdsSince(0, 100)).toEqual(kept);
    // The most recently handled are the ones a limit keeps, and the oldest handled is evicted first.
    expect(recorder.handledIdsSince(0, 1)).toEqual([kept.at(-1)]);
    const more = Array.from({ length: 10 - kept.length + 1 }, () => agent());
    for (const a of more) recorder.record(a);
    expect(recorder.trackedAgents).toBe(10);
    expect(recorder.hasHandled(kept[0]!)).toBe(false);
    expect(recorder.hasHandled(kept[1]!)).toBe(kept.length > 1);
    recorder.retainOnly(new Set(more.map((a) => a.agentId)));
    expect(recorder.handledIdsSince(0, 100)).toEqual(more.map((a) => a.agentId));
  });

  it('maxTrackedAgents bounds the state, forgetting the oldest first', () => {
    const recorder = new FirstConnectionRecorder({ logger: createMemoryLogger(), maxTrackedAgents: 3 });
    const agents = Array.from({ length: 5 }, () => agent());
    for (const a of agents) recorder.record(a);
    expect(recorder.trackedAgents).toBe(3);
    expect(recorder.hasHandled(agents[0]!.agentId)).toBe(false);
    expect(recorder.hasHandled(agents[4]!.agentId)).toBe(true);
  });
});
