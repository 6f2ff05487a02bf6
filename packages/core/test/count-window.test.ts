import { describe, expect, it } from 'vitest';
import { CountWindow } from '../src/index.js';

const OPTIONS = { overlapMs: 120_000, intervalMs: 60_000 };
const T = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

describe('CountWindow', () => {
  it('backfill all: counts every connection and queries everything until the first watermark', () => {
    const w = CountWindow.start(OPTIONS, undefined);
    expect(w.countFromMs).toBeUndefined();
    expect(w.querySinceMs).toBeUndefined();
    expect(w.isBeforeCountFrom(0)).toBe(false);
    const next = w.afterQuery(T('2026-11-25T12:00:00Z'), T('2026-11-25T12:00:00Z'));
    expect(iso(next.querySinceMs)).toBe('2026-11-25T11:58:00.000Z');
  });

  it('a start bound in the local clock reaches back by the overlap until the offset is known', () => {
    const w = CountWindow.start(OPTIONS, T('2026-11-25T12:00:00Z'));
    expect(w.countFromClock).toBe('local');
    expect(iso(w.querySinceMs)).toBe('2026-11-25T11:58:00.000Z');
  });

  it.each([
    ['ahead by 30 s', 30_000],
    ['behind by 30 s', -30_000],
  ])('moves the start bound onto the source clock when the source is %s', (_label, offsetMs) => {
    const localStart = T('2026-11-25T12:00:00Z');
    const w = CountWindow.start(OPTIONS, localStart).afterQuery(localStart + offsetMs, localStart);
    expect(w.countFromClock).toBe('source');
    expect(w.clockOffsetMs).toBe(offsetMs);
    expect(w.countFromMs).toBe(localStart + offsetMs);
    expect(w.watermarkMs).toBe(localStart + offsetMs);
    expect(w.isBeforeCountFrom((localStart + offsetMs - 1) * 1000)).toBe(true);
    expect(w.isBeforeCountFrom((localStart + offsetMs) * 1000)).toBe(false);
  });

  it('queries from the later of the watermark minus the overlap and the start bound', () => {
    const start = T('2026-11-25T12:00:00Z');
    let w = CountWindow.start(OPTIONS, start).afterQuery(start, start);
    w = w.afterQuery(start + 60_000, start + 60_000);
    // max(12:00 start bound, 12:01 - 2 min)
    expect(iso(w.querySinceMs)).toBe('2026-11-25T12:00:00.000Z');
    w = w.afterQuery(start + 300_000, start + 300_000);
    expect(iso(w.querySinceMs)).toBe('2026-11-25T12:03:00.000Z');
  });

  it('without a source time the watermark is the local tick start and the last offset is kept', () => {
    const start = T('2026-11-25T12:00:00Z');
    let w = CountWindow.start(OPTIONS, start).afterQuery(start + 5_000, start);
    w = w.afterQuery(undefined, start + 60_000);
    expect(w.clockOffsetMs).toBe(5_000);
    expect(w.watermarkMs).toBe(start + 60_000);
    w = w.afterQuery(Number.NaN, start + 120_000);
    expect(w.clockOffsetMs).toBe(5_000);
    expect(w.watermarkMs).toBe(start + 120_000);
  });

  it('a takeover counts from one interval before the last follower tick and forgets the watermark', () => {
    const start = T('2026-11-25T11:00:00Z');
    let w = CountWindow.start(OPTIONS, undefined).followerTick(T('2026-11-25T12:01:00Z'));
    expect(w.takeover() === w).toBe(false);
    w = w.takeover();
    expect(iso(w.countFromMs)).toBe('2026-11-25T12:00:00.000Z');
    expect(w.countFromClock).toBe('local');
    expect(w.watermarkMs).toBeUndefined();
    expect(iso(w.querySinceMs)).toBe('2026-11-25T11:58:00.000Z');
    // A later start bound wins over the takeover bound.
    const late = CountWindow.start(OPTIONS, start + 3 * 3600_000).followerTick(T('2026-11-25T12:01:00Z')).takeover();
    expect(iso(late.countFromMs)).toBe('2026-11-25T14:00:00.000Z');
  });

  it('a takeover converts a source-clock start bound back to the local clock before comparing', () => {
    const localStart = T('2026-11-25T12:00:00Z');
    const w = CountWindow.start(OPTIONS, localStart)
      .afterQuery(localStart + 30_000, localStart) // source 30 s ahead: bound 12:00:30 on the source clock
      .followerTick(localStart + 30_000)
      .takeover();
    // max(12:00:00 local start, 12:00:30 - 1 interval) = 12:00:00 local, 12:00:30 on the source clock.
    expect(w.countFromMs).toBe(localStart);
    expect(w.afterQuery(localStart + 90_000, localStart + 60_000).countFromMs).toBe(localStart + 30_000);
  });

  it('a takeover without a follower tick changes nothing; transitions never mutate', () => {
    const w = CountWindow.start(OPTIONS, T('2026-11-25T12:00:00Z'));
    expect(w.takeover()).toBe(w);
    const after = w.afterQuery(T('2026-11-25T12:00:10Z'), T('2026-11-25T12:00:00Z'));
    expect(w.countFromClock).toBe('local');
    expect(w.watermarkMs).toBeUndefined();
    expect(after.countFromClock).toBe('source');
    w.followerTick(1);
    expect(w.lastFollowerTickMs).toBeUndefined();
  });
});
