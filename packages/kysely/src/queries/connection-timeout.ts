import { sql, type RawBuilder } from 'kysely';
import { utcMicrosText } from './utc-micros-text.js';

/**
 * The agent's connection timeout in seconds: its own `connection_timeout_seconds` when above 0 (Coder's
 * rule), else `fallbackSeconds` (0: the agent never times out, as in Coder). `alias` is the agents' alias.
 */
export function effectiveTimeoutSeconds(fallbackSeconds: number, alias = 'wa'): RawBuilder<number> {
  const column = sql.ref(`${alias}.connection_timeout_seconds`);
  return sql<number>`(CASE WHEN ${column} > 0 THEN ${column} ELSE ${fallbackSeconds}::int END)`;
}

/**
 * `created_at` + the effective timeout, or NULL when the agent never times out. Also NULL for a
 * `created_at` from year 10000 on (the core rejects such a creation time anyway): near PostgreSQL's last
 * representable instant the sum would raise "timestamp out of range" and fail the whole read.
 */
export function timeoutInstant(fallbackSeconds: number, alias = 'wa'): RawBuilder<Date | null> {
  const timeout = effectiveTimeoutSeconds(fallbackSeconds, alias);
  const createdAt = sql.ref(`${alias}.created_at`);
  return sql<Date | null>`(CASE WHEN ${timeout} > 0 AND ${createdAt} < '10000-01-01 00:00:00+00'::timestamptz THEN ${createdAt} + ${timeout} * interval '1 second' END)`;
}

/**
 * For a connected agent (`wa`): the instant of the timeout it passed before connecting, as µs text, or
 * NULL. Coder's rule, strictly: connecting exactly at `created_at + timeout` is in time.
 */
export function passedTimeoutText(fallbackSeconds: number): RawBuilder<string | null> {
  const at = timeoutInstant(fallbackSeconds);
  return sql<string | null>`(CASE WHEN wa.first_connected_at > ${at} THEN ${utcMicrosText(at)} END)`;
}

