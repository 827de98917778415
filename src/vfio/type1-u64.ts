/**
 * Exact u64 checks on (lo, hi) u32 halves, for the MAP/UNMAP paths: the kernel's overflow and
 * alignment tests without BigInt. Each half is an integer in [0, 2^32); every intermediate value
 * below stays under 2^34, so double arithmetic is exact.
 *
 * A u64 that passed the page-alignment check has its low 12 bits clear and at most 52 significant
 * bits, so `toNumber` is exact for it (also above 2^53), and so is any sum of two such values.
 */

const TWO_32 = 4294967296;

/** The value of (lo, hi) as a number; exact when the value is a multiple of 2^11 or below 2^53. */
export function toNumber(lo: number, hi: number): number {
  return hi * TWO_32 + lo;
}

/** Whether a + s - 1 exceeds U64_MAX (`check_add_overflow(a, s - 1)`); false when s = 0. */
export function endWraps(aLo: number, aHi: number, sLo: number, sHi: number): boolean {
  if (sLo === 0 && sHi === 0) return false;
  // s - 1 as halves (s >= 1).
  let tLo = sLo - 1;
  let tHi = sHi;
  if (tLo < 0) {
    tLo += TWO_32;
    tHi -= 1;
  }
  const lo = aLo + tLo;
  const hi = aHi + tHi + (lo >= TWO_32 ? 1 : 0);
  return hi >= TWO_32;
}

/** Whether the u64 (lo, hi) is a multiple of 2^lg2 (0 <= lg2 <= 63). */
export function alignedTo(lo: number, hi: number, lg2: number): boolean {
  if (lg2 <= 31) return (lo & ((1 << lg2) - 1)) === 0;
  if (lo !== 0) return false;
  return lg2 === 32 || (hi & (2 ** (lg2 - 32) - 1)) === 0;
}
