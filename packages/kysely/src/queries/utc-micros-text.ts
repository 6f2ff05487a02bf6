import { sql, type Expression, type RawBuilder } from 'kysely';

/**
 * A timestamptz as RFC 3339 text in UTC with all six fraction digits, e.g. `2026-01-02T03:04:05.000001Z`,
 * whatever the session's `TimeZone` and `DateStyle`. A driver's Date would keep only milliseconds.
 * Values `to_char` cannot render faithfully (`infinity`, `-infinity`, years before 1 or after 9999)
 * come out as PostgreSQL's own text, which the core rejects as invalid for that one agent (logged and
 * counted) instead of failing the whole query or shifting the value.
 */
export function utcMicrosText(timestamp: Expression<Date | null>): RawBuilder<string> {
  return sql<string>`CASE WHEN ${timestamp} >= '0001-01-01 00:00:00+00'::timestamptz AND ${timestamp} < '10000-01-01 00:00:00+00'::timestamptz THEN to_char(${timestamp} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') ELSE ${timestamp}::text END`;
}
