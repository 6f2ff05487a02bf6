import { describe, expect, it } from 'vitest';
import { defaultSettings } from '../src/config.js';
import { exporterTimings } from '../src/timings.js';

describe('exporterTimings', () => {
  it('at the defaults (60 s interval, 30 s statement timeout)', () => {
    expect(exporterTimings(defaultSettings())).toEqual({
      otlpExportIntervalMs: 60_000,
      otlpExportTimeoutMs: 30_000,
      leaderQueryTimeoutMs: 5000,
      pollTimeoutMs: 35_000,
      connectTimeoutMs: 5000,
      idleTimeoutMs: 30_000,
    });
  });

  it('a short interval shortens what must fit in it, down to each floor', () => {
    expect(exporterTimings({ intervalMs: 4000, statementTimeoutMs: 30_000 })).toMatchObject({
      otlpExportIntervalMs: 4000,
      otlpExportTimeoutMs: 4000,
      leaderQueryTimeoutMs: 2000,
      idleTimeoutMs: 2000,
    });
    expect(exporterTimings({ intervalMs: 200, statementTimeoutMs: 30_000 })).toMatchObject({ leaderQueryTimeoutMs: 1000, idleTimeoutMs: 500 });
  });

  it('a long interval is capped where waiting longer helps nobody', () => {
    expect(exporterTimings({ intervalMs: 3_600_000, statementTimeoutMs: 30_000 })).toMatchObject({
      otlpExportTimeoutMs: 30_000,
      leaderQueryTimeoutMs: 5000,
      idleTimeoutMs: 30_000,
    });
  });

  it('a short statement timeout shortens the connect timeout; the poll timeout is it plus 5 s', () => {
    expect(exporterTimings({ intervalMs: 60_000, statementTimeoutMs: 2000 })).toMatchObject({ connectTimeoutMs: 2000, pollTimeoutMs: 7000 });
  });
});
