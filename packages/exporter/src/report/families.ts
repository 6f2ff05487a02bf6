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
  type LabelKey,
} from '@agentconn/core';
import {
  firstConnectionDetails,
  firstConnectionSamples,
  type CoderDatabase,
  type HistorySampleColumns,
  type HistorySampleDetails,
  type HistorySampleFilter,
} from '@agentconn/kysely';
import type { Expression, Kysely } from 'kysely';

export interface ReportFamily {
  /** The name in `--family` and in the JSON (`first_connection`). */
  readonly id: string;
  /** A heading for people. */
  readonly title: string;
  /** The histogram the exporter serves, with its help text and bucket bounds in seconds. */
  readonly metric: { readonly name: string; readonly help: string; readonly bucketBounds: readonly number[] };
  /** The label `breakdown` stands for (`outcome`, `phase`); null: none. */
  readonly breakdownLabel: string | null;
  /** The series labels the exporter puts on the histogram, in its order, given `--labels`. */
  seriesLabels(labels: readonly LabelKey[]): readonly string[];
  samples(db: Kysely<CoderDatabase>, filter: HistorySampleFilter): Expression<HistorySampleColumns>;
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
  // The exporter keeps the chosen labels in the contract's order, whatever order --labels gives.
  seriesLabels: (labels) => LABEL_KEYS.filter((key) => labels.includes(key)),
  samples: (db, filter) => firstConnectionSamples(db, filter),
  details: (db) => firstConnectionDetails(db),
};

/**
 * Every family, in report order. The whole start (`agentconn_workspace_start_seconds` by outcome) and
 * its phases (`agentconn_workspace_start_phase_seconds` by phase) join here with `breakdownLabel`
 * `outcome` and `phase` once `@agentconn/kysely` has their samples queries.
 */
export const REPORT_FAMILIES: readonly ReportFamily[] = [FIRST_CONNECTION_FAMILY];

export function familyById(id: string): ReportFamily | undefined {
  return REPORT_FAMILIES.find((family) => family.id === id);
}
