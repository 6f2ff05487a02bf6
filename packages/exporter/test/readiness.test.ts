import { describe, expect, it } from 'vitest';
import type { FirstConnectionSource, Leadership } from '@agentconn/core';
import { withIsLeader } from '../src/leadership-wrap.js';
import { Readiness } from '../src/readiness.js';

const signal = new AbortController().signal;

describe('Readiness', () => {
  it('is not ready before a success, ready after one, and not ready once it is older than three intervals', async () => {
    let now = 1_000_000;
    const readiness = new Readiness(10_000, () => now);
    let fail = false;
    const source: FirstConnectionSource = {
      listAgents: async () => {
        if (fail) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
        return { agents: [] };
      },
    };
    const watched = readiness.watchSource(source);
    expect(readiness.state()).toMatchObject({ ready: false, reason: 'no successful poll yet' });
    await watched.listAgents({ signal });
    expect(readiness.state().ready).toBe(true);
    fail = true;
    now += 20_000;
    await expect(watched.listAgents({ signal })).rejects.toThrow(/ECONNREFUSED/);
    // One failure within the window: still ready (a poll succeeded within the last few intervals).
    expect(readiness.state().ready).toBe(true);
    now += 10_001;
    expect(readiness.state()).toMatchObject({ ready: false, reason: 'no successful poll for 30 s: connect ECONNREFUSED 127.0.0.1:5432' });
  });

  it('says what it is waiting for, after the reason and its error', async () => {
    let now = 0;
    let waiting: string | undefined = 'the database at db:5432';
    const readiness = new Readiness(1000, () => now, (text) => text, () => waiting);
    readiness.failed(new Error('connecting to db:5432 timed out after 5 s'));
    expect(readiness.state().reason).toBe('no successful poll yet: connecting to db:5432 timed out after 5 s (waiting for the database at db:5432)');
    readiness.ok();
    waiting = 'a poll to succeed';
    expect(readiness.state().reason).toBe('last successful poll 0.0 s ago');
    now += 5000;
    expect(readiness.state().reason).toBe('no successful poll for 5 s (waiting for a poll to succeed)');
  });

  it('shows an error only after scrubbing it', async () => {
    const readiness = new Readiness(1000, () => 0, (text) => text.replaceAll('Sup3rSecret', '***'));
    readiness.failed(new Error('connect to postgres://u:Sup3rSecret@h/db failed'));
    expect(readiness.state().reason).toBe('no successful poll yet: connect to postgres://u:***@h/db failed');
  });

  it('counts a follower whose lock check succeeds as ready, and a failed lock check as a failure', async () => {
    const now = 0;
    const readiness = new Readiness(1000, () => now);
    let answer: boolean | Error = false;
    const leadership: Leadership = {
      isLeader: async () => {
        if (answer instanceof Error) throw answer;
        return answer;
      },
    };
    const watched = readiness.watchLeadership(leadership);
    answer = new Error('leader lock check failed: timeout');
    await expect(watched.isLeader(signal)).rejects.toThrow();
    expect(readiness.state()).toMatchObject({ ready: false, lastError: 'leader lock check failed: timeout' });
    answer = true; // a leader is ready only once its poll succeeds
    await watched.isLeader(signal);
    expect(readiness.state().ready).toBe(false);
    answer = false;
    await watched.isLeader(signal);
    expect(readiness.state().ready).toBe(true);
  });
});

describe('withIsLeader', () => {
  it('replaces the check and passes whether it is held, the takeover and the published progress through', async () => {
    const published: number[] = [];
    let held = true;
    const lock: Leadership = {
      isLeader: async () => true,
      get held() {
        return held;
      },
      takeover: () => ({ kind: 'resume', fromMs: 42 }),
      publishProgress: async (watermarkMs) => void published.push(watermarkMs),
    };
    const wrapped = withIsLeader(lock, async () => false);
    expect(await wrapped.isLeader(signal)).toBe(false);
    expect(wrapped.held).toBe(true);
    held = false;
    expect(wrapped.held).toBe(false);
    expect(wrapped.takeover?.()).toEqual({ kind: 'resume', fromMs: 42 });
    await wrapped.publishProgress?.(7, signal);
    expect(published).toEqual([7]);
    // What the lock does not offer, the wrapper does not either (the poller then uses its defaults).
    const bare = withIsLeader({ isLeader: async () => true }, async () => true);
    expect(bare.takeover).toBeUndefined();
    expect(bare.publishProgress).toBeUndefined();
    expect(bare.held).toBe(true);
  });
});
