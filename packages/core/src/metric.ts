import { createRequire } from 'node:module';

/**
 * The metric contract: one place for every name, unit, description, bucket bound and label key.
 * Names are final Prometheus names: the exporter appends no unit suffix, so the instrument carries it.
 */

export const FIRST_CONNECTION_METRIC_NAME = 'coderd_agents_first_connection_seconds';
export const FIRST_CONNECTION_METRIC_DESCRIPTION =
  'Duration from agent creation to first connection to the control plane in seconds.';
export const FIRST_CONNECTION_METRIC_UNIT = 's';

/** The Prometheus type of a metric: a histogram, a counter (its family gets `_total`), or a gauge. */
export type MetricType = 'histogram' | 'counter' | 'gauge';

/**
 * A metric's series labels: `'series'` for the configurable labels of the histogram (`DEFAULT_LABEL_KEYS` by default,
 * any subset of `LABEL_KEYS`), otherwise each label key with every value it takes (none: no labels; an empty list:
 * a value that names something, such as a host).
 */
export type MetricLabels = 'series' | { readonly [key: string]: readonly string[] };

/**
 * Everything the docs say about a metric. Every instrument the packages create comes from one of these; the
 * metrics tables of the READMEs are made from them (a test fails when one is missing).
 */
export interface MetricDefinition {
  /** The instrument name; a counter's Prometheus family appends `_total`. */
  readonly name: string;
  readonly type: MetricType;
  /** UCUM: `s`, `1`, or an annotation such as `{agent}`. */
  readonly unit: string;
  /** The HELP text. */
  readonly description: string;
  readonly labels: MetricLabels;
}

/** Upper bounds of the explicit buckets, in seconds (`+Inf` is implicit). Coder PR #24179's, unchanged. */
export const FIRST_CONNECTION_BUCKET_BOUNDARIES: readonly number[] = Object.freeze([
  1, 10, 30, 60, 120, 300, 600, 1800, 3600,
]);

export const FIRST_CONNECTION_METRIC = {
  name: FIRST_CONNECTION_METRIC_NAME,
  type: 'histogram',
  unit: FIRST_CONNECTION_METRIC_UNIT,
  description: FIRST_CONNECTION_METRIC_DESCRIPTION,
  labels: 'series',
} as const satisfies MetricDefinition;

/**
 * The agents that never connected: same population and labels as the histogram. Values on the
 * database's clock for a poller; on the host's clock for in-service use.
 */
export const AWAITING_METRICS = {
  awaiting: {
    name: 'coderd_agents_awaiting_first_connection',
    type: 'gauge',
    labels: 'series',
    description: 'Agents of the latest build of non-deleted workspaces that have not connected to the control plane yet.',
    unit: '{agent}',
  },
  oldestWait: {
    name: 'coderd_agents_awaiting_first_connection_oldest_seconds',
    type: 'gauge',
    labels: 'series',
    description: 'How long the longest-waiting agent that has not connected yet has waited since its creation, in seconds.',
    unit: 's',
  },
  /**
   * A monotonic sum: the Prometheus exporter appends `_total` (as Prometheus's OTLP receiver does), so
   * the family is `coderd_agents_first_connection_timeouts_total`.
   */
  timeouts: {
    name: 'coderd_agents_first_connection_timeouts',
    type: 'counter',
    labels: 'series',
    description:
      'Agents whose wait for their first connection passed their connection timeout (Coder shows them as timeout), counted once per agent.',
    unit: '{agent}',
  },
} as const satisfies Record<string, MetricDefinition>;

/**
 * The whole start: upper bounds of the buckets of its histograms, in seconds. Queue waits are mostly
 * sub-second, so the first bounds are finer than the first connection's.
 */
export const START_BUCKET_BOUNDARIES: readonly number[] = Object.freeze([0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]);

/** How a start ended (`outcome` of `agentconn_workspace_start_seconds`). */
export const START_OUTCOME_VALUES = ['ready', 'start_error', 'start_timeout', 'build_failed', 'canceled', 'connect_timeout'] as const;
/** The phases of a start, in order. */
export const START_PHASE_VALUES = ['queued', 'provisioning', 'connecting', 'starting'] as const;
/** Coder's provisioner job timing stages. */
export const PROVISIONER_STAGE_VALUES = ['init', 'plan', 'graph', 'apply'] as const;
/** Coder's script timing statuses. */
export const SCRIPT_STATUS_VALUES = ['ok', 'exit_failure', 'timed_out', 'pipes_left_open'] as const;

