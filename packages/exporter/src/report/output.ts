/**
 * Where a report goes: standard output, or a file that appears complete or not at all (written to a
 * temporary file next to it, synced, then renamed over it; removed on failure).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type { TextSink } from './openmetrics.js';

export interface ReportOutput {
  readonly write: TextSink;
  /** Makes the output final (renames the file into place). */
  commit(): Promise<void>;
  /** Drops what was written to a file; a no-op on a stream. */
  abandon(): Promise<void>;
}

export function streamOutput(stream: Writable): ReportOutput {
  return {
    write: (text) =>
      new Promise((resolve, reject) => {
        stream.write(text, (error) => (error ? reject(error) : resolve()));
      }),
    commit: async () => undefined,
    abandon: async () => undefined,
  };
}

export async function fileOutput(path: string): Promise<ReportOutput> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  const file = await open(temporary, 'wx', 0o644);
  let closed = false;
  let pending = '';
  const flush = async () => {
    if (pending === '') return;
    const text = pending;
    pending = '';
    await file.writeFile(text, 'utf8');
  };
  return {
    async write(text) {
      pending += text;
      if (pending.length >= 1 << 20) await flush();
    },
    async commit() {
      await flush();
      await file.sync();
      await file.close();
      closed = true;
      await rename(temporary, path);
    },
    async abandon() {
      if (!closed) await file.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
    },
  };
}
