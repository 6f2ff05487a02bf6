import { metrics, type Attributes, type Counter, type Histogram, type Meter, type MeterProvider, type ObservableGauge } from '@opentelemetry/api';
import { LabelSetLimit, OVERFLOW_ATTRIBUTES } from '../label-set-limit.js';
import { diagLogger, type Logger } from '../logger.js';
import {
  DEFAULT_CARDINALITY_LIMIT,
  DEFAULT_START_LABEL_KEYS,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  SELF_METRICS,
  START_BUCKET_BOUNDARIES,
  START_EXEMPLAR_LABEL_KEYS,
  START_LABEL_KEYS,
  START_METRICS,
  START_PHASE_VALUES,
  instrumentOptions,
  type DropReason,
  type MetricDefinition,
  type StartLabelKey,
} from '../metric.js';
import { formatEpochMicros, toEpochMicros, type Instant } from '../timestamp.js';
import { latestStartInstantMicros, workspaceStart, type StartPhase, type WorkspaceStartInstants } from './phase-model.js';
import { StartExemplars, startExemplarLabels } from './start-exemplars.js';
import type { StartExclusions } from './start-source.js';

/** The values a build's series may be labelled with. */
export interface StartBuildLabels {
  readonly template_name: string;
  readonly username: string;
  readonly workspace_name: string;
  /** The workspace's owner is Coder's prebuilds system user. */
  readonly is_prebuild: boolean;
}

/** A start build with its instants, as a source or a service knows them. */
export interface WorkspaceStartBuild {
  readonly buildId: string;
  readonly labels: StartBuildLabels;
  readonly instants: Omit<WorkspaceStartInstants, 'now'>;
  /**
   * `created_at` of the workspace's next build, if any: what happens to this build from then on is not
   * observed (a superseded build leaves without an observation).
   */
  readonly supersededAt?: Instant | null;
}

/** The stage timings of one completed job (`provisioner_job_timings`), per stage. */
export interface ProvisionerJobStages {
  readonly jobId: string;
  readonly buildId: string;
  /** When the job completed: the stages are observed then. */
  readonly completedAt: Instant;
  readonly labels: StartBuildLabels;
  readonly stages: readonly {
    readonly stage: string;
    /** `MIN(started_at)` of the stage's rows. */
    readonly startedAt: Instant;
    /** `MAX(ended_at)` of the stage's rows. */
    readonly endedAt: Instant;
    /** Rows of the stage with `ended_at < started_at`: the stage is dropped. */
    readonly negativeRows: number;
  }[];
}

/** One run of an agent script at start (`workspace_agent_script_timings`, `stage = 'start'`). */
export interface StartupScriptRun {
  readonly scriptId: string;
  readonly buildId: string;
  /** The script's display name. */
  readonly script: string;
  readonly status: string;
  readonly startedAt: Instant;
  readonly endedAt: Instant;
  readonly labels: StartBuildLabels;
}

/** Start builds in one phase now, with the configured labels of the in-progress gauges. */
export interface StartsInProgressGroup {
  readonly labels: StartBuildLabels;
  readonly phase: StartPhase;
  readonly count: number;
  /** How long the one longest in this phase has been in it, in seconds. */
  readonly oldestSeconds: number;
}

export interface StartRecordCounts {
  readonly observed: number;
  readonly dropped: number;
}

/** Keeps only samples whose instant is at or after this (epoch µs, source clock); undefined: all. */
export type CountFrom = number | undefined;

/** Which of a build's samples a read may observe (epoch µs, source clock). */
export interface StartBounds {
  /** Before it: counted by an earlier run, remembered and not observed. */
  readonly countFrom?: number | undefined;
  /** The read's lower bound: before it, offered to an earlier read and not observed again. */
  readonly since?: number | undefined;
  /** The phase the build was in at the last read: from it on (and the start) `since` does not apply. */
  readonly fromPhase?: StartPhase | undefined;
}

export interface WorkspaceStartRecorderOptions {
  readonly meter?: Meter;
  readonly meterProvider?: MeterProvider;
  readonly logger?: Logger;
  /** Any subset of `START_LABEL_KEYS`, kept in that order. Default `template_name`, `is_prebuild`. */
  readonly labels?: readonly StartLabelKey[];
  /** Most label sets per instrument, the overflow series included. Default 50 000. */
  readonly cardinalityLimit?: number;
}

