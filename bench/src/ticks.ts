/**
 * One mode, one run: a fresh exporter-like setup (real MeterProvider with the View, recorder, poller,
 * a `pg` pool of one connection) driven tick after tick on a simulated clock, each tick measured.
 * Runs in its own process (see tick-process.ts) so heap figures and JIT state belong to this mode alone.
 */
import {
  FIRST_CONNECTION_METRIC_NAME,
  FirstConnectionPoller,
  AwaitingAgentsRecorder,
  FirstConnectionRecorder,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  createFirstConnectionHistogram,
  firstConnectionView,
  LABEL_KEYS,
  type FirstConnectionSource,
  type LogFields,
  type Logger,
} from '@agentconn/core';
import { createCoderAgentSource, type CoderDatabase } from '@agentconn/kysely';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Duplex } from 'node:stream';
import { connectTrickle } from './database.js';
import type { BenchMode } from './options.js';
import { progress } from './progress.js';
import { SeedEquivalentLoop } from './seed-loop.js';

export interface TickRunConfig {
  readonly label: string;
  readonly url: string;
  readonly mode: BenchMode;
  /** Simulated time of tick 0 (RFC 3339). */
  readonly t0: string;
  readonly intervalMs: number;
  readonly overlapMs: number;
  /** New first connections before each tick after the first. */
  readonly tricklePerTick: number;
  readonly warmup: number;
  /** Measured ticks. */
  readonly ticks: number;
}

export type TickPhase = 'start' | 'warmup' | 'measured';

/** One tick, as measured. Times in ms; heap in bytes. */
export interface TickSample {
  readonly tick: number;
  readonly phase: TickPhase;
  /** First connections set just before this tick. */
  readonly trickled: number;
  /** Wall time of `poller.tick()` (or the Coder-equivalent loop's tick). */
  readonly wallMs: number;
  /** `process.cpuUsage()` delta over the tick: user + system, all threads of this process. */
  readonly cpuMs: number;
  readonly cpuUserMs: number;
  readonly cpuSystemMs: number;
  /** Time inside `source.listAgents` (the loop equivalent to Coder PR #24179: inside its query), including row parsing. */
  readonly queryMs: number;
  readonly rows: number;
  /** Bytes the one database connection received during the tick. */
  readonly bytesReceived: number;
  readonly observed: number;
  readonly dropped: number;
  /**
   * Heap used after a forced full GC after this tick (and its metrics collection), minus the same
   * before the first tick; measured only after the second-to-last warm-up tick and the last tick
   * (null elsewhere): a forced GC costs the next tick about 2 ms of CPU (V8 worker threads, flushed
   * code), so no measured tick follows one.
   */
  readonly retainedBytes: number | null;
  /** Agent ids in the observe-once state. */
  readonly trackedAgents: number;
  /** `process.memoryUsage.rss()` after the tick (no forced GC). */
  readonly rssBytes: number;
  /** Series of `coderd_agents_first_connection_seconds` in the collection after this tick. */
  readonly series: number;
  /** The incremental query's lower bound (simulated time), if any. */
  readonly since: string | null;
  /** The tick's start and end on the monotonic clock in µs (the clock of `--cpu-prof` profiles). */
  readonly windowUs: readonly [number, number];
}

export interface TickRunResult {
  readonly label: string;
  readonly mode: BenchMode;
  readonly samples: readonly TickSample[];
  /** Heap after GC before the first tick (the setup: pool, provider, poller). */
  readonly heapBaselineBytes: number;
  /** Retained heap (after GC, minus the baseline) at the end of the warm-up and after the last tick. */
  readonly retainedAtWarmupBytes: number;
  readonly retainedAtEndBytes: number;
  /** What the observe-once state retains at the end: heap freed by emptying it. */
  readonly observeOnceBytes: number;
  /** What the metrics SDK (series, instruments) and the poller retain at the end: heap freed by dropping them. */
  readonly metricsBytes: number;
  /** Last query's `connectedSince` (for EXPLAIN of the steady-state query). */
  readonly lastSince: string | null;
  /** Last query's `excludeAgentIds` as sent to the database (for EXPLAIN). */
  readonly lastExcludedAgentIds: readonly string[];
  readonly warnings: number;
  readonly errors: number;
  /** What the histogram gained after the start tick: every mode must gain the same (the trickle). */
  readonly observedAfterStart: HistogramTotals;
}

