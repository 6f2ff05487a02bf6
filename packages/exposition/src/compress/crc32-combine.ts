/**
 * CRC-32 of two concatenated byte strings from their CRCs and the second one's length (zlib's crc32_combine,
 * by multiplication modulo the CRC polynomial), so that segments compressed apart and in any order still give
 * the gzip trailer its CRC without reading the bytes again.
 */

const POLY = 0xedb88320;

/** a(x) · b(x) modulo p(x), reflected bit order as zlib. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo p(x), k = 0..31. */
const X2N: readonly number[] = (() => {
  const table: number[] = [];
  let p = 1 << 30; // x^1
  table.push(p >>> 0);
  for (let n = 1; n < 32; n++) {
    p = multModP(p, p);
    table.push(p);
  }
  return table;
})();

/** x^(n · 2^k) modulo p(x). */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31] ?? 0, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

export function crc32Combine(crc1: number, crc2: number, length2: number): number {
  return (multModP(x2nModP(length2, 3), crc1 >>> 0) ^ (crc2 >>> 0)) >>> 0;
}
