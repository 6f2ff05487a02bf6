/**
 * The duration families a report covers. A family is a metric the exporter serves plus the query of its
 * samples (columns of `HistorySampleColumns`); everything else — percentiles, trend, slowest, every
 * format, the OpenMetrics history — is the same code for each. To add one: a row here.
 */
import {
  FIRST_CONNECTION_BUCKET_BOUNDARIES,
  FIRST_CONNECTION_METRIC_DESCRIPTION,
  FIRST_CONNECTION_METRIC_NAME,
  LABEL_KEYS,
  START_BUCKET_BOUNDARIES,
  START_LABEL_KEYS,
  START_METRICS,
  type LabelKey,
  type StartLabelKey,
} from '@agentconn/core';
import {
  computedHistorySamples,
  firstConnectionDetails,
  firstConnectionSamples,
  startHistoryDetails,
  type CoderDatabase,
  type HistorySampleColumns,
  type HistorySampleDetails,
  type HistorySampleFilter,
} from '@agentconn/kysely';
import type { Expression, Kysely } from 'kysely';
import { startHistorySamples } from './start-samples.js';

/** The exporter's label choices: `--labels` for the first connection, `--phase-labels` for the whole start. */
export interface FamilyLabelOptions {
  readonly labels: readonly LabelKey[];
  readonly phaseLabels: readonly StartLabelKey[];
}

export interface ReportFamily {
  /** The name in `--family` and in the JSON (`first_connection`). */
  readonly id: string;
  /** A heading for people. */
  readonly title: string;
  /** The histogram the exporter serves, with its help text and bucket bounds in seconds. */
  readonly metric: { readonly name: string; readonly help: string; readonly bucketBounds: readonly number[] };
  /** The label `breakdown` stands for (`outcome`, `phase`); null: none. */
  readonly breakdownLabel: string | null;
  /** Read only with `--phases`, as the exporter serves it only then. */
  readonly phases: boolean;
  /** The series labels the exporter puts on the histogram, in its order, given its label flags. */
  seriesLabels(options: FamilyLabelOptions): readonly string[];
  samples(db: Kysely<CoderDatabase>, filter: HistorySampleFilter): Expression<HistorySampleColumns> | Promise<Expression<HistorySampleColumns>>;
  /** Who a sample was, by its `sample_key`: read for the slowest only. */
  details(db: Kysely<CoderDatabase>): Expression<HistorySampleDetails>;
}

export const FIRST_CONNECTION_FAMILY: ReportFamily = {
  id: 'first_connection',
  title: 'First connection',
  metric: {
    name: FIRST_CONNECTION_METRIC_NAME,
    help: FIRST_CONNECTION_METRIC_DESCRIPTION,
    bucketBounds: FIRST_CONNECTION_BUCKET_BOUNDARIES,
  },
  breakdownLabel: null,
  phases: false,
  // The exporter keeps the chosen labels in the contract's order, whatever order --labels gives.
  seriesLabels: ({ labels }) => LABEL_KEYS.filter((key) => labels.includes(key)),
  samples: (db, filter) => firstConnectionSamples(db, filter),
  details: (db) => firstConnectionDetails(db),
};

/** The whole start's labels as the exporter sets them: `--phase-labels` in the contract's order, then `label`. */
const startSeriesLabels =
  (label: string) =>
  ({ phaseLabels }: FamilyLabelOptions): readonly string[] => [...START_LABEL_KEYS.filter((key) => phaseLabels.includes(key)), label];

export const START_FAMILY: ReportFamily = {
  id: 'start',
  title: 'Whole start',
  metric: { name: START_METRICS.start.name, help: START_METRICS.start.description, bucketBounds: START_BUCKET_BOUNDARIES },
  breakdownLabel: 'outcome',
  phases: true,
  seriesLabels: startSeriesLabels('outcome'),
  samples: async (db, filter) => computedHistorySamples((await startHistorySamples(db, filter)).starts, 'outcome'),
  details: (db) => startHistoryDetails(db),
};

export const START_PHASE_FAMILY: ReportFamily = {
  id: 'start_phase',
  title: 'Start phase',
  metric: { name: START_METRICS.phase.name, help: START_METRICS.phase.description, bucketBounds: START_BUCKET_BOUNDARIES },
  breakdownLabel: 'phase',
  phases: true,
  seriesLabels: startSeriesLabels('phase'),
  samples: async (db, filter) => computedHistorySamples((await startHistorySamples(db, filter)).phases, 'phase'),
  details: (db) => startHistoryDetails(db),
};

/** Every family, in report order; those with `phases` only with `--phases`. */
export const REPORT_FAMILIES: readonly ReportFamily[] = [FIRST_CONNECTION_FAMILY, START_FAMILY, START_PHASE_FAMILY];

/** The families a report reads, given `--phases`. */
export function reportFamilies(phases: boolean): readonly ReportFamily[] {
  return REPORT_FAMILIES.filter((family) => phases || !family.phases);
}

export function familyById(id: string): ReportFamily | undefined {
  return REPORT_FAMILIES.find((family) => family.id === id);
}