/** Drives one mode on a simulated clock; see the module comment. */
export async function runTicks(config: TickRunConfig): Promise<TickRunResult> {
  const gc = requireGc();
  const clock = { nowMs: Date.parse(config.t0) };
  if (!Number.isFinite(clock.nowMs)) throw new RangeError(`t0 is not a valid time: ${config.t0}`);

  // One connection, never closed while idle: its socket's byte counter is the tick's traffic.
  const pool = new pg.Pool({ connectionString: config.url, max: 1, idleTimeoutMillis: 0, application_name: 'agentconn-bench-ticks' });
  let socket: Duplex | undefined;
  pool.on('connect', (client) => {
    socket = client.connection.stream;
  });
  const db = new Kysely<CoderDatabase>({ dialect: new PostgresDialect({ pool }) });
  const trickleDb = new Kysely<any>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: config.url, max: 1, application_name: 'agentconn-bench-trickle' }) }),
  });
  const bytesRead = (): number => (socket as { bytesRead?: number } | undefined)?.bytesRead ?? 0;
  try {
    await db.selectNoFrom((eb) => eb.lit(1).as('one')).execute();
    const logger = new CountingLogger();
    let heapBaselineBytes = 0;
    let retainedAtWarmupBytes = 0;
    let retainedAtEndBytes = 0;
    let observeOnceBytes = 0;
    let lastSince: string | null = null;
    let lastExcludedAgentIds: readonly string[] = [];
    let afterStart: HistogramTotals | undefined;
    let atEnd: HistogramTotals | undefined;

    // Everything the metrics SDK and the poller hold lives in this scope, so dropping it frees it.
    const measure = async (): Promise<{ samples: TickSample[]; heapBeforeDrop: number }> => {
      const reader = new CollectingReader();
      // Coder PR #24179's four labels, as the published figures were measured (the default is Coder #24355's two).
      const labels = [...LABEL_KEYS];
      const meterProvider = new MeterProvider({ readers: [reader], views: [firstConnectionView({ labels })] });
      const recorder = new FirstConnectionRecorder({ meterProvider, logger, labels });
      const awaiting = config.mode.endsWith('-awaiting')
        ? new AwaitingAgentsRecorder({ meterProvider, logger, labels: ['template_name', 'agent_name'] })
        : undefined;
      const timed = timedSource(createCoderAgentSource(db, { statementTimeoutMs: 600_000, cancelOnAbort: false }), clock, config.mode === 'incremental-reread');
      const poller =
        config.mode === 'seed'
          ? undefined
          : new FirstConnectionPoller({
              source: timed.source,
              recorder,
              ...(awaiting !== undefined && { awaiting }),
              meterProvider,
              logger,
              intervalMs: config.intervalMs,
              timeoutMs: 600_000,
              mode: config.mode === 'full-scan' ? 'full-scan' : 'incremental',
              overlapMs: config.overlapMs,
              backfill: config.mode === 'full-scan' ? 'all' : { sinceMs: 0 },
              now: () => clock.nowMs,
            });
      const seedLoop =
        config.mode === 'seed'
          ? new SeedEquivalentLoop(
              db,
              createFirstConnectionHistogram(meterProvider.getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION)),
              logger,
            )
          : undefined;
      const tracked = (): number => seedLoop?.trackedAgents ?? recorder.trackedAgents;

      await reader.collect();
      gc();
      heapBaselineBytes = heapUsed();
      const samples: TickSample[] = [];
      const total = 1 + config.warmup + config.ticks;
      // The unmeasured tick after the warm-up's GC absorbs its cost (see TickSample.retainedBytes).
      const heapTicks = { warmup: Math.max(0, config.warmup - 1), end: total - 1 };
      for (let tick = 0; tick < total; tick++) {
        const phase: TickPhase = tick === 0 ? 'start' : tick <= config.warmup ? 'warmup' : 'measured';
        let trickled = 0;
        if (tick > 0) {
          trickled = await connectTrickle(trickleDb, { t0: config.t0, tick, count: config.tricklePerTick, intervalMs: config.intervalMs });
        }
        clock.nowMs = Date.parse(config.t0) + tick * config.intervalMs;

        const bytesBefore = bytesRead();
        const cpuBefore = process.cpuUsage();
        const startedUs = Number(process.hrtime.bigint() / 1000n);
        const started = performance.now();
        let rows: number;
        let observed: number;
        let dropped: number;
        let queryMs: number;
        if (seedLoop !== undefined) {
          const result = await seedLoop.tick();
          ({ rowsRead: rows, observed, dropped, queryMs } = result);
        } else {
          const result = await poller!.tick();
          if (result.outcome !== 'success') throw result.error ?? new Error(`tick ${tick} ended with ${result.outcome}`);
          ({ rowsRead: rows, observed, dropped } = result);
          queryMs = timed.lastQueryMs;
        }
        const wallMs = performance.now() - started;
        const endedUs = Number(process.hrtime.bigint() / 1000n);
        const cpu = process.cpuUsage(cpuBefore);
        const bytesReceived = bytesRead() - bytesBefore;

        const collection = await reader.collect();
        const totals = histogramTotals(collection.resourceMetrics);
        const series = totals.series;
        if (tick === 0) afterStart = totals;
        atEnd = totals;
        let retainedBytes: number | null = null;
        if (tick === heapTicks.warmup || tick === heapTicks.end) {
          gc();
          retainedBytes = heapUsed() - heapBaselineBytes;
          if (tick === heapTicks.warmup) retainedAtWarmupBytes = retainedBytes;
          if (tick === heapTicks.end) retainedAtEndBytes = retainedBytes;
        }
        const since = timed.lastSince === undefined ? null : timed.lastSince.toISOString();
        if (since !== null) lastSince = since;
        lastExcludedAgentIds = timed.lastExcludedAgentIds;
        const sample: TickSample = {
          tick,
          phase,
          trickled,
          wallMs,
          cpuMs: (cpu.user + cpu.system) / 1000,
          cpuUserMs: cpu.user / 1000,
          cpuSystemMs: cpu.system / 1000,
          queryMs,
          rows,
          bytesReceived,
          observed,
          dropped,
          retainedBytes,
          trackedAgents: tracked(),
          rssBytes: process.memoryUsage.rss(),
          series,
          since,
          windowUs: [startedUs, endedUs],
        };
        samples.push(sample);
        if (tick === 0 || tick === total - 1 || wallMs > 1000 || tick % 10 === 0) {
          progress(
            `${config.label} tick ${tick}/${total - 1} (${phase}): wall ${wallMs.toFixed(1)} ms, cpu ${sample.cpuMs.toFixed(1)} ms, ` +
              `query ${queryMs.toFixed(1)} ms, rows ${rows}, observed ${observed}, tracked ${sample.trackedAgents}` +
              (retainedBytes === null ? '' : `, retained ${(retainedBytes / 1e6).toFixed(2)} MB`),
          );
        }
      }

      // What the observe-once state retains: the heap it frees when emptied.
      gc();
      const before = heapUsed();
      if (seedLoop !== undefined) seedLoop.clear();
      else recorder.retainOnly(new Set());
      gc();
      const heapBeforeDrop = heapUsed();
      observeOnceBytes = before - heapBeforeDrop;
      await meterProvider.shutdown();
      return { samples, heapBeforeDrop };
    };

    const { samples, heapBeforeDrop } = await measure();
    gc();
    const metricsBytes = heapBeforeDrop - heapUsed();
    return {
      label: config.label,
      mode: config.mode,
      samples,
      heapBaselineBytes,
      retainedAtWarmupBytes,
      retainedAtEndBytes,
      observeOnceBytes,
      metricsBytes,
      lastSince,
      lastExcludedAgentIds,
      warnings: logger.warnings,
      errors: logger.errors,
      observedAfterStart: subtractTotals(atEnd!, afterStart!),
    };
  } finally {
    await db.destroy();
    await trickleDb.destroy();
  }
}

