/** A small seeded PRNG (sfc32, seeded through splitmix32): the generator's data depends only on its seed. */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform 32-bit unsigned integer. */
  uint32(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** A random (version 4 layout) UUID. */
  uuid(): string;
}

export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  const splitmix = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix();
  let b = splitmix();
  let c = splitmix();
  let d = splitmix();
  const uint32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) uint32();
  const next = (): number => uint32() / 4294967296;
  return {
    next,
    uint32,
    int: (n) => Math.floor(next() * n),
    chance: (p) => p > 0 && next() < p,
    uuid: () => {
      const a0 = uint32();
      const a1 = (uint32() & 0xffff0fff) | 0x00004000;
      const a2 = ((uint32() & 0x3fffffff) | 0x80000000) >>> 0;
      const a3 = uint32();
      return `${hex8(a0)}-${hex4(a1 >>> 16)}-${hex4(a1 & 0xffff)}-${hex4(a2 >>> 16)}-${hex4(a2 & 0xffff)}${hex8(a3)}`;
    },
  };
}

/** Two hex digits per byte, so a UUID costs 16 lookups instead of number formatting. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hex4(n: number): string {
  return HEX[(n >>> 8) & 0xff]! + HEX[n & 0xff]!;
}

function hex8(n: number): string {
  return hex4(n >>> 16) + hex4(n & 0xffff);
}
