import { sql, type Kysely } from 'kysely';
import type { CoderDatabase } from '../schema.js';
import { utcMicrosText } from './utc-micros-text.js';

/**
 * The database clock as µs text and this session's backend pid (to cancel the agents query on abort),
 * and optionally a statement timeout for the rest of the transaction (`set_config(..., true)` is
 * `SET LOCAL`), in one round trip. `now()` is the transaction's start, earlier than the snapshot of the
 * agents query that follows, so a watermark taken from it never skips a row that query could not see.
 *
 * On a hot standby also what it has replayed: the commit time of the last replayed transaction (rows
 * committed later on the primary are not visible yet), and the replay lag: `now()` minus that time
 * while received WAL waits to be replayed, 0 once all received WAL is replayed (an idle primary stops
 * the replay time but is no lag). Without a WAL receiver (archive recovery) it cannot tell idle from
 * behind and reports the age of the replay time. Every function used is executable by any role.
 */
export function transactionClockQuery(db: Kysely<CoderDatabase>, statementTimeoutMs?: number) {
  const columns = [
    utcMicrosText(sql<Date>`now()`).as('source_time'),
    sql<number>`pg_backend_pid()`.as('backend_pid'),
    sql<boolean>`pg_is_in_recovery()`.as('in_recovery'),
    utcMicrosText(sql<Date | null>`pg_last_xact_replay_timestamp()`).as('replayed_until'),
    sql<number | null>`(CASE WHEN pg_is_in_recovery() THEN
      CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0
      ELSE greatest(0, extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time())))
      END END)::float8`.as('replay_lag_s'),
  ];
  if (statementTimeoutMs === undefined) return db.selectNoFrom(columns);
  return db.selectNoFrom([
    ...columns,
    sql<string>`set_config('statement_timeout', ${String(statementTimeoutMs)}, true)`.as('statement_timeout'),
  ]);
}
