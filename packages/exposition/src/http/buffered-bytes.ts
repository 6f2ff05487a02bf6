/**
 * Something that holds chunk bytes for readers and can give some up: a rendering.
 */
export interface ByteHolder {
  /** Drops what it keeps only for readers that may still join; returns the bytes freed. */
  dropKept(): number;
  /** Its reader most worth cutting to free bytes (lagging far behind, or slow), with the bytes only it holds. */
  cuttable(): { readonly cut: () => void; readonly bytes: number; readonly lag: number } | undefined;
}

/**
 * The bytes held for the readers of every response together, and their limit. A rendering asks `reserve()`
 * before it produces a chunk: under the limit it goes on at once; at the limit, first the chunks kept for late
 * joiners go, then the reader that lags furthest (or drains slowest) is cut, and otherwise the rendering waits
 * until readers take bytes. So memory stays bounded whatever the mix of readers, and a fast reader is never
 * held back for long by a slow one sharing its rendering: the slow one goes.
 */
export class BufferedBytes {
  readonly limit: number;
  #held = 0;
  readonly #holders = new Set<ByteHolder>();
  #waiters: Array<() => void> = [];
  /** A cut is under way: its bytes come back when its socket closes; do not cut another meanwhile. */
  #cutting = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  add(holder: ByteHolder, bytes: number): void {
    this.#held += bytes;
    this.#holders.add(holder);
  }

  remove(holder: ByteHolder, bytes: number, holderEmpty: boolean): void {
    this.#held -= bytes;
    if (holderEmpty) this.#holders.delete(holder);
    if (this.#held < this.limit) {
      this.#cutting = false;
      this.#wake();
    }
  }

  /** At the limit: a chunk may not be produced before `reserve()` resolves. */
  get full(): boolean {
    return this.#held >= this.limit;
  }

  /** Resolves once a chunk may be produced (see the class). */
  async reserve(): Promise<void> {
    while (this.#held >= this.limit) {
      if (this.#free()) continue;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Looks again (on a tick): a reader may have become slow enough to cut, and at most one cut goes per tick. */
  recheck(): void {
    this.#cutting = false;
    if (this.#waiters.length > 0) this.#wake();
  }

  /** Frees bytes at once if it can (true); otherwise starts a cut whose bytes come back later (false). */
  #free(): boolean {
    let freed = 0;
    for (const holder of this.#holders) freed += holder.dropKept();
    if (freed > 0) return true;
    if (this.#cutting) return false;
    let best: { readonly cut: () => void; readonly bytes: number; readonly lag: number } | undefined;
    for (const holder of this.#holders) {
      const candidate = holder.cuttable();
      if (candidate === undefined) continue;
      if (best === undefined || candidate.bytes > best.bytes || (candidate.bytes === best.bytes && candidate.lag > best.lag)) best = candidate;
    }
    if (best !== undefined) {
      this.#cutting = true;
      best.cut();
    }
    return false;
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
