/**
 * The cumulative series of the streams the reader collects as deltas, kept here instead of in the SDK.
 *
 * A cumulative collection makes the SDK build a data point for every series it ever saw, on every scrape: for a
 * large fleet that is most of a scrape's time and several short-lived objects a series, although only a few
 * series change between scrapes. Collected as deltas, the SDK hands over only the series recorded since the last
 * collection; they are added here to the series kept from before, and every other series is the very same
 * data point object as at the previous scrape (which is also what the render cache and the exemplar lookup
 * key on).
 *
 * What comes out is what a cumulative collection would have returned: the same series in the same order
 * (first seen first, as the SDK's cumulative storage keeps them), the same counts and sums (added in the same
 * grouping, so even floating-point sums are equal), each series' first attributes object and start time, and
 * the streams and scopes in the SDK's order (see `mergeOrder`). A collection's points are never changed
 * afterwards: a series that changes gets a new point object, so a scrape still being written keeps what it
 * collected. An unchanged point keeps the `endTime` of the collection that last changed it, which the text
 * formats never print (with `appendTimestamp` the reader collects cumulatively, as upstream);
 * `withCollectionTime` gives a caller that reads it points of its own with this collection's time.
 *
 * Exponential histograms, which neither text format writes (as upstream), are not added up: such a stream is
 * passed on as the SDK reports it, and kept with no points while it reports nothing, so its metadata stays.
 */

import type { Attributes, HrTime } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InstrumentType,
  type DataPoint,
  type Histogram,
  type MetricData,
  type MetricDescriptor,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import { mergeOrder } from './merge-order.js';
import { attachHistogramRows, HistogramRowStore } from './histogram-rows.js';

type Scope = ScopeMetrics['scope'];

/** Where a scope's streams were in the last collection handed out. */
interface ScopeLayout {
  readonly scope: Scope;
  readonly metrics: readonly string[];
}

interface CurrentScope {
  readonly scope: Scope;
  readonly metrics: Map<string, MetricData>;
}

const KEY_SEPARATOR = '\u0000';

/** Told when a series' kept counts cannot be added to (its bucket boundaries changed) and start again. */
export type CumulativeWarning = (message: string, fields: Readonly<Record<string, unknown>>) => void;

export class CumulativeState {
  readonly #warn: CumulativeWarning;
  readonly #streams = new Map<string, KeptStream>();
  /** The collections' results that hold kept points (whose `endTime` may be older than the collection's). */
  readonly #kept = new WeakSet<MetricData>();
  #scopeOrder: readonly string[] = [];
  #layouts = new Map<string, ScopeLayout>();

  constructor(warn: CumulativeWarning = () => {}) {
    this.#warn = warn;
  }

