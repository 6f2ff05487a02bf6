/**
 * The agents that wait for their first connection, held in memory between full reconciliations so that
 * a tick costs the agents that changed, not all the waiting ones: per label set a count and the oldest
 * creation, and a min-heap of the timeouts not yet counted. Pure: no I/O, no clock.
 */

export interface WaitingEntry {
  readonly createdMicros: number;
  /** Epoch µs of the agent's timeout, or undefined when it never times out. */
  readonly timeoutMicros: number | undefined;
  /** Key of the agent's label set (the configured labels). */
  readonly labelKey: string;
  /** The configured labels themselves, the same for every agent of a label set. */
  readonly labels: Readonly<Record<string, string>>;
  /** Set once its timeout is handled (counted, or before the backfill bound): never a candidate again. */
  timeoutHandled: boolean;
}

interface LabelSetState {
  readonly labels: Readonly<Record<string, string>>;
  count: number;
  /** Smallest createdMicros of the set, or undefined when it must be recomputed. */
  oldestMicros: number | undefined;
  readonly members: Map<string, number>;
}

export class AwaitingAgentSet {
  readonly #entries = new Map<string, WaitingEntry>();
  readonly #byLabelSet = new Map<string, LabelSetState>();
  /** [timeoutMicros, agentId], smallest first; entries removed from the set are skipped lazily. */
  #heap: [number, string][] = [];

  get size(): number {
    return this.#entries.size;
  }

  get(agentId: string): WaitingEntry | undefined {
    return this.#entries.get(agentId);
  }

  /** Adds an agent unless it is already held. */
  add(agentId: string, entry: WaitingEntry): void {
    if (this.#entries.has(agentId)) return;
    this.#entries.set(agentId, entry);
    let state = this.#byLabelSet.get(entry.labelKey);
    if (state === undefined) {
      state = { labels: entry.labels, count: 0, oldestMicros: undefined, members: new Map() };
      this.#byLabelSet.set(entry.labelKey, state);
    }
    state.members.set(agentId, entry.createdMicros);
    state.count++;
    if (state.oldestMicros !== undefined && entry.createdMicros < state.oldestMicros) state.oldestMicros = entry.createdMicros;
    if (state.count === 1) state.oldestMicros = entry.createdMicros;
    if (entry.timeoutMicros !== undefined && !entry.timeoutHandled) this.#push([entry.timeoutMicros, agentId]);
    if (this.#heap.length > 2 * this.#entries.size + 1024) this.#rebuildHeap();
  }

  delete(agentId: string): void {
    const entry = this.#entries.get(agentId);
    if (entry === undefined) return;
    this.#entries.delete(agentId);
    const state = this.#byLabelSet.get(entry.labelKey);
    if (state === undefined) return;
    state.members.delete(agentId);
    state.count--;
    if (state.count === 0) this.#byLabelSet.delete(entry.labelKey);
    else if (state.oldestMicros === entry.createdMicros) state.oldestMicros = undefined;
  }

  /** Every held agent id (for a reconciliation's difference). */
  ids(): IterableIterator<string> {
    return this.#entries.keys();
  }

  clear(): void {
    this.#entries.clear();
    this.#byLabelSet.clear();
    this.#heap = [];
  }

  /** Takes out the ids whose timeout is at or before `untilMicros` and not yet handled. */
  takeDue(untilMicros: number, limit: number): string[] {
    const due: string[] = [];
    while (this.#heap.length > 0 && due.length < limit) {
      const top = this.#heap[0]!;
      if (top[0] > untilMicros) break;
      this.#pop();
      const entry = this.#entries.get(top[1]);
      if (entry === undefined || entry.timeoutHandled || entry.timeoutMicros !== top[0]) continue;
      due.push(top[1]);
    }
    return due;
  }

  /** Puts a candidate back that was not due yet after all. */
  putBack(agentId: string): void {
    const entry = this.#entries.get(agentId);
    if (entry?.timeoutMicros !== undefined && !entry.timeoutHandled) this.#push([entry.timeoutMicros, agentId]);
  }

  /** Per label set with waiting agents: its labels, how many wait and the earliest creation (epoch µs). */
  *groups(): IterableIterator<[labels: Readonly<Record<string, string>>, count: number, oldestCreatedMicros: number]> {
    for (const state of this.#byLabelSet.values()) {
      if (state.oldestMicros === undefined) {
        let oldest = Number.POSITIVE_INFINITY;
        for (const micros of state.members.values()) if (micros < oldest) oldest = micros;
        state.oldestMicros = oldest;
      }
      yield [state.labels, state.count, state.oldestMicros];
    }
  }

  #rebuildHeap(): void {
    const live: [number, string][] = [];
    for (const [id, entry] of this.#entries) {
      if (entry.timeoutMicros !== undefined && !entry.timeoutHandled) live.push([entry.timeoutMicros, id]);
    }
    live.sort((a, b) => a[0] - b[0]);
    this.#heap = live;
  }

  #push(item: [number, string]): void {
    const heap = this.#heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]![0] <= heap[i]![0]) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < heap.length && heap[l]![0] < heap[smallest]![0]) smallest = l;
      if (r < heap.length && heap[r]![0] < heap[smallest]![0]) smallest = r;
      if (smallest === i) return;
      [heap[smallest], heap[i]] = [heap[i]!, heap[smallest]!];
      i = smallest;
    }
  }
}
