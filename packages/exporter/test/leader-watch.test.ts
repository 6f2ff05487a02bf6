import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { Leadership } from '@agentconn/core';
import { createMemoryLogger } from '@agentconn/test-support/memory-logger';
import { describe, expect, it } from 'vitest';
import { describeLeader, identityComment, parseIdentity, type LeaderInfo } from '../src/leader-identity.js';
import { LeaderWatch } from '../src/leader-watch.js';

const signal = new AbortController().signal;
const identity = { host: 'exporter-0', pid: 7, labels: ['template_name', 'agent_name'], version: '0.1.0', intervalMs: 1000 };

function leaderInfo(overrides: Partial<LeaderInfo> = {}): LeaderInfo {
  return {
    instance: 'a1b2c3d4e5f6',
    applicationName: 'agentconn-leader a1b2c3d4e5f6 1765000000000',
    backendPid: 4711,
    clientAddr: '10.0.0.5',
    identity,
    publishedPollMs: 1_765_000_000_000,
    publishedPollAgeMs: 500,
    ...overrides,
  };
}

describe('the leader identity', () => {
  it('rides in a comment a follower reads back, and a */ in it cannot end the comment', () => {
    const comment = identityComment({ ...identity, host: 'a*/b' });
    expect(comment.match(/\*\//g)).toHaveLength(1);
    expect(parseIdentity(`${comment}SELECT 1`)).toEqual({ ...identity, host: 'a*/b' });
    expect(parseIdentity('<insufficient privilege>')).toBeUndefined();
    expect(parseIdentity(null)).toBeUndefined();
  });

  it('is described by host, pid, application_name and backend pid', () => {
    expect(describeLeader(leaderInfo())).toBe('host exporter-0 pid 7 (application_name "agentconn-leader a1b2c3d4e5f6 1765000000000", backend pid 4711)');
    expect(describeLeader(leaderInfo({ identity: undefined }))).toBe(
      'a process from 10.0.0.5 (application_name "agentconn-leader a1b2c3d4e5f6 1765000000000", backend pid 4711)',
    );
  });
});

describe('LeaderWatch', () => {
  function watch(labels: readonly string[]) {
    const logger = createMemoryLogger();
    let current: LeaderInfo | undefined = leaderInfo();
    let leads = false;
    const lock = { instance: 'ffffffffffff', get leader() { return current; } };
    const leadership: Leadership = { isLeader: async () => leads };
    const meterProvider = new MeterProvider();
    const watcher = new LeaderWatch({ lock, logger, labels, intervalMs: 1000, meter: meterProvider.getMeter('t') });
    return {
      logger,
      watched: watcher.wrap(leadership),
      watcher,
      set: (next: LeaderInfo | undefined, leading = false) => {
        current = next;
        leads = leading;
      },
    };
  }

  it('logs who leads once per leader, warns once about other labels, and again only for a new leader', async () => {
    const { logger, watched, set } = watch(['template_name', 'agent_name', 'username']);
    await watched.isLeader(signal);
    await watched.isLeader(signal);
    const following = logger.records.filter((r) => r.message.startsWith('following; leader is'));
    expect(following.map((r) => r.message)).toEqual([
      'following; leader is host exporter-0 pid 7 (application_name "agentconn-leader a1b2c3d4e5f6 1765000000000", backend pid 4711), labels template_name,agent_name, last published poll 2025-12-06T05:46:40.000Z (1 s ago)',
    ]);
    expect(logger.records.filter((r) => r.level === 'warn').map((r) => r.message)).toEqual([
      'the leader exports the labels template_name,agent_name and this replica template_name,agent_name,username: on failover the series change labels',
    ]);
    set(leaderInfo({ instance: '0123456789ab', backendPid: 99, identity: { ...identity, pid: 8 } }));
    await watched.isLeader(signal);
    expect(logger.records.filter((r) => r.message.startsWith('following; leader is host exporter-0 pid 8 '))).toHaveLength(1);
    expect(logger.records.filter((r) => r.level === 'warn')).toHaveLength(2);
  });

  it('warns when the published poll is older than three of the leader\'s intervals, and describes itself while it leads', async () => {
    const { logger, watched, watcher, set } = watch(['template_name', 'agent_name']);
    set(leaderInfo({ publishedPollAgeMs: 3500 }));
    await watched.isLeader(signal);
    expect(logger.records.filter((r) => r.level === 'warn').map((r) => r.message)).toEqual([
      'the leader holds the lock but its last published poll is 2025-12-06T05:46:40.000Z (4 s ago): it is not polling',
    ]);
    set(undefined, true);
    await watched.isLeader(signal);
    expect(watcher.describe()).toBe('this process');
  });
});
