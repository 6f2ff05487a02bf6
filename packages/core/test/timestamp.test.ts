import { describe, expect, it } from 'vitest';
import { formatEpochMicros, toEpochMicros } from '../src/index.js';

describe('toEpochMicros', () => {
  const base = Date.UTC(2026, 10, 25, 10, 0, 0) * 1000;
  it.each([
    ['2026-11-25T10:00:00Z', base],
    ['2026-11-25 10:00:00+00', base],
    ['2026-11-25 10:00:00.000001+00', base + 1],
    ['2026-11-25T10:00:00.123456Z', base + 123_456],
    ['2026-11-25T10:00:00.1234569Z', base + 123_456],
    ['2026-11-25 06:30:00.5-03:30', base + 500_000],
    ['2026-11-25 15:45:00+05:45', base],
    ['2026-11-25 10:00:00+0000', base],
    ['1901-12-13 20:45:52+00', Date.UTC(1901, 11, 13, 20, 45, 52) * 1000],
  ])('%s', (text, expected) => {
    expect(toEpochMicros(text)).toBe(expected);
  });

  it.each(['', 'infinity', '-infinity', '2026-11-25', '2026-11-25T10:00:00', '2026-13-01T00:00:00Z', '2026-02-29T00:00:00Z', 'x2026-11-25T10:00:00Z'])(
    'rejects %j',
    (text) => {
      expect(toEpochMicros(text)).toBeUndefined();
    },
  );

  it('takes Dates at millisecond precision and rejects invalid ones', () => {
    expect(toEpochMicros(new Date(base / 1000 + 7))).toBe(base + 7000);
    expect(toEpochMicros(new Date(Number.NaN))).toBeUndefined();
  });

  it('formats back with six fraction digits', () => {
    expect(formatEpochMicros(base + 1)).toBe('2026-11-25T10:00:00.000001Z');
    expect(formatEpochMicros(base - 1)).toBe('2026-11-25T09:59:59.999999Z');
  });
});