/**
 * The configurable labels of the start family, in this order. `is_prebuild` goes on the start and phase
 * histograms only: a pool build is not a person waiting, while the provisioner, the scripts and the builds in
 * progress are the same work either way.
 */
export const START_LABEL_KEYS = ['template_name', 'is_prebuild', 'username', 'workspace_name'] as const;
export type StartLabelKey = (typeof START_LABEL_KEYS)[number];
/** Default labels of the start family: per template, prebuilds apart. */
export const DEFAULT_START_LABEL_KEYS: readonly StartLabelKey[] = Object.freeze(['template_name', 'is_prebuild'] as const);
/** Exemplar label keys of the start family; `workspace_name` and `username` only when not series labels. */
export const START_EXEMPLAR_LABEL_KEYS = ['build_id', 'workspace_name', 'username'] as const;

/** The whole start of a workspace (`--phases`): every start build once, its phases, stages, scripts, and what is in progress. */
export const START_METRICS = {
  start: {
    name: 'agentconn_workspace_start_seconds',
    type: 'histogram',
    unit: 's',
    labels: { template_name: [], outcome: START_OUTCOME_VALUES, is_prebuild: ['true', 'false'] },
    description: 'Seconds from a workspace start build\'s creation to its outcome.',
  },
  phase: {
    name: 'agentconn_workspace_start_phase_seconds',
    type: 'histogram',
    unit: 's',
    labels: { template_name: [], phase: START_PHASE_VALUES, is_prebuild: ['true', 'false'] },
    description: 'Seconds of each phase of a workspace start, observed when it ends.',
  },
  stage: {
    name: 'agentconn_provisioner_stage_seconds',
    type: 'histogram',
    unit: 's',
    labels: { template_name: [], stage: PROVISIONER_STAGE_VALUES },
    description: "Seconds of each provisioner stage of a start build's job.",
  },
  script: {
    name: 'agentconn_agent_startup_script_seconds',
    type: 'histogram',
    unit: 's',
    labels: { template_name: [], script: [], status: SCRIPT_STATUS_VALUES },
    description: 'Seconds of each run of an agent script at start.',
  },
  inProgress: {
    name: 'agentconn_workspace_starts_in_progress',
    type: 'gauge',
    unit: '{build}',
    labels: { template_name: [], phase: START_PHASE_VALUES },
    description: 'Latest start builds without an outcome yet, by phase.',
  },
  inProgressOldest: {
    name: 'agentconn_workspace_starts_in_progress_oldest_seconds',
    type: 'gauge',
    unit: 's',
    labels: { template_name: [], phase: START_PHASE_VALUES },
    description: 'Seconds the oldest of them has been in its phase (database clock).',
  },
} as const satisfies Record<string, MetricDefinition>;

/** Every label key a series may carry, in Coder PR #24179's order. */
export const LABEL_KEYS = ['template_name', 'agent_name', 'username', 'workspace_name'] as const;
export type LabelKey = (typeof LABEL_KEYS)[number];

/**
 * The default series labels, Coder #24355's set. With per-workspace labels every first connection starts a
 * new series at count 1, which `rate()` and `increase()` never see: the P95 query answers NaN. The
 * identifying labels go to exemplars instead.
 */
export const DEFAULT_LABEL_KEYS: readonly LabelKey[] = Object.freeze(['template_name', 'agent_name'] as const);

/**
 * The label set of Coder PR #24179: one series per workspace. Costs a series per workspace and `rate()` misses
 * the first connection of every new workspace; still the right choice for per-workspace history in Prometheus
 * on a deployment whose workspaces are long-lived.
 */
export const PER_WORKSPACE_LABEL_KEYS: readonly LabelKey[] = LABEL_KEYS;
export type AgentLabels = { readonly [K in LabelKey]: string };

/** Exemplar label keys, in this order; `workspace_name` and `username` only when not series labels. */
export const EXEMPLAR_LABEL_KEYS = ['agent_id', 'workspace_name', 'username'] as const;
export type ExemplarLabelKey = (typeof EXEMPLAR_LABEL_KEYS)[number];

/** OpenMetrics 1.0: an exemplar's label names and values together have at most 128 UTF-8 characters. */
export const MAX_EXEMPLAR_LABEL_CHARACTERS = 128;

/**
 * The SDK's default limit (2000 label sets per instrument) is passed quickly with per-workspace labels;
 * beyond the limit every new label set folds into one `otel_metric_overflow="true"` series.
 */
export const DEFAULT_CARDINALITY_LIMIT = 50_000;