/**
 * Wraps the source: times `listAgents`, and reports the simulated clock as the database's time. With
 * `reread` it drops `excludeAgentIds`, so the query returns the whole overlap as before that existed.
 */
function timedSource(
  inner: FirstConnectionSource,
  clock: { nowMs: number },
  reread: boolean,
): { source: FirstConnectionSource; readonly lastQueryMs: number; readonly lastSince: Date | undefined; readonly lastExcludedAgentIds: readonly string[] } {
  const state = { lastQueryMs: 0, lastSince: undefined as Date | undefined, lastExcludedAgentIds: [] as readonly string[] };
  const source: FirstConnectionSource = {
    async listAgents(query) {
      const started = performance.now();
      const sent = reread ? { ...query, excludeAgentIds: [] } : query;
      try {
        const batch = await inner.listAgents(sent);
        // The poller's watermark comes from the source's clock; on the simulated clock a minute passes
        // between back-to-back ticks, and that is the only thing this wrapper changes.
        return { ...batch, sourceTime: new Date(clock.nowMs) };
      } finally {
        state.lastQueryMs = performance.now() - started;
        state.lastSince = query.connectedSince;
        state.lastExcludedAgentIds = sent.excludeAgentIds ?? [];
      }
    },
  };
  return {
    source,
    get lastQueryMs() {
      return state.lastQueryMs;
    },
    get lastSince() {
      return state.lastSince;
    },
    get lastExcludedAgentIds() {
      return state.lastExcludedAgentIds;
    },
  };
}

