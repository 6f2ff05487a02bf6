import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage, parsePollerState, serializePollerState, type Logger, type PollerState } from '@agentconn/core';

/**
 * The poller's state as read at start: undefined means "count by the backfill policy", either because
 * there is no file yet (a first start) or because it cannot be used (one error line says why).
 * Never throws: a bad state file must not keep the exporter from serving.
 */
export async function loadStateFile(path: string, logger: Logger): Promise<PollerState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      logger.info('no state file yet; counting by the backfill policy', { state_file: path });
      return undefined;
    }
    logger.error('cannot read the state file; counting by the backfill policy', { state_file: path, error: errorMessage(error) });
    return undefined;
  }
  try {
    const state = parsePollerState(text);
    logger.info('resuming from the state file', {
      state_file: path,
      count_from: new Date(state.countFromMs).toISOString(),
      watermark: new Date(state.watermarkMs).toISOString(),
      handled_agents: state.handled.length,
    });
    return state;
  } catch (error) {
    logger.error('the state file is not usable; counting by the backfill policy', { state_file: path, error: errorMessage(error) });
    return undefined;
  }
}

/**
 * A `saveState` for the poller that replaces the file atomically: write a temporary file next to it,
 * fsync, rename over the old one, fsync the directory. A crash at any point leaves the old state or the
 * new one, never a torn file. Failures are logged once per episode (and a line when writes work again);
 * it never rejects.
 */
export function createStateFileWriter(path: string, logger: Logger): (state: PollerState) => Promise<void> {
  const temporary = `${path}.tmp`;
  let failing = false;
  return async (state) => {
    try {
      await writeDurably(temporary, serializePollerState(state));
      await rename(temporary, path);
      await syncDirectory(dirname(path));
      if (failing) logger.info('state file written again', { state_file: path });
      failing = false;
    } catch (error) {
      if (!failing) {
        logger.error('writing the state file failed; a restart now counts from the last state written', {
          state_file: path,
          error: errorMessage(error),
        });
      }
      failing = true;
    }
  };
}

async function writeDurably(path: string, text: string): Promise<void> {
  const file = await open(path, 'w', 0o600);
  try {
    await file.writeFile(text, 'utf8');
    await file.sync();
  } finally {
    await file.close();
  }
}

async function syncDirectory(path: string): Promise<void> {
  let directory;
  try {
    directory = await open(path, 'r');
  } catch {
    return; // Not every platform opens directories; the rename itself already happened.
  }
  try {
    await directory.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await directory.close();
  }
}
