/**
 * A rendering's bytes as a pull source: one chunk per call, `undefined` at the end. May throw or reject. What a
 * serializer's chunks become once collecting (and compressing) makes them asynchronous.
 */
export interface ChunkSource {
  next(): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** Stops early (every reader left): frees what the source holds. */
  close(): void;
}