/** The first-connection histogram summed over all its series (overflow included). */
export interface HistogramTotals {
  readonly count: number;
  readonly sum: number;
  /** Per bucket, Coder PR #24179's bounds then +Inf. */
  readonly buckets: readonly number[];
}

function histogramTotals(resourceMetrics: Awaited<ReturnType<MetricReader['collect']>>['resourceMetrics']): HistogramTotals & { series: number } {
  let series = 0;
  let count = 0;
  let sum = 0;
  let buckets: number[] = [];
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== FIRST_CONNECTION_METRIC_NAME) continue;
      for (const point of metric.dataPoints) {
        series++;
        const value = point.value as { count: number; sum?: number; buckets: { counts: number[] } };
        count += value.count;
        sum += value.sum ?? 0;
        if (buckets.length === 0) buckets = value.buckets.counts.map(() => 0);
        value.buckets.counts.forEach((n, i) => {
          buckets[i] = (buckets[i] ?? 0) + n;
        });
      }
    }
  }
  return { series, count, sum, buckets };
}

function subtractTotals(end: HistogramTotals, start: HistogramTotals): HistogramTotals {
  return {
    count: end.count - start.count,
    sum: end.sum - start.sum,
    buckets: end.buckets.map((n, i) => n - (start.buckets[i] ?? 0)),
  };
}

/** A reader the bench collects from after each tick, as Prometheus scrapes the exporter once per interval. */
class CollectingReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

/** Counts warnings (negative durations of the history at the start tick) instead of printing them. */
class CountingLogger implements Logger {
  warnings = 0;
  errors = 0;
  debug(_message: string, _fields?: LogFields): void {}
  info(_message: string, _fields?: LogFields): void {}
  warn(_message: string, _fields?: LogFields): void {
    this.warnings++;
  }
  error(message: string, fields?: LogFields): void {
    this.errors++;
    progress(`poller error: ${message} ${JSON.stringify(fields ?? {})}`);
  }
}

function heapUsed(): number {
  return process.memoryUsage().heapUsed;
}

function requireGc(): () => void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc: the bench measures retained heap after a forced GC');
  return () => {
    gc();
    gc();
  };
}
