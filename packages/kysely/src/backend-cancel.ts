import { sql, type Kysely } from 'kysely';
import type { CoderDatabase } from './schema.js';

/**
 * What a source calls when its tick is aborted: cancels the tick's statement on the server from another
 * connection (`pg_cancel_backend`), so an abort frees the server at once instead of at the statement
 * timeout. Best effort; it does nothing once the transaction has settled, because its backend may by then
 * run another query.
 */
export function backendCanceller(
  db: Kysely<CoderDatabase>,
  running: () => { readonly backendPid: number | undefined; readonly settled: boolean },
): () => void {
  return () => {
    void db
      .connection()
      .execute(async (conn) => {
        // The transaction may have ended while this waited for a connection: then its pid is another query's.
        const { backendPid, settled } = running();
        if (settled || backendPid === undefined) return;
        await sql`SELECT pg_cancel_backend(${backendPid})`.execute(conn);
      })
      .catch(() => {
        // Best effort: the statement timeout ends the query anyway.
      });
  };
}
