import { afterEach, describe, expect, it } from 'vitest';
import {
  bucketIndex,
  exemplarLabels,
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_NAME,
  FirstConnectionExemplars,
  FirstConnectionRecorder,
  firstConnectionView,
  LABEL_KEYS,
  MAX_EXEMPLAR_LABEL_CHARACTERS,
  OVERFLOW_ATTRIBUTE,
} from '../src/index.js';
import { createTestMetrics, type TestMetrics } from './helpers.js';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';

const AGENT_ID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const chars = (text: string) => Array.from(text).length;
const total = (labels: Record<string, string>) => Object.entries(labels).reduce((n, [k, v]) => n + chars(k) + chars(v), 0);

describe('exemplar labels within OpenMetrics\' 128 characters', () => {
  it('carries agent_id, workspace_name and username whole when they fit, in that order', () => {
    const labels = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'main', username: 'alice', workspace_name: 'dev' }, ['template_name', 'agent_name']);
    expect(Object.entries(labels)).toEqual([['agent_id', AGENT_ID], ['workspace_name', 'dev'], ['username', 'alice']]);
  });

  it('leaves out the labels the series already has', () => {
    expect(exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: 'u', workspace_name: 'w' }, LABEL_KEYS)).toEqual({ agent_id: AGENT_ID });
    expect(exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: 'u', workspace_name: 'w' }, ['template_name', 'username'])).toEqual({
      agent_id: AGENT_ID,
      workspace_name: 'w',
    });
  });

  it.each([
    ['two-byte', 'ü'],
    ['three-byte', '漢'],
    ['four-byte (astral, two UTF-16 units)', '🚀'],
  ])('64-character %s names: agent_id whole, each name cut to 31 characters ending in …, 128 in all', (_, ch) => {
    const workspace = ch.repeat(64);
    const user = 'x' + ch.repeat(63);
    const labels = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: user, workspace_name: workspace }, ['template_name', 'agent_name']);
    expect(labels['agent_id']).toBe(AGENT_ID);
    expect(total(labels)).toBe(MAX_EXEMPLAR_LABEL_CHARACTERS);
    expect(labels['workspace_name']).toBe(ch.repeat(30) + '…');
    expect(labels['username']).toBe('x' + ch.repeat(29) + '…');
    // No code point is split: the values survive a UTF-8 round trip.
    for (const value of Object.values(labels)) expect(Buffer.from(value, 'utf8').toString('utf8')).toBe(value);
  });

  it('a short name keeps its share for the long one', () => {
    const labels = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: 'bob', workspace_name: 'é'.repeat(64) }, ['template_name', 'agent_name']);
    expect(labels['username']).toBe('bob');
    // 128 - 30 (names) - 36 (agent_id) - 3 (bob) = 59.
    expect(labels['workspace_name']).toBe('é'.repeat(58) + '…');
    expect(total(labels)).toBe(MAX_EXEMPLAR_LABEL_CHARACTERS);
  });

  it('a missing or non-string workspace_name or username becomes an empty value, never a throw', () => {
    const labels = { template_name: 't', agent_name: 'a' } as unknown as Parameters<typeof exemplarLabels>[1];
    expect(exemplarLabels(AGENT_ID, labels, ['template_name', 'agent_name'])).toEqual({ agent_id: AGENT_ID, workspace_name: '', username: '' });
  });

  it('whole up to exactly the limit, cut one character past it', () => {
    // 128 - 30 (names) - 36 (agent_id) = 62 characters for the two values.
    const fits = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: 'u'.repeat(31), workspace_name: 'w'.repeat(31) }, ['template_name', 'agent_name']);
    expect(fits).toEqual({ agent_id: AGENT_ID, workspace_name: 'w'.repeat(31), username: 'u'.repeat(31) });
    expect(total(fits)).toBe(MAX_EXEMPLAR_LABEL_CHARACTERS);
    const over = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: 'u'.repeat(31), workspace_name: 'w'.repeat(32) }, ['template_name', 'agent_name']);
    expect(over).toEqual({ agent_id: AGENT_ID, workspace_name: 'w'.repeat(30) + '…', username: 'u'.repeat(31) });
    expect(total(over)).toBe(MAX_EXEMPLAR_LABEL_CHARACTERS);
  });

  it('astral names that fit in characters but not in UTF-16 units are kept whole', () => {
    // 31 + 31 characters fit; as UTF-16 they are 124 units.
    const labels = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: '🚀'.repeat(31), workspace_name: '𝄞'.repeat(31) }, ['template_name', 'agent_name']);
    expect(labels).toEqual({ agent_id: AGENT_ID, workspace_name: '𝄞'.repeat(31), username: '🚀'.repeat(31) });
    expect(total(labels)).toBe(MAX_EXEMPLAR_LABEL_CHARACTERS);
  });

  it('with per-workspace series, only agent_id, whole', () => {
    const labels = exemplarLabels(AGENT_ID, { template_name: 't', agent_name: 'a', username: 'ü'.repeat(64), workspace_name: 'ü'.repeat(64) }, LABEL_KEYS);
    expect(labels).toEqual({ agent_id: AGENT_ID });
  });
});

describe('bucketIndex', () => {
  it('puts a value on a bound in that bucket and 1 µs above it in the next (as the SDK counts)', () => {
    expect(bucketIndex(10)).toBe(1);
    expect(bucketIndex(10.000001)).toBe(2);
    expect(bucketIndex(0)).toBe(0);
    expect(bucketIndex(3600.5)).toBe(FIRST_CONNECTION_BUCKET_BOUNDARIES.length);
  });
});

