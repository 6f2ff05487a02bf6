import type { GroupReport } from '../model.js';

/** Durations and changes as a person reads them: `850ms`, `12.3s`, `4m12s`, `2h05m`, `3d04h`; `+12%`. */
export function humanSeconds(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  const sign = seconds < 0 ? '-' : '';
  const s = Math.abs(seconds);
  if (s < 1) return `${sign}${Math.round(s * 1000)}ms`;
  if (s < 60) return `${sign}${s < 10 ? (Math.round(s * 100) / 100).toFixed(2) : (Math.round(s * 10) / 10).toFixed(1)}s`;
  const whole = Math.round(s);
  if (whole < 3600) return `${sign}${Math.floor(whole / 60)}m${pad(whole % 60)}s`;
  if (whole < 86_400) return `${sign}${Math.floor(whole / 3600)}h${pad(Math.floor((whole % 3600) / 60))}m`;
  return `${sign}${Math.floor(whole / 86_400)}d${pad(Math.floor((whole % 86_400) / 3600))}h`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** A ratio `current / previous - 1` as `+12%`, `-3%`, `0%`; `-` when unknown. */
export function humanChange(ratio: number | null): string {
  if (ratio === null || !Number.isFinite(ratio)) return '-';
  const percent = Math.round(ratio * 100);
  return `${percent > 0 ? '+' : ''}${percent}%`;
}

/** `1,234,567`. */
export function humanCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** An RFC 3339 instant shortened for a table: `2026-11-06 05:00Z`, seconds shown only when not 0. */
export function humanInstant(text: string): string {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2})?(?:\.\d+)?Z$/.exec(text);
  if (match === null) return text;
  const secondsPart = match[3] !== undefined && match[3] !== ':00' ? match[3] : '';
  return `${match[1]} ${match[2]}${secondsPart}Z`;
}

/** The figures of a group's summary line, in the order of `SUMMARY_COLUMNS`. */
export const SUMMARY_COLUMNS = ['count', 'P50', 'P90', 'P95', 'P99', 'max', 'count vs before', 'P95 vs before'] as const;

export function summaryCells(group: GroupReport): string[] {
  const { current, change } = group;
  return [
    humanCount(current.count),
    humanSeconds(current.p50_seconds),
    humanSeconds(current.p90_seconds),
    humanSeconds(current.p95_seconds),
    humanSeconds(current.p99_seconds),
    humanSeconds(current.max_seconds),
    humanChange(change.count_ratio),
    humanChange(change.p95_ratio),
  ];
}
