/**
 * The MAP/UNMAP paths check u64 fields as u32 halves: each helper against the BigInt expression the
 * kernel's check is written in, over edge values (0, 1, page multiples, 2^32 ± 1, 2^53, 2^64 - 1).
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { alignedTo, endWraps, toNumber } from '../../src/vfio/type1-u64.ts';

const U64_MAX = (1n << 64n) - 1n;
const edges = [
  0n,
  1n,
  0xfffn,
  0x1000n,
  0xffff_ffffn,
  1n << 32n,
  (1n << 32n) + 0x1000n,
  1n << 53n,
  U64_MAX - 0xfffn,
  U64_MAX,
];
const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.constantFrom(...edges),
  fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }).map((x) => x << 12n),
);
const lo = (x: bigint): number => Number(x & 0xffff_ffffn);
const hi = (x: bigint): number => Number(x >> 32n);

describe('u64 halves', () => {
  it('endWraps(a, s) is a + s - 1 > U64_MAX (false for s = 0)', () => {
    fc.assert(
      fc.property(u64, u64, (a, s) => {
        expect(endWraps(lo(a), hi(a), lo(s), hi(s))).toBe(s !== 0n && a + s - 1n > U64_MAX);
      }),
      { numRuns: 2000 },
    );
  });

  it('alignedTo(x, k) is x % 2^k == 0', () => {
    fc.assert(
      fc.property(u64, fc.integer({ min: 0, max: 63 }), (x, k) => {
        expect(alignedTo(lo(x), hi(x), k)).toBe(x % (1n << BigInt(k)) === 0n);
      }),
      { numRuns: 2000 },
    );
  });

  it('toNumber is exact for page-aligned values, also above 2^53', () => {
    fc.assert(
      fc.property(u64, (x) => {
        const aligned = x & ~0xfffn;
        expect(BigInt(toNumber(lo(aligned), hi(aligned)))).toBe(aligned);
      }),
      { numRuns: 2000 },
    );
  });
});
