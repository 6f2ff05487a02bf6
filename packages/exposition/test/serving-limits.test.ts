import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { BufferedBytes, type ByteHolder } from '../src/http/buffered-bytes.js';
import { ConnectionTurns } from '../src/http/connection-turns.js';
import { DRAIN_WINDOW_MILLIS, DrainMeter } from '../src/http/drain-meter.js';
import { MAX_WAITING_PER_CONNECTION, MIN_DRAIN_BYTES_PER_SECOND } from '../src/http/serving-limits.js';

describe('ConnectionTurns', () => {
  it('gives a connection one turn at a time, in order, refuses past the waiting limit, and frees its waiters on close', async () => {
    const turns = new ConnectionTurns();
    const connection = new EventEmitter();
    const other = new EventEmitter();
    expect(turns.take(connection)).toBe(true);
    // Another connection is not held up.
    expect(turns.take(other)).toBe(true);
    const waiting = Array.from({ length: MAX_WAITING_PER_CONNECTION }, () => turns.take(connection));
    expect(waiting.every((w) => w instanceof Promise)).toBe(true);
    expect(turns.take(connection)).toBe(false);
    const order: number[] = [];
    waiting.forEach((w, i) => void (w as Promise<boolean>).then((go) => go && order.push(i)));
    turns.done(connection);
    await Promise.resolve();
    expect(order).toEqual([0]);
    turns.done(connection);
    await Promise.resolve();
    expect(order).toEqual([0, 1]);
    connection.emit('close');
    expect(await Promise.all(waiting.slice(2))).toEqual(waiting.slice(2).map(() => false));
    // Once its turns are done, the connection takes the next one at once.
    turns.done(other);
    expect(turns.take(other)).toBe(true);
  });
});

describe('DrainMeter', () => {
  it('measures a rate only over a window in which bytes waited throughout, from when they started to wait', () => {
    const meter = new DrainMeter(0);
    // The kernel buffers take megabytes at once before anything waits: not part of any window.
    meter.took(8 * 1024 * 1024, 10);
    meter.sample(250, true);
    meter.took(1000, 400);
    meter.sample(500, true);
    meter.sample(750, true);
    expect(meter.rate).toBeUndefined();
    meter.sample(250 + DRAIN_WINDOW_MILLIS, true);
    expect(meter.rate).toBe(1000);
    expect(meter.slow).toBe(true);
    expect(meter.stalledFor(250 + DRAIN_WINDOW_MILLIS)).toBe(DRAIN_WINDOW_MILLIS - 150);
    // Waiting for its own rendering is not the reader's slowness.
    meter.sample(1500, false);
    expect(meter.slow).toBe(false);
    expect(meter.stalledFor(1500)).toBe(0);
    meter.sample(1750, true);
    meter.took(MIN_DRAIN_BYTES_PER_SECOND * 2, 2000);
    meter.sample(1750 + DRAIN_WINDOW_MILLIS, true);
    expect(meter.slow).toBe(false);
  });
});

describe('BufferedBytes', () => {
  it('at the limit drops kept chunks first, then cuts one reader per look, else waits until bytes come back', async () => {
    const budget = new BufferedBytes(100);
    let kept = 30;
    const cuts: string[] = [];
    const holder = (name: string, bytes: number): ByteHolder => ({
      dropKept: () => {
        const freed = name === 'a' ? kept : 0;
        if (freed > 0) {
          kept = 0;
          budget.remove(holders.a, freed, false);
        }
        return freed;
      },
      cuttable: () => ({ cut: () => cuts.push(name), bytes, lag: bytes }),
    });
    const holders = { a: holder('a', 10), b: holder('b', 40) };
    budget.add(holders.a, 60);
    budget.add(holders.b, 50);
    let reserved = false;
    const reserving = budget.reserve().then(() => (reserved = true));
    await Promise.resolve();
    // 110 held: the 30 kept bytes go, 80 is under the limit.
    expect(reserved).toBe(true);
    await reserving;
    budget.add(holders.b, 40);
    reserved = false;
    const next = budget.reserve().then(() => (reserved = true));
    await Promise.resolve();
    // Nothing kept any more: the holder whose reader frees most is cut, and the rendering waits for the bytes.
    expect(cuts).toEqual(['b']);
    expect(reserved).toBe(false);
    budget.recheck();
    await Promise.resolve();
    expect(cuts).toEqual(['b', 'b']);
    budget.remove(holders.b, 40, false);
    await next;
    expect(reserved).toBe(true);
  });
});
