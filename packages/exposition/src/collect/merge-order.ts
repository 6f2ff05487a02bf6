/**
 * The order of the entries of one collection when some entries kept from earlier collections are missing from
 * it. The SDK lists scopes and metric streams in the order they were registered, and leaves out whatever has
 * nothing to report; a stream collected as deltas has nothing to report whenever it did not change, yet its
 * cumulative series must still be written where a cumulative collection would have put them.
 *
 * `current` is this collection's order and is kept as it is. Every entry of `known` (the previous result) that
 * is missing from `current` and still `kept` goes right after the entry that preceded it in `known` and is in
 * `current` (or first, when none did). An entry that appears for the first time in the same gap goes after
 * those: the SDK does not say where it was registered relative to a missing one, so until both appear in one
 * collection (and `current` gives their real order) the kept entry keeps its earlier neighbour.
 */
export function mergeOrder<K>(known: readonly K[], current: readonly K[], kept: (key: K) => boolean): K[] {
  if (known.length === 0) return current.slice();
  const inCurrent = new Set(current);
  const first: K[] = [];
  const after = new Map<K, K[]>();
  let anchor: K | undefined;
  let anchored = false;
  for (const key of known) {
    if (inCurrent.has(key)) {
      anchor = key;
      anchored = true;
    } else if (kept(key)) {
      if (!anchored) first.push(key);
      else {
        const list = after.get(anchor as K);
        if (list === undefined) after.set(anchor as K, [key]);
        else list.push(key);
      }
    }
  }
  if (first.length === 0 && after.size === 0) return current.slice();
  const result = first;
  for (const key of current) {
    result.push(key);
    const list = after.get(key);
    if (list !== undefined) result.push(...list);
  }
  return result;
}