  /** Streams kept (tests). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /**
   * Adds this collection's delta streams to the kept series and returns the collection as a cumulative one.
   * Streams that are not deltas, and observable gauges (collected as deltas only to leave out what was not
   * observed), pass through unchanged.
   */
  accumulate(resourceMetrics: ResourceMetrics): ResourceMetrics {
    const current = new Map<string, CurrentScope>();
    const scopeKeys = new UniqueKeys();
    for (const { scope, metrics } of resourceMetrics.scopeMetrics) {
      const scopeKey = scopeKeys.next(scopeKeyOf(scope));
      const metricKeys = new UniqueKeys();
      const byKey = new Map<string, MetricData>();
      for (const metric of metrics) {
        const metricKey = metricKeys.next(metricKeyOf(metric));
        byKey.set(metricKey, addsUp(metric) ? this.#add(scopeKey, metricKey, metric) : metric);
      }
      current.set(scopeKey, { scope, metrics: byKey });
    }

    const scopeOrder = mergeOrder(this.#scopeOrder, [...current.keys()], (scopeKey) =>
      (this.#layouts.get(scopeKey)?.metrics ?? []).some((metricKey) => this.#streams.has(streamKey(scopeKey, metricKey))),
    );
    const scopeMetrics: ScopeMetrics[] = [];
    const layouts = new Map<string, ScopeLayout>();
    for (const scopeKey of scopeOrder) {
      const now = current.get(scopeKey);
      const known = this.#layouts.get(scopeKey);
      const scope = now?.scope ?? known?.scope;
      if (scope === undefined) continue;
      const order = mergeOrder(known?.metrics ?? [], now === undefined ? [] : [...now.metrics.keys()], (metricKey) =>
        this.#streams.has(streamKey(scopeKey, metricKey)),
      );
      const metrics: MetricData[] = [];
      for (const metricKey of order) {
        const stream = this.#streams.get(streamKey(scopeKey, metricKey));
        const metric = stream === undefined ? now?.metrics.get(metricKey) : (now?.metrics.get(metricKey) ?? stream.quiet());
        if (metric === undefined) continue;
        if (stream !== undefined) this.#kept.add(metric);
        metrics.push(metric);
      }
      if (metrics.length === 0) continue;
      scopeMetrics.push({ scope, metrics });
      layouts.set(scopeKey, { scope, metrics: order });
    }
    this.#scopeOrder = [...layouts.keys()];
    this.#layouts = layouts;
    return { resource: resourceMetrics.resource, scopeMetrics };
  }

  /**
   * A collection with every point of the kept streams stamped with `endTime`, as a cumulative collection
   * stamps them: new point objects (one per series), so for callers that read `endTime`, not for scrapes.
   */
  withCollectionTime(resourceMetrics: ResourceMetrics, endTime: HrTime): ResourceMetrics {
    const scopeMetrics = resourceMetrics.scopeMetrics.map(({ scope, metrics }) => ({
      scope,
      metrics: metrics.map((metric) => (this.#kept.has(metric) ? stamped(metric, endTime) : metric)),
    }));
    return { resource: resourceMetrics.resource, scopeMetrics };
  }

  #add(scopeKey: string, metricKey: string, metric: MetricData): MetricData {
    const key = streamKey(scopeKey, metricKey);
    let stream = this.#streams.get(key);
    if (stream === undefined) {
      stream = new KeptStream(this.#warn);
      this.#streams.set(key, stream);
    }
    return stream.add(metric);
  }
}

/**
 * Whether a stream's points are deltas to add up. An observable gauge's are not: it is collected as a delta only
 * so that the SDK reports just the label sets its callbacks observed this time, and it is passed on as it is. (A
 * histogram instrument whose View aggregates it to its last value also has delta gauge points: those are kept.)
 * The SDK's descriptor is its instrument descriptor, whose `type` the `MetricDescriptor` type does not declare.
 */
function addsUp(metric: MetricData): boolean {
  if (metric.aggregationTemporality !== AggregationTemporality.DELTA) return false;
  return (metric.descriptor as { readonly type?: unknown }).type !== InstrumentType.OBSERVABLE_GAUGE;
}

/** One delta stream's cumulative series, in the order they were first seen. */
class KeptStream {
  readonly #warn: CumulativeWarning;
  #warnedBoundaries = false;
  #metric: MetricData | undefined;
  #points: Array<DataPoint<unknown>> = [];
  /** Series by `attributesKey` (not by attributes object: a WeakMap entry per series costs more in GC than the key). */
  readonly #index = new Map<string, number>();
  /** The last collection's result while nothing changed: a quiet stream costs no allocation. */
  #snapshot: MetricData | undefined;
  /**
   * A histogram stream's series as rows (`histogramRowsOf`), while every series fits them: from the first
   * series on, with one set of boundaries. Given up for good otherwise (the points still render the same).
   */
  #rows: HistogramRowStore | undefined;
  #rowsGivenUp = false;

  constructor(warn: CumulativeWarning) {
    this.#warn = warn;
  }

  /** Adds a collection's delta data points; returns the stream as a cumulative collection would. */
  add(delta: MetricData): MetricData {
    if (delta.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
      this.#metric = delta;
      this.#snapshot = undefined;
      return delta;
    }
    this.#metric = delta;
    const points = this.#points;
    for (const point of delta.dataPoints as ReadonlyArray<DataPoint<unknown>>) {
      const key = attributesKey(point.attributes);
      const index = this.#index.get(key);
      let at: number;
      if (index === undefined) {
        at = points.length;
        this.#index.set(key, at);
        points.push(firstPoint(delta.dataPointType, point));
      } else {
        at = index;
        const kept = points[index] as DataPoint<unknown>;
        if (delta.dataPointType === DataPointType.HISTOGRAM && !sameBuckets(kept, point)) this.#boundariesChanged(delta, kept, point);
        points[index] = addPoint(delta.dataPointType, kept, point);
      }
      if (delta.dataPointType === DataPointType.HISTOGRAM) this.#setRow(at, points[at] as DataPoint<Histogram>);
    }
    this.#snapshot = undefined;
    return this.#cumulative();
  }

  #setRow(index: number, point: DataPoint<Histogram>): void {
    if (this.#rowsGivenUp) return;
    const { count, sum, buckets } = point.value;
    if (this.#rows === undefined && index === 0) this.#rows = new HistogramRowStore(buckets.boundaries, buckets.counts.length);
    const rows = this.#rows;
    if (rows === undefined || index > rows.length || !rows.fits(buckets.boundaries, buckets.counts.length)) {
      this.#rows = undefined;
      this.#rowsGivenUp = true;
      return;
    }
    rows.set(index, point.attributes, count, sum ?? undefined, buckets.counts);
  }

  #boundariesChanged(delta: MetricData, kept: DataPoint<unknown>, point: DataPoint<unknown>): void {
    if (this.#warnedBoundaries) return;
    this.#warnedBoundaries = true;
    this.#warn('histogram bucket boundaries changed between collections; its series start again from the new counts', {
      metric_name: delta.descriptor.name,
      kept_boundaries: (kept.value as Histogram).buckets.boundaries.length,
      new_boundaries: (point.value as Histogram).buckets.boundaries.length,
    });
  }

  /** The stream in a collection where the SDK reported nothing for it. */
  quiet(): MetricData | undefined {
    const metric = this.#metric;
    if (metric === undefined) return undefined;
    if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
      if (metric.dataPoints.length > 0) this.#metric = { ...metric, dataPoints: [] };
      return this.#metric;
    }
    return this.#cumulative();
  }

  #cumulative(): MetricData {
    if (this.#snapshot !== undefined) return this.#snapshot;
    const metric = this.#metric as Exclude<MetricData, { dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM }>;
    const snapshot = {
      ...metric,
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPoints: this.#points.slice(),
    } as MetricData;
    if (this.#rows !== undefined) attachHistogramRows(snapshot, this.#rows.snapshot());
    this.#snapshot = snapshot;
    return snapshot;
  }
}

function stamped(metric: MetricData, endTime: HrTime): MetricData {
  const points = metric.dataPoints as ReadonlyArray<DataPoint<unknown>>;
  return { ...metric, dataPoints: points.map((point) => ({ ...point, endTime })) } as MetricData;
}

/**
 * The SDK's identity of a series: its attributes whatever their key order, `undefined` and `null` alike, a
 * string never equal to a number or an array (the SDK compares `JSON.stringify` of the sorted pairs). Strings,
 * nearly every value, are length-prefixed instead of JSON-escaped, which is the cheaper of the two.
 */
function attributesKey(attributes: Attributes): string {
  const keys = Object.keys(attributes);
  if (keys.length > 1) keys.sort();
  const parts: string[] = [];
  for (const name of keys) {
    const value = attributes[name];
    parts.push(typeof value === 'string' ? `${name.length}:${name}s${value.length}:${value}` : `${name.length}:${name}j${JSON.stringify(value ?? null)};`);
  }
  // One flat string: a key built with `+=` stays a rope of its pieces in the map (~670 bytes a series at 100k).
  return parts.join('');
}

function firstPoint(type: DataPointType, point: DataPoint<unknown>): DataPoint<unknown> {
  if (type !== DataPointType.HISTOGRAM) return { ...point };
  const value = point.value as Histogram;
  return { ...point, value: { ...value, buckets: { boundaries: value.buckets.boundaries, counts: value.buckets.counts.slice() } } };
}

function addPoint(type: DataPointType, kept: DataPoint<unknown>, delta: DataPoint<unknown>): DataPoint<unknown> {
  switch (type) {
    case DataPointType.HISTOGRAM:
      return { attributes: kept.attributes, startTime: kept.startTime, endTime: delta.endTime, value: addHistograms(kept.value as Histogram, delta.value as Histogram) };
    case DataPointType.SUM:
      return { attributes: kept.attributes, startTime: kept.startTime, endTime: delta.endTime, value: (kept.value as number) + (delta.value as number) };
    default:
      // A gauge (a View's last-value aggregation of a histogram instrument): the latest value wins.
      return { attributes: kept.attributes, startTime: kept.startTime, endTime: delta.endTime, value: delta.value };
  }
}

function addHistograms(kept: Histogram, delta: Histogram): Histogram {
  const keptCounts = kept.buckets.counts;
  const deltaCounts = delta.buckets.counts;
  // One stream has one set of boundaries; anything else is not ours to add up, so the newer one stands (the
  // stream warns once).
  if (keptCounts.length !== deltaCounts.length) return { ...delta, buckets: { boundaries: delta.buckets.boundaries, counts: deltaCounts.slice() } };
  const counts = new Array<number>(keptCounts.length);
  for (let i = 0; i < counts.length; i++) counts[i] = (keptCounts[i] as number) + (deltaCounts[i] as number);
  const histogram: { -readonly [K in keyof Histogram]: Histogram[K] } = {
    buckets: { boundaries: kept.buckets.boundaries, counts },
    count: kept.count + delta.count,
  };
  // Absent, not undefined, when unknown (exactOptionalPropertyTypes); the SDK's own objects say `undefined`.
  if (kept.sum !== undefined || delta.sum !== undefined) histogram.sum = (kept.sum ?? 0) + (delta.sum ?? 0);
  const min = lesser(kept.min, delta.min);
  if (min !== undefined) histogram.min = min;
  const max = greater(kept.max, delta.max);
  if (max !== undefined) histogram.max = max;
  return histogram;
}

function sameBuckets(kept: DataPoint<unknown>, delta: DataPoint<unknown>): boolean {
  return (kept.value as Histogram).buckets.counts.length === (delta.value as Histogram).buckets.counts.length;
}

function lesser(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  return b === undefined ? a : Math.min(a, b);
}

function greater(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  return b === undefined ? a : Math.max(a, b);
}

function scopeKeyOf(scope: Scope): string {
  return [scope.name, scope.version ?? '', scope.schemaUrl ?? ''].join(KEY_SEPARATOR);
}

function metricKeyOf(metric: MetricData): string {
  const descriptor: MetricDescriptor = metric.descriptor;
  return [descriptor.name, descriptor.unit, descriptor.valueType, metric.dataPointType].join(KEY_SEPARATOR);
}

function streamKey(scopeKey: string, metricKey: string): string {
  return scopeKey + '\u0001' + metricKey;
}

/** Keys unique within one list: a second entry with the same key gets `#2`, and so on. */
class UniqueKeys {
  readonly #seen = new Map<string, number>();

  next(key: string): string {
    const count = (this.#seen.get(key) ?? 0) + 1;
    this.#seen.set(key, count);
    return count === 1 ? key : `${key}#${count}`;
  }
}
