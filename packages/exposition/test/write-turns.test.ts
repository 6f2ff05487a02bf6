import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import type { ChunkSource } from '../src/format/chunk-source.js';
import { SharedRendering, writeShared } from '../src/http/shared-rendering.js';
import { WriteTurns } from '../src/http/write-turns.js';

/** `chunks` chunks of `size` bytes, each taking `renderMillis` to render (busy, as serializing a chunk is). */
function slowSource(chunks: number, size: number, renderMillis: number): ChunkSource {
  let produced = 0;
  return {
    next() {
      if (produced >= chunks) return undefined;
      produced++;
      const started = performance.now();
      while (performance.now() - started < renderMillis) {
        // rendering a chunk takes a moment
      }
      return Buffer.alloc(size, produced % 256);
    },
    close() {},
  };
}

/** A destination that takes every write at once, as a socket does while the kernel has room; counts them. */
function instantSink(onWrite: () => void): Writable {
  return new Writable({
    highWaterMark: 1024 * 1024 * 1024,
    write(_chunk: Buffer, _encoding, callback): void {
      onWrite();
      callback();
    },
  });
}

/** A destination that holds every write until `flush()` (a socket whose peer reads nothing). */
function heldSink(): { sink: Writable; flush(): void } {
  const pending: Array<() => void> = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(_chunk: Buffer, _encoding, callback): void {
      pending.push(callback);
    },
  });
  return {
    sink,
    flush: () => {
      for (const done of pending.splice(0)) done();
    },
  };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('writers sharing one budget per turn of the event loop', () => {
  it('twenty writers together write in a turn about what one writer alone would, not twenty times that', async () => {
    // Node accepts one new connection per turn: what a turn costs, a connection queued behind a burst waits once
    // for every connection ahead of it. A chunk takes 0.2 ms to render and the budget is 1 ms, so a turn holds
    // about five steps, whatever the number of writers (with a budget per writer it held about a hundred).
    const turns = new WriteTurns(1);
    let writes = 0;
    const perTurn: number[] = [];
    let writing = true;
    const mark = (): void => {
      perTurn.push(writes);
      writes = 0;
      if (writing) setImmediate(mark);
    };
    setImmediate(mark);
    const writers = Array.from({ length: 20 }, () =>
      writeShared(
        new SharedRendering(slowSource(30, 1000, 0.2)).join(),
        instantSink(() => writes++),
        { turns },
      ),
    );
    const outcomes = await Promise.all(writers);
    writing = false;
    await nextTurn();
    expect(outcomes).toEqual(writers.map(() => 'complete'));
    expect(perTurn.reduce((sum, count) => sum + count, 0)).toBe(20 * 30);
    expect(Math.max(...perTurn)).toBeLessThanOrEqual(12);
  });

  it('every writer gets its share of the turns: when the first of twenty is done, the others are well on their way', async () => {
    const turns = new WriteTurns(1);
    const written = Array.from({ length: 20 }, () => 0);
    let atFirstDone: number[] | undefined;
    const writers = written.map((_, i) =>
      writeShared(
        new SharedRendering(slowSource(40, 1000, 0.1)).join(),
        instantSink(() => written[i]!++),
        { turns },
      ).then(() => {
        atFirstDone ??= [...written];
      }),
    );
    await Promise.all(writers);
    expect(atFirstDone).toBeDefined();
    expect(Math.min(...(atFirstDone ?? []))).toBeGreaterThanOrEqual(20);
  });

  it('writers together hold one write-ahead in their streams: four at once hold a quarter each', async () => {
    const turns = new WriteTurns(1);
    const sinks = Array.from({ length: 4 }, () => heldSink());
    const writers = sinks.map(({ sink }) =>
      writeShared(new SharedRendering(slowSource(100, 100, 0)).join(), sink, { turns, writeAheadBytes: 2000 }),
    );
    for (let turn = 0; turn < 20; turn++) await nextTurn();
    // Each waits for drain once its stream holds its share (500 bytes): one write-ahead in all, not one each.
    for (const { sink } of sinks) expect(sink.writableLength).toBe(500);
    expect(turns.writers).toBe(4);
    for (let round = 0; round < 200 && turns.writers > 0; round++) {
      for (const { flush } of sinks) flush();
      await nextTurn();
    }
    expect(await Promise.all(writers)).toEqual(['complete', 'complete', 'complete', 'complete']);
    expect(turns.writers).toBe(0);
  });
});
