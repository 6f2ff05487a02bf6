/**
 * The encoded exemplars of one histogram stream, kept between OpenMetrics scrapes by data point position and
 * bucket. An exemplar object is replaced, never changed (see `Exemplar`), so the slot that holds the very same
 * object holds its bytes: a scrape compares pointers and reads neither the exemplar nor a hash table (a map
 * from exemplar to bytes costs a hash lookup and its cache misses per exemplar, which at a hundred thousand
 * series is a large share of a rendering). Whether an exemplar lies in its bucket depends on
 * its value and the stream's boundaries only, so that answer is kept too (as no bytes).
 */

import type { Exemplar } from './exemplar.js';

export class ExemplarBytes {
  readonly #encode: (exemplar: Exemplar) => Buffer;
  #boundaries: readonly number[] | undefined;
  #buckets = 0;
  #exemplars: Array<Exemplar | undefined> = [];
  #bytes: Array<Buffer | undefined> = [];

  /** `encode`: an exemplar's bytes as its bucket line ends with them. */
  constructor(encode: (exemplar: Exemplar) => Buffer) {
    this.#encode = encode;
  }

  /**
   * The bytes of `exemplar`, the one for bucket `bucket` of data point `index` in a stream with these boundaries
   * and `buckets` buckets, or undefined when its value lies outside that bucket (OpenMetrics: left out, never
   * misplaced).
   */
  bytes(index: number, bucket: number, exemplar: Exemplar, boundaries: readonly number[], buckets: number): Buffer | undefined {
    if (boundaries !== this.#boundaries || buckets !== this.#buckets) this.#reset(boundaries, buckets);
    const slot = index * buckets + bucket;
    if (slot < this.#exemplars.length && this.#exemplars[slot] === exemplar) return this.#bytes[slot];
    const upper = bucket < boundaries.length ? (boundaries[bucket] as number) : Infinity;
    const lower = bucket > 0 ? (boundaries[bucket - 1] as number) : -Infinity;
    const bytes = exemplar.value > lower && exemplar.value <= upper ? this.#encode(exemplar) : undefined;
    // Grown by push, so the arrays stay packed (assigning far past the end would make them sparse).
    while (this.#exemplars.length <= slot) {
      this.#exemplars.push(undefined);
      this.#bytes.push(undefined);
    }
    this.#exemplars[slot] = exemplar;
    this.#bytes[slot] = bytes;
    return bytes;
  }

  /** After a rendering of `points` data points: slots past them belong to no series now. */
  trim(points: number): void {
    const slots = points * this.#buckets;
    if (this.#exemplars.length > slots) {
      this.#exemplars.length = slots;
      this.#bytes.length = slots;
    }
  }

  #reset(boundaries: readonly number[], buckets: number): void {
    this.#boundaries = boundaries;
    this.#buckets = buckets;
    this.#exemplars = [];
    this.#bytes = [];
  }
}
