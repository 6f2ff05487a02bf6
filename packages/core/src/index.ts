export {
  AWAITING_METRICS,
  DEFAULT_CARDINALITY_LIMIT,
  DROP_REASONS,
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC,
  FIRST_CONNECTION_METRIC_DESCRIPTION,
  FIRST_CONNECTION_METRIC_NAME,
  FIRST_CONNECTION_METRIC_UNIT,
  INSTRUMENTATION_SCOPE,
  INSTRUMENTATION_VERSION,
  DEFAULT_LABEL_KEYS,
  EXEMPLAR_LABEL_KEYS,
  MAX_EXEMPLAR_LABEL_CHARACTERS,
  type ExemplarLabelKey,
  LABEL_KEYS,
  PER_WORKSPACE_LABEL_KEYS,
  METRIC_DEFINITIONS,
  OVERFLOW_ATTRIBUTE,
  POLL_DURATION_BUCKET_BOUNDARIES,
  POLL_OUTCOMES,
  prometheusName,
  SELF_METRICS,
  DEFAULT_START_LABEL_KEYS,
  PROVISIONER_STAGE_VALUES,
  SCRIPT_STATUS_VALUES,
  START_BUCKET_BOUNDARIES,
  START_EXEMPLAR_LABEL_KEYS,
  START_LABEL_KEYS,
  START_METRICS,
  START_OUTCOME_VALUES,
  START_PHASE_VALUES,
  type StartLabelKey,
  type MetricDefinition,
  type MetricLabels,
  type MetricType,
  type AgentLabels,
  type DropReason,
  type LabelKey,
} from './metric.js';
export { parseLabelList, validateMetricOptions, type FirstConnectionMetricOptions, type ResolvedMetricOptions } from './metric-options.js';
export {
  agentconnViews,
  firstConnectionView,
  labelSetLimitView,
  workspaceStartViews,
  type LabelSetLimitViewOptions,
  type WorkspaceStartViewOptions,
} from './view.js';
export {
  latestStartInstantMicros,
  START_OUTCOMES,
  START_PHASES,
  workspaceStart,
  type StartAgentInstants,
  type StartJobInstants,
  type StartOutcome,
  type StartPhase,
  type StartPhaseSpan,
  type StartProblem,
  type WorkspaceStart,
  type WorkspaceStartInstants,
} from './start/phase-model.js';
export {
  validateStartLabels,
  WorkspaceStartRecorder,
  type CountFrom,
  type HandledStartSample,
  type ProvisionerJobStages,
  type StartBuildLabels,
  type StartRecordCounts,
  type StartsInProgressGroup,
  type StartupScriptRun,
  type WorkspaceStartBuild,
  type WorkspaceStartRecorderOptions,
} from './start/start-recorder.js';
export { StartExemplars, startExemplarLabels, type StartExemplar } from './start/start-exemplars.js';
export type { StartBatch, StartExclusions, StartQuery, WorkspaceStartSource } from './start/start-source.js';
export { inProgressGroups, WorkspaceStartStream, type StartRead } from './poller/start-stream.js';
export {
  LabelSetLimit,
  OVERFLOW_ATTRIBUTES,
  OVERFLOW_INSTRUMENT_LABEL,
  type LabelSetLimitOptions,
} from './label-set-limit.js';
export { observableGaugesAsDelta, type TemporalitySelecting } from './temporality.js';
export { diagLogger, errorMessage, type LogFields, type Logger } from './logger.js';
export { durationSeconds, formatEpochMicros, toEpochMicros, type Instant } from './timestamp.js';
export { MAX_EXCLUDED_AGENT_IDS } from './first-connection-source.js';
export type {
  AgentBatch,
  AgentFirstConnection,
  AgentFirstConnectionTimeout,
  AgentQuery,
  AgentTimeoutCheck,
  AwaitingAgent,
  AwaitingAgentGroup,
  FirstConnectionSource,
} from './first-connection-source.js';
export {
  createFirstConnectionHistogram,
  DEFAULT_MAX_TRACKED_AGENTS,
  FirstConnectionRecorder,
  type FirstConnectionRecorderOptions,
  type RecordOutcome,
} from './first-connection-recorder.js';
export {
  FirstConnectionPoller,
  TICK_OUTCOMES,
  type BackfillPolicy,
  type DiscoveryMode,
  type FirstConnectionPollerOptions,
  type Leadership,
  type Takeover,
  type TickOutcome,
  type TickResult,
} from './poller/poller.js';
export { abortReason, settleOrAbort } from './abort.js';
export { AwaitingAgentsRecorder, type AwaitingAgentsRecorderOptions, type TimeoutOutcome } from './awaiting-recorder.js';
export {
  AgentConnectionTracker,
  DEFAULT_MAX_AWAITING_AGENTS,
  type AgentConnectionTrackerOptions,
  type ConnectedAgent,
  type ConnectedOutcome,
  type CreatedAgent,
} from './agent-connection-tracker.js';
export { CountWindow, type CountWindowOptions, type CountWindowState } from './poller/count-window.js';
export {
  parsePollerState,
  POLLER_STATE_VERSION,
  PollerStateError,
  serializePollerState,
  type CountedTimeout,
  type HandledAgent,
  type HandledStartSampleState,
  type PollerState,
} from './poller/poller-state.js';
export {
  bucketIndex,
  exemplarLabels,
  FirstConnectionExemplars,
  TRUNCATION_MARK,
  type FirstConnectionExemplar,
} from './exemplars.js';