describe('the recorder keeps one exemplar per bucket per series', () => {
  let metrics: TestMetrics | undefined;
  afterEach(async () => {
    await metrics?.shutdown();
    metrics = undefined;
  });

  function setup(cardinalityLimit?: number) {
    const options = cardinalityLimit === undefined ? {} : { cardinalityLimit };
    metrics = createTestMetrics([firstConnectionView(options)]);
    return new FirstConnectionRecorder({ meterProvider: metrics.meterProvider, logger: createMemoryLogger(), ...options });
  }

  const series = { template_name: 'docker', agent_name: 'main' };
  const connect = (id: string, createdAt: string, firstConnectedAt: string, workspace = `ws-${id}`) => ({
    agentId: id,
    createdAt,
    firstConnectedAt,
    labels: { ...series, username: 'alice', workspace_name: workspace },
  });

  it('the latest observation of each bucket, at microsecond precision, with its first-connection time', () => {
    const recorder = setup();
    recorder.record(connect('a1', '2026-11-25 10:00:00.000000+00', '2026-11-25 10:00:10.000001+00'));
    recorder.record(connect('a2', '2026-11-25 10:00:00.000000+00', '2026-11-25 10:00:12.500000+00'));
    recorder.record(connect('a3', '2026-11-25 10:00:00.000000+00', '2026-11-25 10:20:34.567891+00', 'slow'));
    const buckets = recorder.exemplars.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, series);
    expect(buckets).toHaveLength(FIRST_CONNECTION_BUCKET_BOUNDARIES.length + 1);
    // (10, 30]: a2 replaced a1.
    expect(buckets?.[2]).toEqual({
      labels: { agent_id: 'a2', workspace_name: 'ws-a2', username: 'alice' },
      value: 12.5,
      timestampSeconds: Date.parse('2026-11-25T10:00:12.5Z') / 1000,
    });
    // (600, 1800]: 1234.567891 s, the µs kept.
    expect(buckets?.[7]?.value).toBe(1234.567891);
    expect(buckets?.[7]?.labels['workspace_name']).toBe('slow');
    expect(buckets?.filter((b) => b !== undefined)).toHaveLength(2);
    expect(recorder.exemplars.histogramExemplars('other_metric', series)).toBeUndefined();
  });

  it('an older first connection recorded later does not replace a newer exemplar', () => {
    const recorder = setup();
    recorder.record(connect('new', '2026-11-25 10:00:00+00', '2026-11-25 10:00:20+00'));
    recorder.record(connect('late-commit', '2026-11-25 09:59:00+00', '2026-11-25 09:59:15+00'));
    expect(recorder.exemplars.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, series)?.[2]?.labels['agent_id']).toBe('new');
  });

  it('the overflow series has its own exemplars, and the series are bounded by the cardinality limit', () => {
    const recorder = setup(3);
    for (let i = 0; i < 6; i++) {
      recorder.record({
        agentId: `id-${i}`,
        createdAt: '2026-11-25 10:00:00+00',
        firstConnectedAt: `2026-11-25 10:00:0${i + 1}+00`,
        labels: { template_name: `t${i}`, agent_name: 'main', username: 'u', workspace_name: `w${i}` },
      });
    }
    expect(recorder.exemplars.seriesCount).toBe(3);
    const overflow = recorder.exemplars.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, { [OVERFLOW_ATTRIBUTE]: true });
    expect(overflow?.[1]?.labels['agent_id']).toBe('id-5');
  });

  it('a lookup before the first observation does not hide later ones (the same attributes object each scrape)', () => {
    const store = new FirstConnectionExemplars(['template_name'], 10);
    const attributes = { template_name: 'a' };
    const key = JSON.stringify(['a']);
    expect(store.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, attributes)).toBeUndefined();
    store.observe(key, { labels: { agent_id: '1' }, value: 5, timestampSeconds: 1 });
    expect(store.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, attributes)?.[1]?.labels['agent_id']).toBe('1');
    store.observe(key, { labels: { agent_id: '2' }, value: 500, timestampSeconds: 2 });
    const buckets = store.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, attributes);
    expect(buckets?.[6]?.labels['agent_id']).toBe('2');
    expect(buckets?.[1]?.labels['agent_id']).toBe('1');
  });

  it('accepts() tells whether observe() would keep an exemplar', () => {
    const store = new FirstConnectionExemplars(['template_name'], 2);
    const a = JSON.stringify(['a']);
    expect(store.accepts(a, 1, 100)).toBe(true);
    store.observe(a, { labels: { agent_id: '1' }, value: 1, timestampSeconds: 100 });
    expect(store.accepts(a, 1, 99.999999)).toBe(false);
    expect(store.accepts(a, 1, 100)).toBe(true);
    expect(store.accepts(a, 1, 101)).toBe(true);
    // Another bucket of the same series is empty.
    expect(store.accepts(a, 1000, 1)).toBe(true);
    store.observe(JSON.stringify(['b']), { labels: {}, value: 1, timestampSeconds: 1 });
    // Full: a new series is not kept, the known ones still are.
    expect(store.accepts(JSON.stringify(['c']), 1, 1)).toBe(false);
    expect(store.accepts(a, 1, 200)).toBe(true);
  });

  it('a store never holds more series than its bound', () => {
    const store = new FirstConnectionExemplars(['template_name'], 2);
    for (const t of ['a', 'b', 'c']) store.observe(JSON.stringify([t]), { labels: {}, value: 1, timestampSeconds: 1 });
    expect(store.seriesCount).toBe(2);
    expect(store.histogramExemplars(FIRST_CONNECTION_METRIC_NAME, { template_name: 'c' })).toBeUndefined();
  });
});
