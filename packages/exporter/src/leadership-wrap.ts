import type { Leadership } from '@agentconn/core';

/**
 * `leadership` with its check replaced by `isLeader` (which calls the original one around what it adds); whether
 * the lock is still held, the takeover and the published progress pass through untouched, as the poller needs them.
 */
export function withIsLeader(leadership: Leadership, isLeader: Leadership['isLeader']): Leadership {
  return {
    isLeader,
    get held() {
      return leadership.held !== false;
    },
    ...(leadership.takeover !== undefined && { takeover: () => leadership.takeover!() }),
    ...(leadership.publishProgress !== undefined && {
      publishProgress: (watermarkMs: number, signal: AbortSignal) => leadership.publishProgress!(watermarkMs, signal),
    }),
  };
}
