/**
 * The cut-over between a backfilled history and the live exporter, so no first connection is counted
 * twice or lost. The exporter counts first connections from an instant it keeps in its `--state-file`
 * (`count_from_ms`); the history covers those before `--until`. Handing over at one instant:
 * - no state file yet (the exporter has not run with it): the report ends its history at the database's
 *   `now()` and writes the state file saying "counted up to here", so the exporter, whenever it starts
 *   with it, counts from exactly that instant;
 * - a state file already there: the exporter has been counting since its first start, which the file
 *   does not keep; the report refuses to guess and asks for `--until`.
 */
import { access, open, rename, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { POLLER_STATE_VERSION, serializePollerState, type PollerState } from '@agentconn/core';

export class ReportInputError extends Error {
  override readonly name = 'ReportInputError';
}

export async function stateFileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new ReportInputError(`--state-file: cannot read "${path}" (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** The refusal when the exporter already counts. */
export function existingStateError(path: string): ReportInputError {
  return new ReportInputError(
    `--state-file: "${path}" exists, so the exporter already counts from its first start, which the file does not keep; ` +
      'give --until as that instant (e.g. the first sample of the exporter in Prometheus) so the history ends there',
  );
}

/** A state from which the exporter counts every first connection at or after `untilMs` (database clock). */
export function handOverState(untilMs: number, clockOffsetMs: number): PollerState {
  return { version: POLLER_STATE_VERSION, watermarkMs: untilMs, clockOffsetMs, countFromMs: untilMs, handled: [] };
}

/** Writes the state file as the exporter does (temporary file, fsync, rename), refusing to replace one. */
export async function writeHandOverState(path: string, state: PollerState): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.report.tmp`);
  const file = await open(temporary, 'w', 0o600);
  try {
    await file.writeFile(serializePollerState(state), 'utf8');
    await file.sync();
  } finally {
    await file.close();
  }
  if (await stateFileExists(path)) {
    await unlink(temporary).catch(() => undefined);
    throw existingStateError(path);
  }
  await rename(temporary, path);
}
