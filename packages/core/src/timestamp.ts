/**
 * Timestamps with microsecond precision. PostgreSQL keeps µs; a JS Date keeps ms, which moves a sample
 * 1 µs above a bucket bound into the wrong bucket. Epoch microseconds fit a double exactly until 2255.
 */

/** A point in time: a Date (ms precision), or text in ISO 8601 / PostgreSQL form with an offset, up to µs. */
export type Instant = Date | string;

const TEXT_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)$/;

/** Epoch microseconds of an instant, or `undefined` when it is not a valid point in time. */
export function toEpochMicros(value: Instant): number | undefined {
  if (value instanceof Date) {
    const ms = value.getTime();
    return Number.isFinite(ms) ? ms * 1000 : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const match = TEXT_TIMESTAMP.exec(value.trim());
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s, fraction = '', zone = 'Z'] = match;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 24 || minute > 59 || second > 60) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  // Date.UTC rolls 31 February over into March; a real timestamp never needs that.
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return undefined;
  const micros = Number((fraction + '000000').slice(0, 6));
  return ms * 1000 + micros - zoneOffsetSeconds(zone) * 1_000_000;
}

function zoneOffsetSeconds(zone: string): number {
  if (zone === 'Z' || zone === 'z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replaceAll(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = Number(digits.slice(2, 4) || '0');
  const seconds = Number(digits.slice(4, 6) || '0');
  return sign * (hours * 3600 + minutes * 60 + seconds);
}

/** `first - created` in seconds, exact to the microsecond. */
export function durationSeconds(createdAtMicros: number, firstConnectedAtMicros: number): number {
  return (firstConnectedAtMicros - createdAtMicros) / 1_000_000;
}

/** RFC 3339 text of epoch microseconds, keeping all six fraction digits (for logs). */
export function formatEpochMicros(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const rest = micros - ms * 1000;
  const iso = new Date(ms).toISOString(); // 2026-11-25T10:57:41.123Z
  return `${iso.slice(0, -1)}${String(rest).padStart(3, '0')}Z`;
}
