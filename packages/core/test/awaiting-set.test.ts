import { describe, expect, it } from 'vitest';
import { AwaitingAgentSet } from '../src/awaiting-set.js';

const entry = (createdMicros: number, timeoutMicros: number | undefined, labelKey = 'a') => ({
  createdMicros,
  timeoutMicros,
  labelKey,
  labels: { template_name: labelKey },
  timeoutHandled: timeoutMicros === undefined,
});

describe('AwaitingAgentSet (the waiting agents a poller holds between reconciliations)', () => {
  it('hands out due timeouts in order, once, skipping agents that left or were handled', () => {
    const set = new AwaitingAgentSet();
    set.add('late', entry(0, 300));
    set.add('early', entry(0, 100));
    set.add('gone', entry(0, 150));
    set.add('never', entry(0, undefined));
    set.add('handled', { ...entry(0, 120), timeoutHandled: true });
    set.delete('gone');
    expect(set.takeDue(200, 10)).toEqual(['early']);
    expect(set.takeDue(200, 10)).toEqual([]);
    set.putBack('early');
    expect(set.takeDue(1000, 1)).toEqual(['early']);
    expect(set.takeDue(1000, 10)).toEqual(['late']);
  });

  it('counts per label set and finds the oldest again when the oldest leaves', () => {
    const set = new AwaitingAgentSet();
    set.add('a1', entry(50, undefined, 'a'));
    set.add('a2', entry(10, undefined, 'a'));
    set.add('a3', entry(30, undefined, 'a'));
    set.add('b1', entry(70, undefined, 'b'));
    set.add('a1', entry(1, undefined, 'a')); // already held: ignored
    expect([...set.groups()]).toEqual([[{ template_name: 'a' }, 3, 10], [{ template_name: 'b' }, 1, 70]]);
    set.delete('a2');
    set.delete('b1');
    expect([...set.groups()]).toEqual([[{ template_name: 'a' }, 2, 30]]);
    expect(set.size).toBe(2);
    set.clear();
    expect([...set.groups()]).toEqual([]);
  });
});
