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

/** The parser this module used before (a regular expression and Date.UTC), the oracle for the one without. */
const OLD_TEXT_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)$/;
function oldToEpochMicros(value: string): number | undefined {
  const match = OLD_TEXT_TIMESTAMP.exec(value.trim());
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s, fraction = '', zone = 'Z'] = match;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 24 || minute > 59 || second > 60) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return undefined;
  const micros = Number((fraction + '000000').slice(0, 6));
  let offset = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const digits = zone.slice(1).replaceAll(':', '');
    offset = (zone.startsWith('-') ? -1 : 1) * (Number(digits.slice(0, 2)) * 3600 + Number(digits.slice(2, 4) || '0') * 60 + Number(digits.slice(4, 6) || '0'));
  }
  return ms * 1000 + micros - offset * 1_000_000;
}

describe('toEpochMicros without a regular expression', () => {
  it('agrees with the regular-expression parser on 20 000 generated texts, valid and broken (years from 100 on)', () => {
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const pad = (n: number, width: number): string => String(n).padStart(width, '0');
    const pieces = ['', '.', ',', '.1', '.123456', '.1234567', '.123456789', '.1234567890', ' ', '\t', 'x'];
    const zones = ['Z', 'z', '+00', '-03:30', '+0545', '+05:45:30', '-054530', '+5', '+05:', '+05:3', 'UTC', '', ' Z', '+05:45:3', '+05:45:30:00'];
    let compared = 0;
    for (let n = 0; n < 20_000; n++) {
      const year = 100 + random(9900);
      const text =
        `${pad(year, 4)}-${pad(random(14), 2)}-${pad(random(33), 2)}${random(5) === 0 ? ' ' : 'T'}` +
        `${pad(random(26), 2)}:${pad(random(61), 2)}:${pad(random(62), 2)}` +
        `${pieces[random(pieces.length)]}${zones[random(zones.length)]}${random(20) === 0 ? ' ' : ''}`;
      const mutated = random(10) === 0 ? text.slice(0, random(text.length)) + String.fromCharCode(32 + random(90)) + text.slice(random(text.length)) : text;
      expect(toEpochMicros(mutated), mutated).toBe(oldToEpochMicros(mutated));
      compared++;
    }
    expect(compared).toBe(20_000);
  });

  it.each([
    ['2026-12-31T23:59:59.999999Z', Date.UTC(2026, 11, 31, 23, 59, 59) * 1000 + 999_999],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29) * 1000],
    ['2000-02-29T12:00:00+12', Date.UTC(2000, 1, 29) * 1000],
    ['9999-12-31T23:59:59.999999Z', Date.UTC(9999, 11, 31, 23, 59, 59) * 1000 + 999_999],
    ['  2026-11-25T10:00:00Z\n', Date.UTC(2026, 10, 25, 10) * 1000],
    ['2026-11-25T10:00:00.5 Z', Date.UTC(2026, 10, 25, 10) * 1000 + 500_000],
  ])('%j', (text, expected) => {
    expect(toEpochMicros(text)).toBe(expected);
  });

  it('reads years before 100 as themselves (Date.UTC would have made 0050 into 1950)', () => {
    const year50 = new Date(0);
    year50.setUTCFullYear(50, 0, 1);
    expect(toEpochMicros('0050-01-01T00:00:00Z')).toBe(year50.getTime() * 1000);
    const year1 = new Date(0);
    year1.setUTCFullYear(1, 0, 1);
    expect(toEpochMicros('0001-01-01T00:00:00.000001Z')).toBe(year1.getTime() * 1000 + 1);
  });

  it.each(['2100-02-29T00:00:00Z', '2026-04-31T00:00:00Z', '2026-11-25T24:00:00Z', '2026-12-31T23:59:60Z', '2026-11-25T10:00:00.Z', '2026-11-25T10:00:00.1234567890Z', '２026-11-25T10:00:00Z'])(
    'rejects %j',
    (text) => {
      expect(toEpochMicros(text)).toBeUndefined();
    },
  );
});