/** The attribute of the one series that takes label sets past the cardinality limit (the SDK's own). */
export const OVERFLOW_ATTRIBUTE = 'otel.metric.overflow';

/** Instrumentation scope of every instrument this package creates: this package's name and version. */
export const INSTRUMENTATION_SCOPE = '@agentconn/core';
// package.json sits one level above both src/ and dist/.
export const INSTRUMENTATION_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string })
  .version;

export const DROP_REASONS = ['negative_duration', 'invalid'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** The outcomes of a poll tick, the values of `agentconn_polls_total{outcome}`. */
export const POLL_OUTCOMES = ['success', 'error', 'skipped_not_leader'] as const;

/** Self-metrics: how the recorder and the poller are doing. Counters get `_total` from the Prometheus exporter. */
export const SELF_METRICS = {
  samplesObserved: {
    name: 'agentconn_samples_observed',
    type: 'counter',
    labels: {},
    description: 'First connections observed into coderd_agents_first_connection_seconds.',
    unit: '{sample}',
  },
  samplesDropped: {
    name: 'agentconn_samples_dropped',
    type: 'counter',
    labels: { reason: DROP_REASONS },
    description: 'Samples not observed, by reason (negative_duration, invalid).',
    unit: '{sample}',
  },
  labelSetOverflow: {
    name: 'agentconn_label_set_overflow_samples',
    type: 'counter',
    // The name of an instrument of this package with label sets (or of yours that uses `LabelSetLimit`).
    labels: { instrument: [] },
    description:
      'Samples recorded into an instrument\'s otel_metric_overflow series past its cardinality limit.',
    unit: '{sample}',
  },
  polls: {
    name: 'agentconn_polls',
    type: 'counter',
    labels: { outcome: POLL_OUTCOMES },
    description: 'Poll ticks by outcome (success, error, skipped_not_leader).',
    unit: '{tick}',
  },
  pollDuration: {
    name: 'agentconn_poll_duration_seconds',
    type: 'histogram',
    labels: {},
    description: 'Wall time of one poll tick (query and recording) in seconds.',
    unit: 's',
  },
  rowsRead: {
    name: 'agentconn_rows_read',
    type: 'counter',
    labels: {},
    description: 'Agent rows read from the source.',
    unit: '{row}',
  },
  lastSuccess: {
    name: 'agentconn_last_success_timestamp_seconds',
    type: 'gauge',
    labels: {},
    description: 'Unix time of the last successful poll tick, in seconds.',
    unit: 's',
  },
  trackedAgents: {
    name: 'agentconn_tracked_agents',
    type: 'gauge',
    labels: {},
    description: 'Agent ids held in the observe-once state.',
    unit: '{agent}',
  },
  replayLag: {
    name: 'agentconn_source_replay_lag_seconds',
    type: 'gauge',
    labels: {},
    description:
      'On a standby: how old its data is while received changes wait to be replayed, 0 once replayed; absent on a primary.',
    unit: 's',
  },
  leader: {
    name: 'agentconn_leader',
    type: 'gauge',
    labels: {},
    description: '1 when this process holds the leader lock and observes, 0 when it is a follower.',
    unit: '1',
  },
  leaderInfo: {
    name: 'agentconn_leader_info',
    type: 'gauge',
    labels: { leader_instance: [], leader_host: [], leader_pid: [] },
    description: 'Who leads.',
    unit: '1',
  },
  otlpExports: {
    name: 'agentconn_otlp_exports',
    type: 'counter',
    labels: { outcome: ['success', 'failure'] },
    description: 'OTLP metric exports by outcome (success, failure).',
    unit: '{export}',
  },
} as const satisfies Record<string, MetricDefinition>;

/** Every metric the packages create, in the order of the docs' tables. */
export const METRIC_DEFINITIONS: readonly MetricDefinition[] = Object.freeze([
  FIRST_CONNECTION_METRIC,
  ...Object.values(AWAITING_METRICS),
  ...Object.values(START_METRICS),
  ...Object.values(SELF_METRICS),
]);

/** The family name Prometheus shows: a counter's gets `_total`. */
export function prometheusName(definition: Pick<MetricDefinition, 'name' | 'type'>): string {
  return definition.type === 'counter' ? `${definition.name}_total` : definition.name;
}

/** Description and unit of a self-metric, as instrument options. */
export function instrumentOptions(spec: { readonly description: string; readonly unit: string }): { description: string; unit: string } {
  return { description: spec.description, unit: spec.unit };
}

export const POLL_DURATION_BUCKET_BOUNDARIES: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);