/** A handled sample and the instant after which a source can no longer return it (epoch µs). */
export interface HandledStartSample {
  readonly key: string;
  readonly micros: number;
}

interface Instrument {
  readonly histogram: Histogram;
  readonly definition: MetricDefinition;
  readonly limit: LabelSetLimit;
}

/** Checks the start family's label options; throws a RangeError naming the bad one. */
export function validateStartLabels(labels: readonly string[] | undefined): StartLabelKey[] {
  const chosen = labels ?? DEFAULT_START_LABEL_KEYS;
  for (const label of chosen) {
    if (!(START_LABEL_KEYS as readonly string[]).includes(label)) {
      throw new RangeError(`unknown start label "${String(label)}": labels must be among ${START_LABEL_KEYS.join(', ')}`);
    }
  }
  return START_LABEL_KEYS.filter((key) => chosen.includes(key));
}

/**
 * Observes every start build once into the start family: the start when it reaches its outcome, each phase
 * when it ends, the provisioner stages when the job completes, each script run once. Observe-once is keyed by
 * build (and phase), job and script run; a sample before `countFrom` is remembered but not observed (an
 * earlier run counted it). Never throws into the caller: a build whose instants do not add up is dropped,
 * warned once and counted in `agentconn_samples_dropped_total`.
 */
export class WorkspaceStartRecorder {
  readonly #logger: Logger;
  readonly #labels: readonly StartLabelKey[];
  readonly #start: Instrument;
  readonly #phase: Instrument;
  readonly #stage: Instrument;
  readonly #script: Instrument;
  readonly #dropped: Counter;
  readonly #gaugeLimit: LabelSetLimit;
  readonly #exemplars: StartExemplars;
  /** Sample key → epoch µs of its instant; pruned by the poller to what a source can return again. */
  readonly #handled = new Map<string, number>();
  #inProgress: readonly StartsInProgressGroup[] = [];

