import { describe, expect, it } from 'vitest';
import type { Exemplar } from '../src/format/exemplar.js';
import { ExemplarBytes } from '../src/format/exemplar-bytes.js';

function counting(): { table: ExemplarBytes; encoded: Exemplar[] } {
  const encoded: Exemplar[] = [];
  const table = new ExemplarBytes((exemplar) => {
    encoded.push(exemplar);
    return Buffer.from(` # {} ${exemplar.value}`);
  });
  return { table, encoded };
}

describe('ExemplarBytes: encoded exemplars kept by data point and bucket', () => {
  const boundaries = [1, 10, 100];

  it('encodes an exemplar once while its slot holds the same object, again when it is replaced', () => {
    const { table, encoded } = counting();
    const first = { labels: { agent_id: 'a' }, value: 5 };
    const bytes = table.bytes(3, 1, first, boundaries, 4);
    expect(bytes?.toString()).toBe(' # {} 5');
    expect(table.bytes(3, 1, first, boundaries, 4)).toBe(bytes);
    expect(encoded).toEqual([first]);
    // Another point's slot, and the same bucket of another point, are their own.
    const other = { labels: { agent_id: 'b' }, value: 7 };
    expect(table.bytes(4, 1, other, boundaries, 4)?.toString()).toBe(' # {} 7');
    const replaced = { labels: { agent_id: 'c' }, value: 9 };
    expect(table.bytes(3, 1, replaced, boundaries, 4)?.toString()).toBe(' # {} 9');
    expect(table.bytes(4, 1, other, boundaries, 4)?.toString()).toBe(' # {} 7');
    expect(encoded).toEqual([first, other, replaced]);
  });

  it('leaves out an exemplar outside its bucket, and keeps that answer for the same object', () => {
    const { table, encoded } = counting();
    const outside = { labels: {}, value: 50 };
    expect(table.bytes(0, 1, outside, boundaries, 4)).toBeUndefined();
    expect(table.bytes(0, 1, outside, boundaries, 4)).toBeUndefined();
    expect(encoded).toEqual([]);
    // The bucket bounds: above the previous bound, at most this one; +Inf takes everything above the last.
    expect(table.bytes(0, 0, { labels: {}, value: 1 }, boundaries, 4)).toBeDefined();
    expect(table.bytes(0, 1, { labels: {}, value: 1 }, boundaries, 4)).toBeUndefined();
    expect(table.bytes(0, 3, { labels: {}, value: 1e9 }, boundaries, 4)).toBeDefined();
  });

  it('starts again when the stream has other boundaries, and forgets points past a trim', () => {
    const { table, encoded } = counting();
    const exemplar = { labels: {}, value: 5 };
    const narrower = [1, 2, 100];
    expect(table.bytes(1, 1, exemplar, boundaries, 4)).toBeDefined();
    // Under [1, 2, 100] the value 5 is in bucket 2, not 1: the same object is judged again.
    expect(table.bytes(1, 1, exemplar, narrower, 4)).toBeUndefined();
    expect(table.bytes(1, 2, exemplar, narrower, 4)).toBeDefined();
    expect(table.bytes(1, 2, exemplar, narrower, 4)).toBeDefined();
    expect(encoded).toHaveLength(2);
    table.trim(1);
    expect(table.bytes(1, 2, exemplar, narrower, 4)).toBeDefined();
    expect(encoded).toHaveLength(3);
  });
});
