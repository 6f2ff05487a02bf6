import type { Writable } from 'node:stream';

/** How a chunked write ended: all written, or the destination went away first (a scraper hung up). */
export type WriteOutcome = 'complete' | 'closed';

type Wait = 'drain' | 'closed';

function waitForDrain(out: Writable): Promise<Wait> {
  if (out.destroyed) return Promise.resolve('closed');
  if (!out.writableNeedDrain) return Promise.resolve('drain');
  return new Promise<Wait>((resolve, reject) => {
    const cleanup = (): void => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', onError);
    };
    const onDrain = (): void => {
      cleanup();
      resolve('drain');
    };
    const onClose = (): void => {
      cleanup();
      resolve('closed');
    };
    const onError = (error: unknown): void => {
      cleanup();
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', onError);
  });
}

/**
 * Writes chunks to `out`, pausing whenever `write()` asks for it, so memory holds about one chunk plus the
 * stream's buffer rather than the whole text. Stops pulling chunks (and closes the iterator) when `out` is
 * destroyed. Does not end `out`. A throw from the iterator propagates. `release` gets each chunk back once
 * `out` has finished with it.
 */
export async function writeChunks(
  chunks: Iterator<Uint8Array, void, undefined>,
  out: Writable,
  first?: IteratorResult<Uint8Array, void>,
  release?: (chunk: Uint8Array) => void,
): Promise<WriteOutcome> {
  let result = first ?? chunks.next();
  try {
    while (result.done !== true) {
      if (out.destroyed || out.writableEnded) return 'closed';
      const chunk = result.value;
      // The write callback runs once the stream is done with the bytes (flushed, or failed): then they can be reused.
      const written = release === undefined ? out.write(chunk) : out.write(chunk, () => release(chunk));
      if (!written) {
        if ((await waitForDrain(out)) === 'closed') return 'closed';
      }
      result = chunks.next();
    }
    return 'complete';
  } finally {
    if (result.done !== true) chunks.return?.();
  }
}