  constructor(options: WorkspaceStartRecorderOptions = {}) {
    this.#labels = validateStartLabels(options.labels);
    const cardinalityLimit = options.cardinalityLimit ?? DEFAULT_CARDINALITY_LIMIT;
    if (!Number.isSafeInteger(cardinalityLimit) || cardinalityLimit < 2) {
      throw new RangeError(`cardinalityLimit must be an integer of at least 2, got ${String(options.cardinalityLimit)}`);
    }
    this.#logger = options.logger ?? diagLogger;
    const meter =
      options.meter ??
      (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION);
    const instrument = (definition: MetricDefinition): Instrument => ({
      definition,
      histogram: meter.createHistogram(definition.name, {
        ...instrumentOptions(definition),
        advice: { explicitBucketBoundaries: [...START_BUCKET_BOUNDARIES] },
      }),
      limit: new LabelSetLimit({ instrument: definition.name, cardinalityLimit, meter, logger: this.#logger }),
    });
    this.#start = instrument(START_METRICS.start);
    this.#phase = instrument(START_METRICS.phase);
    this.#stage = instrument(START_METRICS.stage);
    this.#script = instrument(START_METRICS.script);
    this.#exemplars = new StartExemplars(
      [START_METRICS.start.name, START_METRICS.phase.name, START_METRICS.stage.name, START_METRICS.script.name],
      cardinalityLimit,
    );
    this.#dropped = meter.createCounter(SELF_METRICS.samplesDropped.name, instrumentOptions(SELF_METRICS.samplesDropped));
    const inProgress: ObservableGauge = meter.createObservableGauge(START_METRICS.inProgress.name, instrumentOptions(START_METRICS.inProgress));
    const oldest: ObservableGauge = meter.createObservableGauge(
      START_METRICS.inProgressOldest.name,
      instrumentOptions(START_METRICS.inProgressOldest),
    );
    this.#gaugeLimit = new LabelSetLimit({
      instrument: [START_METRICS.inProgress.name, START_METRICS.inProgressOldest.name],
      cardinalityLimit,
      meter,
      logger: this.#logger,
    });
    meter.addBatchObservableCallback((result) => {
      for (const group of this.#foldInProgress()) {
        result.observe(inProgress, group.count, group.attributes);
        result.observe(oldest, group.oldestSeconds, group.attributes);
      }
    }, [inProgress, oldest]);
  }

  /** The configured labels, in `START_LABEL_KEYS` order. */
  get labels(): readonly StartLabelKey[] {
    return this.#labels;
  }

  /** Exemplars of the four histograms, for an OpenMetrics exposition. */
  get exemplars(): StartExemplars {
    return this.#exemplars;
  }

  /** How many samples the observe-once state holds. */
  get tracked(): number {
    return this.#handled.size;
  }

  /**
   * Observes what of `build` ended and was not observed yet, judging timeouts at `now`. A sample before
   * `bounds.countFrom` is remembered without being observed; one before `bounds.since` (the read's lower
   * bound) is not observed either: every instant a sample ends at is one the source reads by, so it was
   * offered to an earlier read. `bounds.fromPhase` lifts the `since` rule from that phase on, for a build that
   * left the builds in progress with instants written late. A negative phase (clock skew) is dropped and
   * counted alone; a negative start drops the start.
   */
  recordBuild(build: WorkspaceStartBuild, now: Instant, bounds: StartBounds = {}): StartRecordCounts {
    const result = workspaceStart({ ...build.instants, now });
    const superseded = build.supersededAt == null ? undefined : toEpochMicros(build.supersededAt);
    const { countFrom, since, fromPhase } = bounds;
    const current = (micros: number): boolean => superseded === undefined || micros < superseded;
    const fromIndex = fromPhase === undefined ? undefined : START_PHASE_VALUES.indexOf(fromPhase);
    /** 'observe', 'skip' (not now, not remembered), or 'before' (remembered, not observed). */
    const verdict = (key: string, micros: number, phaseIndex: number): 'observe' | 'skip' | 'before' => {
      if (this.#handled.has(key) || !current(micros)) return 'skip';
      if (countFrom !== undefined && micros < countFrom) return 'before';
      const lifted = fromIndex !== undefined && phaseIndex >= fromIndex;
      if (since !== undefined && micros < since && !lifted) return 'skip';
      return 'observe';
    };
    if (result.state === 'invalid') {
      const key = `${build.buildId}/invalid`;
      const latest = latestStartInstantMicros(build.instants) ?? toEpochMicros(now) ?? 0;
      const decision = verdict(key, latest, START_PHASE_VALUES.length);
      if (decision === 'skip') return { observed: 0, dropped: 0 };
      this.#handled.set(key, latest);
      if (decision === 'before') return { observed: 0, dropped: 0 };
      this.#drop(result.problem.reason, `${result.problem.message}; dropping workspace start`, { build_id: build.buildId, ...result.problem.fields });
      return { observed: 0, dropped: 1 };
    }
    let observed = 0;
    let dropped = 0;
    const exemplar = this.#exemplarLabels(build.buildId, build.labels);
    for (const phase of result.phases) {
      const key = `${build.buildId}/${phase.phase}`;
      const decision = verdict(key, phase.endMicros, START_PHASE_VALUES.indexOf(phase.phase));
      if (decision === 'skip') continue;
      this.#handled.set(key, phase.endMicros);
      if (decision === 'before') continue;
      if (phase.seconds < 0) {
        this.#drop('negative_duration', `negative ${phase.phase} phase of a workspace start (possible clock skew); dropping phase`, {
          build_id: build.buildId,
          phase: phase.phase,
          from: formatEpochMicros(phase.startMicros),
          to: formatEpochMicros(phase.endMicros),
          duration_s: phase.seconds,
        });
        dropped++;
        continue;
      }
      this.#observe(this.#phase, { ...this.#seriesLabels(build.labels, true), phase: phase.phase }, phase.seconds, phase.endMicros, exemplar);
      observed++;
    }
    if (result.state === 'ended') {
      const key = `${build.buildId}/start`;
      const decision = verdict(key, result.atMicros, START_PHASE_VALUES.length);
      if (decision !== 'skip') {
        this.#handled.set(key, result.atMicros);
        if (decision === 'observe' && result.seconds < 0) {
          this.#drop('negative_duration', 'negative workspace start duration (possible clock skew); dropping start', {
            build_id: build.buildId,
            outcome: result.outcome,
            duration_s: result.seconds,
          });
          dropped++;
        } else if (decision === 'observe') {
          this.#observe(this.#start, { ...this.#seriesLabels(build.labels, true), outcome: result.outcome }, result.seconds, result.atMicros, exemplar);
          observed++;
        }
      }
    }
    return { observed, dropped };
  }

  /** Observes each stage of a completed job once, as `MAX(ended_at) - MIN(started_at)`. */
  recordStages(job: ProvisionerJobStages, countFrom?: CountFrom): StartRecordCounts {
    const completed = toEpochMicros(job.completedAt);
    const key = `${job.jobId}/stages`;
    if (completed === undefined || this.#handled.has(key)) return { observed: 0, dropped: 0 };
    this.#handled.set(key, completed);
    if (countFrom !== undefined && completed < countFrom) return { observed: 0, dropped: 0 };
    let observed = 0;
    let dropped = 0;
    const exemplar = this.#exemplarLabels(job.buildId, job.labels);
    for (const stage of job.stages) {
      const started = toEpochMicros(stage.startedAt);
      const ended = toEpochMicros(stage.endedAt);
      if (stage.negativeRows > 0 || started === undefined || ended === undefined || ended < started) {
        this.#drop('negative_duration', 'provisioner job timing ends before it starts (possible clock skew); dropping stage', {
          job_id: job.jobId,
          stage: stage.stage,
          rows: stage.negativeRows,
        });
        dropped++;
        continue;
      }
      this.#observe(this.#stage, { ...this.#seriesLabels(job.labels, false), stage: stage.stage }, (ended - started) / 1e6, completed, exemplar);
      observed++;
    }
    return { observed, dropped };
  }

  /** Observes one script run once, `ended_at - started_at`. */
  recordScriptRun(run: StartupScriptRun, countFrom?: CountFrom): StartRecordCounts {
    const started = toEpochMicros(run.startedAt);
    const ended = toEpochMicros(run.endedAt);
    if (started === undefined || ended === undefined) return { observed: 0, dropped: 0 };
    const key = `${run.scriptId}/${started}`;
    if (this.#handled.has(key)) return { observed: 0, dropped: 0 };
    this.#handled.set(key, ended);
    if (countFrom !== undefined && ended < countFrom) return { observed: 0, dropped: 0 };
    if (ended < started) {
      this.#drop('negative_duration', 'agent script timing ends before it starts (possible clock skew); dropping sample', {
        script_id: run.scriptId,
        started_at: formatEpochMicros(started),
        ended_at: formatEpochMicros(ended),
      });
      return { observed: 0, dropped: 1 };
    }
    const exemplar = this.#exemplarLabels(run.buildId, run.labels);
    this.#observe(
      this.#script,
      { ...this.#seriesLabels(run.labels, false), script: run.script, status: run.status },
      (ended - started) / 1e6,
      ended,
      exemplar,
    );
    return { observed: 1, dropped: 0 };
  }

  /** Replaces what the in-progress gauges report (the latest snapshot of a source). */
  setInProgress(groups: readonly StartsInProgressGroup[]): void {
    this.#inProgress = groups;
  }

  /** The gauges report nothing (e.g. on a follower, whose data would be stale). */
  clearInProgress(): void {
    this.#inProgress = [];
  }

  /** Forgets the samples whose instant is before `micros`: a source queried from there never returns them. */
  forgetBefore(micros: number): void {
    for (const [key, at] of this.#handled) if (at < micros) this.#handled.delete(key);
  }

  /** The samples handled at or after `micros`: what a restart needs not to count them again. */
  handledSince(micros: number): HandledStartSample[] {
    const result: HandledStartSample[] = [];
    for (const [key, at] of this.#handled) if (at >= micros) result.push({ key, micros: at });
    return result;
  }

  /**
   * What a read from `micros` (epoch µs) on would return again although nothing of it is left to observe:
   * builds whose start ended or was dropped, jobs whose stages were observed, script runs; at most `limit`
   * of each, the most recently handled kept.
   */
  handledExclusions(micros: number, limit: number): StartExclusions {
    const buildIds: string[] = [];
    const jobIds: string[] = [];
    const scriptRuns: { scriptId: string; startedMicros: number }[] = [];
    for (const [key, at] of this.#handled) {
      if (at < micros) continue;
      const slash = key.lastIndexOf('/');
      const id = key.slice(0, slash);
      const kind = key.slice(slash + 1);
      if (kind === 'start' || kind === 'invalid') buildIds.push(id);
      else if (kind === 'stages') jobIds.push(id);
      else if (/^\d+$/.test(kind)) scriptRuns.push({ scriptId: id, startedMicros: Number(kind) });
    }
    const last = <T>(items: T[]): T[] => (items.length > limit ? items.slice(items.length - limit) : items);
    return { buildIds: last(buildIds), jobIds: last(jobIds), scriptRuns: last(scriptRuns) };
  }

  /** Remembers samples an earlier run handled. */
  restoreHandled(samples: Iterable<HandledStartSample>): void {
    for (const { key, micros } of samples) this.#handled.set(key, micros);
  }

  #observe(instrument: Instrument, attributes: Record<string, string>, seconds: number, atMicros: number, exemplar: Record<string, string>): void {
    const key = JSON.stringify(Object.values(attributes));
    const recorded = instrument.limit.attributes(key, attributes);
    instrument.histogram.record(seconds, recorded);
    if (recorded !== OVERFLOW_ATTRIBUTES) {
      this.#exemplars.observe(instrument.definition.name, recorded, { labels: exemplar, value: seconds, timestampSeconds: atMicros / 1e6 });
    }
  }

  /** The configured labels of a build; `is_prebuild` only on the start and phase histograms. */
  #seriesLabels(labels: StartBuildLabels, withPrebuild: boolean): Record<string, string> {
    const attributes: Record<string, string> = {};
    for (const key of this.#labels) {
      if (key === 'is_prebuild') {
        if (withPrebuild) attributes[key] = String(labels.is_prebuild === true);
      } else {
        const value: unknown = labels[key];
        attributes[key] = typeof value === 'string' ? value : '';
      }
    }
    return attributes;
  }

  #exemplarLabels(buildId: string, labels: StartBuildLabels): Record<string, string> {
    const extra: Record<string, string> = {};
    for (const key of START_EXEMPLAR_LABEL_KEYS) {
      if (key === 'build_id' || this.#labels.includes(key)) continue;
      const value: unknown = labels[key];
      extra[key] = typeof value === 'string' ? value : '';
    }
    return startExemplarLabels(buildId, extra);
  }

  #foldInProgress(): { attributes: Attributes; count: number; oldestSeconds: number }[] {
    const byKey = new Map<string, { attributes: Attributes; count: number; oldestSeconds: number }>();
    for (const group of this.#inProgress) {
      if (!(group.count > 0)) continue;
      const attributes = { ...this.#seriesLabels(group.labels, false), phase: group.phase };
      const key = JSON.stringify(Object.values(attributes));
      const oldest = Number.isFinite(group.oldestSeconds) ? Math.max(0, group.oldestSeconds) : 0;
      const entry = byKey.get(key);
      if (entry === undefined) byKey.set(key, { attributes, count: group.count, oldestSeconds: oldest });
      else {
        entry.count += group.count;
        entry.oldestSeconds = Math.max(entry.oldestSeconds, oldest);
      }
    }
    const values: { attributes: Attributes; count: number; oldestSeconds: number }[] = [];
    let overflow: { attributes: Attributes; count: number; oldestSeconds: number } | undefined;
    let folded = 0;
    for (const [key, entry] of byKey) {
      const own = this.#gaugeLimit.slot(key, entry.attributes);
      if (own !== undefined) {
        values.push({ ...entry, attributes: own });
        continue;
      }
      folded++;
      if (overflow === undefined) {
        overflow = { attributes: OVERFLOW_ATTRIBUTES, count: 0, oldestSeconds: 0 };
        values.push(overflow);
      }
      overflow.count += entry.count;
      overflow.oldestSeconds = Math.max(overflow.oldestSeconds, entry.oldestSeconds);
    }
    this.#gaugeLimit.overflowed(folded);
    return values;
  }

  #drop(reason: DropReason, message: string, fields: Readonly<Record<string, unknown>>): void {
    this.#dropped.add(1, { reason });
    this.#logger.warn(message, fields);
  }
}
