import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { SharedRendering, SharedTask, writeShared, type RenderingReader } from '../src/http/shared-rendering.js';
import type { ChunkSource } from '../src/format/chunk-source.js';

function source(chunks: number, size = 100): ChunkSource & { produced: number; closed: boolean } {
  const state = {
    produced: 0,
    closed: false,
    next(): Uint8Array | undefined {
      if (state.produced >= chunks) return undefined;
      return Buffer.alloc(size, state.produced++ % 256);
    },
    close(): void {
      state.closed = true;
    },
  };
  return state;
}

/** A destination that holds every write until `flush()` (a socket whose peer reads nothing). */
function heldSink(): { sink: Writable; received: Buffer[]; flush(): void } {
  const pending: Array<() => void> = [];
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, callback): void {
      received.push(chunk);
      pending.push(callback);
    },
  });
  return { sink, received, flush: () => {
      for (const done of pending.splice(0)) done();
    } };
}

describe('SharedRendering', () => {
  it('produces each chunk once for every reader, keeps chunks for joiners within the budget, then releases them', async () => {
    const src = source(10);
    const released: Uint8Array[] = [];
    const rendering = new SharedRendering(src, (chunk) => released.push(chunk), { keepBytes: 300 });
    const first = await writeAll(rendering.join());
    expect(first.length).toBe(1000);
    await new Promise((r) => setImmediate(r)); // the sink's write callbacks run after the write loop
    // Done and nobody reads it: not joinable, every chunk released exactly once.
    expect(rendering.joinable()).toBe(false);
    expect(released).toHaveLength(10);
    expect(new Set(released).size).toBe(10);
    expect(src.produced).toBe(10);
  });

  it('a slow reader keeps the start, so a late reader joins and gets every byte; a reader leaving early does not break it', async () => {
    const src = source(20);
    const rendering = new SharedRendering(src, undefined, { keepBytes: 0 });
    const slow = heldSink();
    const slowDone = writeShared(rendering.join(), slow.sink);
    await new Promise((r) => setImmediate(r));
    // The slow reader has chunk 0 in flight: a reader arriving now can join.
    expect(rendering.joinable()).toBe(true);
    const quitter = new Writable({ write: (_c, _e, cb) => cb() });
    const quitting = writeShared(rendering.join(), quitter);
    quitter.destroy();
    expect(await quitting).toBe('closed');
    const late = await writeAll(rendering.join());
    expect(late.equals(Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.alloc(100, i))))).toBe(true);
    expect(src.produced).toBe(20);
    for (let i = 0; i < 40 && rendering.keptChunks > 0; i++) {
      slow.flush();
      await new Promise((r) => setImmediate(r));
    }
    expect(await slowDone).toBe('complete');
    expect(rendering.keptChunks).toBe(0);
  });

  it('stops the source when every reader left before the end', async () => {
    const src = source(1000);
    const rendering = new SharedRendering(src);
    const sink = new Writable({ highWaterMark: 1, write: (_c, _e, cb) => setImmediate(cb) });
    const writing = writeShared(rendering.join(), sink);
    await new Promise((r) => setTimeout(r, 5));
    sink.destroy();
    expect(await writing).toBe('closed');
    expect(src.closed).toBe(true);
    expect(src.produced).toBeLessThan(1000);
    expect(rendering.joinable()).toBe(false);
  });

  it('writes the next chunk ahead while the socket drains, and releases one that arrives after every reader left', async () => {
    let resolveSecond: ((chunk: Uint8Array) => void) | undefined;
    const first = Buffer.alloc(10, 1);
    const second = Buffer.alloc(10, 2);
    let calls = 0;
    const src: ChunkSource = {
      next: () => {
        calls++;
        if (calls === 1) return first;
        return new Promise<Uint8Array>((resolve) => (resolveSecond = resolve));
      },
      close: () => undefined,
    };
    const released: Uint8Array[] = [];
    const rendering = new SharedRendering(src, (chunk) => released.push(chunk), { keepBytes: 0 });
    const held = heldSink();
    const writing = writeShared(rendering.join(), held.sink);
    await new Promise((r) => setImmediate(r));
    // Chunk 0 is in the socket and not drained, yet chunk 1 is already being produced.
    expect(held.received).toHaveLength(1);
    expect(calls).toBe(2);
    held.sink.destroy();
    expect(await writing).toBe('closed');
    resolveSecond?.(second);
    held.flush(); // the socket is done with chunk 0 too
    await new Promise((r) => setImmediate(r));
    expect(released).toContain(second);
    expect(released).toContain(first);
    expect(rendering.keptChunks).toBe(0);
  });

  it('with a write-ahead, keeps writing until the destination holds that many bytes, then waits for drain', async () => {
    // 100-byte chunks, 250 bytes ahead: chunks 0-2 go into the stream before the writer waits; without one,
    // only chunk 0 (the reader's HTTP responses use 4 MiB: a 100k-series scrape took 0.85x as long with 1 MiB, 0.87x that with 4).
    for (const [ahead, buffered] of [
      [250, 300],
      [0, 100],
    ] as const) {
      const src = source(20);
      const rendering = new SharedRendering(src, undefined, { keepBytes: 0 });
      const held = heldSink();
      let outcome: string | undefined;
      const writing = writeShared(rendering.join(), held.sink, { writeAheadBytes: ahead }).then((how) => (outcome = how));
      await new Promise((r) => setImmediate(r));
      expect(held.sink.writableLength).toBe(buffered);
      for (let i = 0; i < 100 && outcome === undefined; i++) {
        held.flush();
        await new Promise((r) => setImmediate(r));
      }
      expect(await writing).toBe('complete');
      // Written is not yet received: what the stream still buffers reaches it as the socket takes it.
      for (let i = 0; i < 10 && held.sink.writableLength > 0; i++) {
        held.flush();
        await new Promise((r) => setImmediate(r));
      }
      expect(Buffer.concat(held.received).equals(Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.alloc(100, i))))).toBe(true);
    }
  });

  it('lets the event loop turn while a reader takes every chunk at once (a fast scraper must not stall the process)', async () => {
    // A destination that takes every write at once, as a socket does while the kernel has room: nothing ever asks
    // the writer to wait, so only the writer itself can let timers and other connections run.
    const src: ChunkSource & { produced: number } = {
      produced: 0,
      next() {
        if (this.produced >= 400) return undefined;
        this.produced++;
        const started = performance.now();
        while (performance.now() - started < 0.5) {
          // rendering a chunk takes a moment
        }
        return Buffer.alloc(1000);
      },
      close() {},
    };
    const rendering = new SharedRendering(src, undefined, { keepBytes: 0 });
    let turns = 0;
    const heartbeat = setInterval(() => turns++, 1);
    try {
      const started = performance.now();
      await writeAll(rendering.join());
      const took = performance.now() - started;
      expect(took).toBeGreaterThan(200);
      // About one turn per slice (1 ms) of writing; none at all when the writer never yields.
      expect(turns).toBeGreaterThanOrEqual(Math.floor(took / 40));
    } finally {
      clearInterval(heartbeat);
    }
  });

  it('hands every reader the same failure', async () => {
    let calls = 0;
    const failing: ChunkSource = {
      next() {
        calls++;
        if (calls > 2) throw new Error('serializer broke');
        return Buffer.from('x');
      },
      close() {},
    };
    const rendering = new SharedRendering(failing);
    const first = rendering.join();
    const second = rendering.join();
    await expect(writeAll(first)).rejects.toThrow('serializer broke');
    await expect(writeAll(second)).rejects.toThrow('serializer broke');
    expect(calls).toBe(3);
  });
});

describe('SharedTask', () => {
  it('shares a value while someone uses it and it is young, then starts anew', async () => {
    let started = 0;
    const task = new SharedTask<number>(1000);
    const make = async () => ++started;
    const a = task.acquire(make, 0);
    const b = task.acquire(make, 10);
    expect(await a.value).toBe(1);
    expect(await b.value).toBe(1);
    const old = task.acquire(make, 2000);
    expect(await old.value).toBe(2);
    a.release();
    b.release();
    old.release();
    expect(await task.acquire(make, 2001).value).toBe(3);
  });

  it('does not hand out a failed value', async () => {
    const task = new SharedTask<number>(1000);
    const failed = task.acquire(async () => {
      throw new Error('collect failed');
    });
    await expect(failed.value).rejects.toThrow('collect failed');
    expect(await task.acquire(async () => 7).value).toBe(7);
  });
});

async function writeAll(reader: RenderingReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback): void {
      parts.push(chunk);
      callback();
    },
  });
  const outcome = await writeShared(reader, sink);
  expect(outcome).toBe('complete');
  return Buffer.concat(parts);
}
