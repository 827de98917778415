/** A __u64 field as a caller may give it: a number (exact below 2^53) or a bigint. */
export type U64 = number | bigint;

/**
 * __ffs of a u64 held as a bigint: the index of the lowest set bit among bits 0..63 (exact above
 * 2^53; bit 63 gives 63). 0 when none of them is set, 0 itself included: the kernel's __ffs(0) is
 * undefined, so a caller for whom 0 differs from bit 0 tests for it first.
 */
export function lowestBit(v: bigint): number {
  for (let i = 0; i < 64; i++) if ((v >> BigInt(i)) & 1n) return i;
  return 0;
}
