/**
 * `--format openmetrics`: the history as the series the exporter serves (same family name, labels and
 * buckets), as timestamped cumulative samples every step from the range's start, ending in `# EOF`, so
 * that `promtool tsdb create-blocks-from openmetrics` turns it into Prometheus blocks.
 *
 * Read through a cursor, ordered by label set: one label set's counters are in memory at a time.
 */
import { INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION, type LabelKey, type StartLabelKey } from '@agentconn/core';
import { escapeOpenMetricsHelp } from '@agentconn/exposition';
import { historySeriesQuery, type CoderDatabase, type HistorySeriesRow } from '@agentconn/kysely';
import { sql, type Kysely } from 'kysely';
import type { ReportFamily } from './families.js';
import { periodCount, type ResolvedRange } from './read.js';

export interface OpenMetricsHistoryOptions {
  readonly range: ResolvedRange;
  readonly templates: readonly string[];
  readonly labels: readonly LabelKey[];
  readonly phaseLabels: readonly StartLabelKey[];
  readonly withoutScopeLabels: boolean;
  /** Rows fetched per round trip. */
  readonly fetchRows?: number;
  /** Called after each fetch with the label sets written so far. */
  readonly onProgress?: (seriesWritten: number) => void;
}

/** Where the text goes; resolves when it may take more (back-pressure). */
export type TextSink = (text: string) => Promise<void>;

const CURSOR = 'agentconn_report_series';

/**
 * Writes every family's history. Runs inside a transaction (the cursor lives in it). Returns the number
 * of label sets written.
 */
export async function writeOpenMetricsHistory(
  trx: Kysely<CoderDatabase>,
  families: readonly ReportFamily[],
  options: OpenMetricsHistoryOptions,
  write: TextSink,
): Promise<number> {
  let series = 0;
  for (const family of families) {
    const name = family.metric.name;
    await write(
      `# HELP ${name} ${escapeOpenMetricsHelp(family.metric.help)}\n# TYPE ${name} histogram\n# UNIT ${name} seconds\n`,
    );
    const labelNames = family.seriesLabels(options);
    const query = historySeriesQuery(
      await family.samples(trx, { from: new Date(options.range.sinceMs), until: new Date(options.range.untilMs), templates: options.templates }),
      {
        since: new Date(options.range.sinceMs),
        stepSeconds: options.range.stepMs / 1000,
        labelColumns: labelNames,
        bucketBoundsMicros: family.metric.bucketBounds.map((bound) => Math.round(bound * 1_000_000)),
      },
    );
    await sql`DECLARE ${sql.raw(CURSOR)} NO SCROLL CURSOR FOR ${query}`.execute(trx);
    const writer = new SeriesWriter(name, family.metric.bucketBounds, labelNames, options, write);
    const fetchRows = options.fetchRows ?? 5000;
    for (;;) {
      const { rows } = await sql<HistorySeriesRow>`FETCH FORWARD ${sql.lit(fetchRows)} FROM ${sql.raw(CURSOR)}`.execute(trx);
      for (const row of rows) await writer.add(row);
      options.onProgress?.(series + writer.written);
      if (rows.length < fetchRows) break;
    }
    await sql`CLOSE ${sql.raw(CURSOR)}`.execute(trx);
    await writer.finish();
    series += writer.written;
  }
  await write('# EOF\n');
  return series;
}

/** OpenMetrics label values escape backslash, double quote and newline. */
function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/[\\"\n]/g, (ch) => (ch === '\\' ? '\\\\' : ch === '"' ? '\\"' : '\\n')) : value;
}

/** Adds up one label set's steps and writes its samples from the step before its first sample to the range's end. */
class SeriesWriter {
  readonly #name: string;
  readonly #bounds: readonly string[];
  readonly #labelNames: readonly string[];
  readonly #range: ResolvedRange;
  readonly #scope: string;
  readonly #write: TextSink;
  /** Sample instants in seconds: the range's start, each step after it, and its end. */
  readonly #instants: number;
  #labels: string[] | undefined;
  #prefix = '';
  /** Samples per bucket so far (not cumulative; the `le` lines add them up). */
  #counts: number[] = [];
  #sumMicros = 0;
  /** The next instant index to write. */
  #next = 0;
  written = 0;

  constructor(name: string, bounds: readonly number[], labelNames: readonly string[], options: OpenMetricsHistoryOptions, write: TextSink) {
    this.#name = name;
    this.#bounds = [...bounds.map((b) => String(b)), '+Inf'];
    this.#labelNames = labelNames;
    this.#range = options.range;
    this.#scope = options.withoutScopeLabels
      ? ''
      : `otel_scope_name="${escapeLabelValue(INSTRUMENTATION_SCOPE)}",otel_scope_version="${escapeLabelValue(INSTRUMENTATION_VERSION)}"`;
    this.#write = write;
    this.#instants = periodCount(options.range) + 1;
  }

  async add(row: HistorySeriesRow): Promise<void> {
    if (this.#labels === undefined || !sameLabels(this.#labels, row.labels)) {
      await this.finish();
      this.#start(row.labels);
      // The series starts at 0 one step before its first samples (or at the range's start), so that
      // rate() and increase() see its first increase.
      this.#next = Math.max(0, row.step_index);
      await this.#writeUntil(this.#next + 1);
    }
    // The step's samples are in [since + i·step, since + (i+1)·step): first visible at instant i + 1.
    await this.#writeUntil(row.step_index + 1);
    this.#counts[row.bucket] = (this.#counts[row.bucket] ?? 0) + row.count;
    this.#sumMicros += row.sum_us;
  }

  async finish(): Promise<void> {
    if (this.#labels === undefined) return;
    await this.#writeUntil(this.#instants);
    this.#labels = undefined;
    this.written++;
  }

  #start(labels: string[]): void {
    this.#labels = labels;
    const own = this.#labelNames.map((name, i) => `${name}="${escapeLabelValue(labels[i] ?? '')}"`).join(',');
    this.#prefix = [own, this.#scope].filter((part) => part !== '').join(',');
    this.#counts = this.#bounds.map(() => 0);
    this.#sumMicros = 0;
  }

  /** Writes the current totals at every instant before `end` not written yet. */
  async #writeUntil(end: number): Promise<void> {
    const name = this.#name;
    const prefix = this.#prefix;
    const comma = prefix === '' ? '' : ',';
    let text = '';
    for (; this.#next < Math.min(end, this.#instants); this.#next++) {
      const at = instantSeconds(this.#range, this.#next);
      let cumulative = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += this.#counts[i] ?? 0;
        text += `${name}_bucket{${prefix}${comma}le="${this.#bounds[i]}"} ${cumulative} ${at}\n`;
      }
      const labels = prefix === '' ? '' : `{${prefix}}`;
      text += `${name}_count${labels} ${cumulative} ${at}\n${name}_sum${labels} ${this.#sumMicros / 1_000_000} ${at}\n`;
      if (text.length > 65_536) {
        await this.#write(text);
        text = '';
      }
    }
    if (text !== '') await this.#write(text);
  }
}

function sameLabels(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/** The i-th sample instant in whole seconds (the range is in whole seconds): `since + i·step`, the last one the range's end. */
export function instantSeconds(range: ResolvedRange, index: number): string {
  return String(Math.floor(Math.min(range.sinceMs + index * range.stepMs, range.untilMs) / 1000));
}
