import { createRequire } from 'node:module';

/**
 * The metric contract: one place for every name, unit, description, bucket bound and label key.
 * Names are final Prometheus names: the exporter appends no unit suffix, so the instrument carries it.
 */

export const FIRST_CONNECTION_METRIC_NAME = 'coderd_agents_first_connection_seconds';
export const FIRST_CONNECTION_METRIC_DESCRIPTION =
  'Duration from agent creation to first connection to the control plane in seconds.';
export const FIRST_CONNECTION_METRIC_UNIT = 's';

/** Upper bounds of the explicit buckets, in seconds (`+Inf` is implicit). Coder PR #24179's, unchanged. */
export const FIRST_CONNECTION_BUCKET_BOUNDARIES: readonly number[] = Object.freeze([
  1, 10, 30, 60, 120, 300, 600, 1800, 3600,
]);

/** Label keys in Coder PR #24179's order. */
export const LABEL_KEYS = ['template_name', 'agent_name', 'username', 'workspace_name'] as const;
export type LabelKey = (typeof LABEL_KEYS)[number];
export type AgentLabels = { readonly [K in LabelKey]: string };

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

/** Self-metrics: how the recorder and the poller are doing. Counters get `_total` from the Prometheus exporter. */
export const SELF_METRICS = {
  samplesObserved: {
    name: 'agentconn_samples_observed',
    description: 'First connections observed into coderd_agents_first_connection_seconds.',
    unit: '{sample}',
  },
  samplesDropped: {
    name: 'agentconn_samples_dropped',
    description: 'First connections not observed, by reason (negative_duration, invalid).',
    unit: '{sample}',
  },
  labelSetOverflow: {
    name: 'agentconn_label_set_overflow_samples',
    description:
      'Samples recorded into the otel_metric_overflow series because the cardinality limit of label sets was reached.',
    unit: '{sample}',
  },
  polls: {
    name: 'agentconn_polls',
    description: 'Poll ticks by outcome (success, error, skipped_not_leader).',
    unit: '{tick}',
  },
  pollDuration: {
    name: 'agentconn_poll_duration_seconds',
    description: 'Wall time of one poll tick (query and recording) in seconds.',
    unit: 's',
  },
  rowsRead: {
    name: 'agentconn_rows_read',
    description: 'Agent rows read from the source.',
    unit: '{row}',
  },
  lastSuccess: {
    name: 'agentconn_last_success_timestamp_seconds',
    description: 'Unix time of the last successful poll tick, in seconds.',
    unit: 's',
  },
  trackedAgents: {
    name: 'agentconn_tracked_agents',
    description: 'Agent ids held in the observe-once state.',
    unit: '{agent}',
  },
  leader: {
    name: 'agentconn_leader',
    description: '1 when this process holds the leader lock and observes, 0 when it is a follower.',
    unit: '1',
  },
} as const;

/** Description and unit of a self-metric, as instrument options. */
export function instrumentOptions(spec: { readonly description: string; readonly unit: string }): { description: string; unit: string } {
  return { description: spec.description, unit: spec.unit };
}

export const DROP_REASONS = ['negative_duration', 'invalid'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export const POLL_DURATION_BUCKET_BOUNDARIES: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);
