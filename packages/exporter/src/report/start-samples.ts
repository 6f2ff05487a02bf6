/**
 * The whole start's history samples: the start builds read as the exporter's start source reads them, and
 * each build's start and phases computed by the core's phase model (`workspaceStart`), so that the report's
 * numbers are the exporter's. A start counts at its outcome, a phase when it ends, neither once a newer
 * build superseded the build (the exporter's rule); a build whose instants do not add up is counted as
 * dropped (negative or invalid) at its latest instant, with no outcome.
 *
 * Unlike the first connection's, these samples are computed here and held in memory (a few numbers and
 * names per start and phase) for the length of the report; both start families share one read.
 */
import { latestStartInstantMicros, toEpochMicros, workspaceStart } from '@agentconn/core';
import {
  startBuildsOfRows,
  startHistoryRowsQuery,
  type CoderDatabase,
  type HistoryComputedSample,
  type HistorySampleFilter,
} from '@agentconn/kysely';
import { sql, type Kysely } from 'kysely';

export interface StartHistorySamples {
  /** One per start that ended in the range (breakdown: its outcome), or was dropped (no breakdown). */
  readonly starts: readonly HistoryComputedSample[];
  /** One per phase that ended in the range (breakdown: the phase). */
  readonly phases: readonly HistoryComputedSample[];
}

/** One read per database handle (a report's transaction) and filter: both start families use it. */
const reads = new WeakMap<object, Map<string, Promise<StartHistorySamples>>>();

export function startHistorySamples(db: Kysely<CoderDatabase>, filter: HistorySampleFilter): Promise<StartHistorySamples> {
  let byFilter = reads.get(db);
  if (byFilter === undefined) {
    byFilter = new Map();
    reads.set(db, byFilter);
  }
  const key = JSON.stringify([filter.from.getTime(), filter.until.getTime(), [...(filter.templates ?? [])].sort()]);
  let read = byFilter.get(key);
  if (read === undefined) {
    read = readStartSamples(db, filter);
    byFilter.set(key, read);
  }
  return read;
}

async function readStartSamples(db: Kysely<CoderDatabase>, filter: HistorySampleFilter): Promise<StartHistorySamples> {
  // Timeouts are judged on the database's clock, as the exporter judges them when it polls.
  const { rows: clock } = await sql<{ now: string }>`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`.execute(db);
  const now = clock[0]?.now ?? new Date().toISOString();
  const rows = await startHistoryRowsQuery(db, filter).execute();
  const fromMicros = filter.from.getTime() * 1000;
  const untilMicros = filter.until.getTime() * 1000;
  const inRange = (micros: number) => micros >= fromMicros && micros < untilMicros;
  const starts: HistoryComputedSample[] = [];
  const phases: HistoryComputedSample[] = [];
  for (const build of startBuildsOfRows(rows)) {
    const result = workspaceStart({ ...build.instants, now });
    const sample = (breakdown: string | null, atMicros: number, createdMicros: number, durationMicros: number | null): HistoryComputedSample => ({
      templateName: build.labels.template_name,
      breakdown,
      atMicros,
      createdMicros,
      durationMicros,
      workspaceName: build.labels.workspace_name,
      username: build.labels.username,
      sampleKey: build.buildId,
      isPrebuild: build.labels.is_prebuild,
    });
    if (result.state === 'invalid') {
      const latest = latestStartInstantMicros(build.instants);
      if (latest !== undefined && inRange(latest)) {
        const created = toEpochMicros(build.instants.buildCreatedAt) ?? latest;
        starts.push(sample(null, latest, created, result.problem.reason === 'negative_duration' ? -1 : null));
      }
      continue;
    }
    const superseded = build.supersededAt == null ? undefined : toEpochMicros(build.supersededAt);
    const observed = (micros: number) => inRange(micros) && (superseded === undefined || micros < superseded);
    for (const phase of result.phases) {
      if (observed(phase.endMicros)) phases.push(sample(phase.phase, phase.endMicros, phase.startMicros, phase.endMicros - phase.startMicros));
    }
    if (result.state === 'ended' && observed(result.atMicros)) {
      starts.push(sample(result.outcome, result.atMicros, result.createdMicros, result.atMicros - result.createdMicros));
    }
  }
  return { starts, phases };
}
