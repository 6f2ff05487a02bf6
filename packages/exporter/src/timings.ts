import { POLL_TIMEOUT_GRACE_MS } from './flags.js';

/** The waits of a running exporter, each derived from the poll interval or the statement timeout. */
export interface ExporterTimings {
  /** OTLP pushes once per poll, so a backend sees each poll's data once. */
  readonly otlpExportIntervalMs: number;
  /** An OTLP export gives up before the next one is due (and after 30 s at most). */
  readonly otlpExportTimeoutMs: number;
  /** A round trip on the leader lock's connection: within half an interval, 1 to 5 s. */
  readonly leaderQueryTimeoutMs: number;
  /** A poll is aborted once the server had its statement timeout and a grace to say so. */
  readonly pollTimeoutMs: number;
  /**
   * Opening a connection (pooled, or the leader lock's): a few seconds, never longer than a statement
   * may run, so a server that accepts and never answers is reported soon, by host and port.
   */
  readonly connectTimeoutMs: number;
  /**
   * An idle pooled connection is closed before the next poll (half an interval, 0.5 to 30 s), so a
   * connection that went silent between polls (no FIN, as behind a dead NAT) is never reused.
   */
  readonly idleTimeoutMs: number;
}

export function exporterTimings(settings: { readonly intervalMs: number; readonly statementTimeoutMs: number }): ExporterTimings {
  const { intervalMs, statementTimeoutMs } = settings;
  return {
    otlpExportIntervalMs: intervalMs,
    otlpExportTimeoutMs: Math.min(intervalMs, 30_000),
    leaderQueryTimeoutMs: Math.max(1000, Math.min(5000, intervalMs / 2)),
    pollTimeoutMs: statementTimeoutMs + POLL_TIMEOUT_GRACE_MS,
    connectTimeoutMs: Math.min(statementTimeoutMs, 5000),
    idleTimeoutMs: Math.max(500, Math.min(intervalMs / 2, 30_000)),
  };
}
