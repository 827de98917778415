import { describe, expect, it } from 'vitest';
import {
  blockAllowed,
  concatenatedTables,
  GRANULE_4K,
  GRANULE_16K,
  GRANULE_64K,
  levelShift,
  lpaeGeometry,
  paSizeBits,
  paSizeEncoding,
  pgsizeBitmap,
  s2InconsistentSl,
  s2InvalidSl0,
  s2Sl0ForStartLevel,
  s2StartLevel,
  startLevelForInput,
  startTableBits,
  tg0ToGranule,
  tg1ToGranule,
} from '../../src/pgtable/index.ts';

describe('level shifts', () => {
  // Reference nested-iommu.md §1.1 table: L0..L3 shifts per granule.
  it.each([
    [GRANULE_4K, [39, 30, 21, 12]],
    [GRANULE_16K, [47, 36, 25, 14]],
    [GRANULE_64K, [55, 42, 29, 16]],
  ])('granule 2^%i', (g, shifts) => {
    expect([0, 1, 2, 3].map((l) => levelShift(g, l))).toEqual(shifts);
  });
});

describe('stage-1 start level from T0SZ (reference §1.2)', () => {
  // Every row of the §1.2 table: granule, IS, start level, start-table entries.
  it.each([
    [GRANULE_4K, 48, 0, 512],
    [GRANULE_4K, 40, 0, 2],
    [GRANULE_4K, 39, 1, 512],
    [GRANULE_4K, 32, 1, 4],
    [GRANULE_16K, 48, 0, 2],
    [GRANULE_16K, 47, 1, 2048],
    [GRANULE_64K, 48, 1, 64],
    [GRANULE_64K, 42, 2, 8192],
  ])('granule 2^%i IS %i -> level %i with %i entries', (g, is, level, entries) => {
    expect(startLevelForInput(g, is)).toBe(level);
    expect(2 ** startTableBits(g, level, is)).toBe(entries);
    // Stage 1 never concatenates.
    expect(concatenatedTables(g, level, is)).toBe(1);
  });
});

describe('stage-2 start level and concatenation (reference §1.3)', () => {
  it('S2SL0 encodings per granule (§1.3 table)', () => {
    expect([0, 1, 2].map((sl0) => s2StartLevel(GRANULE_4K, sl0))).toEqual([2, 1, 0]);
    expect([0, 1, 2].map((sl0) => s2StartLevel(GRANULE_16K, sl0))).toEqual([3, 2, 1]);
    expect([0, 1, 2].map((sl0) => s2StartLevel(GRANULE_64K, sl0))).toEqual([3, 2, 1]);
    for (const g of [GRANULE_4K, GRANULE_16K, GRANULE_64K]) {
      for (const sl0 of [0, 1, 2]) expect(s2Sl0ForStartLevel(g, s2StartLevel(g, sl0))).toBe(sl0);
      // 0b11 is reserved without FEAT_TTST / LPA2 (§1.3: QEMU C_BAD_STE).
      expect(s2InvalidSl0(g, 3, 48)).toBe(true);
    }
  });

  it('S2T0SZ=24 (40-bit), SL0=1 starts at L1 with 2 concatenated tables (§1.3 example)', () => {
    const level = s2StartLevel(GRANULE_4K, 1);
    expect(level).toBe(1);
    expect(concatenatedTables(GRANULE_4K, level, 64 - 24)).toBe(2);
    expect(s2InconsistentSl(GRANULE_4K, level, 40)).toBe(false);
    expect(s2InvalidSl0(GRANULE_4K, 1, 44)).toBe(false);
  });

  it('S2T0SZ=20 (44-bit), SL0=2 starts at L0 with one table (§1.3, the QEMU qtest config)', () => {
    const level = s2StartLevel(GRANULE_4K, 2);
    expect(level).toBe(0);
    expect(concatenatedTables(GRANULE_4K, level, 44)).toBe(1);
    expect(s2InconsistentSl(GRANULE_4K, level, 44)).toBe(false);
    // Level 0 needs a 44-bit PA (Arm ARM AArch64.S2InvalidSL).
    expect(s2InvalidSl0(GRANULE_4K, 2, 44)).toBe(false);
    expect(s2InvalidSl0(GRANULE_4K, 2, 42)).toBe(true);
  });

  it('rejects more than 16 concatenated tables and a start level with nothing to resolve', () => {
    // 44-bit IPA from L1 (4KB) would need 32 tables (§1.3: at most 16).
    expect(s2InconsistentSl(GRANULE_4K, 1, 44)).toBe(true);
    expect(s2InconsistentSl(GRANULE_4K, 1, 43)).toBe(false); // 16 tables
    // 30-bit IPA cannot start at L1 (no bit left for level 1).
    expect(s2InconsistentSl(GRANULE_4K, 1, 30)).toBe(true);
    expect(s2InconsistentSl(GRANULE_4K, 2, 30)).toBe(false);
  });

  // Linux arm_64_lpae_alloc_pgtable_s2: a level-0 start with <= 16 entries becomes concatenated level 1.
  it.each([
    [2, GRANULE_4K, 48, 0, 9],
    [2, GRANULE_4K, 44, 0, 5],
    [2, GRANULE_4K, 40, 1, 10],
    [2, GRANULE_4K, 36, 1, 6],
    [2, GRANULE_16K, 48, 1, 12],
    [2, GRANULE_64K, 48, 1, 6],
    [1, GRANULE_4K, 40, 0, 1],
    [1, GRANULE_16K, 48, 0, 1],
    [1, GRANULE_64K, 42, 2, 13],
  ] as const)('stage %i granule 2^%i IAS %i -> start L%i, pgd 2^%i entries', (stage, g, ias, start, bits) => {
    const geo = lpaeGeometry(stage, g, ias);
    expect(geo.startLevel).toBe(start);
    expect(geo.pgdBitsLg2).toBe(bits);
    if (stage === 2) expect(s2InconsistentSl(g, start, ias)).toBe(false);
  });
});

describe('sizes and encodings', () => {
  it('page-size bitmaps are Linux arm_lpae_restrict_pgsizes values (reference §1.1)', () => {
    expect(pgsizeBitmap(GRANULE_4K)).toBe(0x40201000);
    expect(pgsizeBitmap(GRANULE_16K)).toBe(0x4000 + 0x2000000);
    expect(pgsizeBitmap(GRANULE_64K)).toBe(0x10000 + 0x20000000);
    // 4TB blocks only with a 52-bit output (64KB + FEAT_LPA).
    expect(pgsizeBitmap(GRANULE_64K, 52)).toBe(0x10000 + 0x20000000 + 2 ** 42);
  });

  it('PA size encodings 0..6 = 32,36,40,42,44,48,52 (reference §1.5)', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map(paSizeBits)).toEqual([32, 36, 40, 42, 44, 48, 52]);
    expect([32, 36, 40, 42, 44, 48, 52].map(paSizeEncoding)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(paSizeEncoding(39)).toBe(-1);
  });

  it('TG0 and TG1 use different encodings (reference §1.2)', () => {
    expect([0, 1, 2, 3].map(tg0ToGranule)).toEqual([12, 16, 14, -1]);
    expect([0, 1, 2, 3].map(tg1ToGranule)).toEqual([-1, 14, 12, 16]);
  });

  it('blocks exist at 4KB L1/L2, 16KB L2, 64KB L2 (L1 only with a 52-bit PA) (§1.1)', () => {
    const table = (g: number, pa: number) => [0, 1, 2].map((l) => blockAllowed(g, l, pa));
    expect(table(GRANULE_4K, 48)).toEqual([false, true, true]);
    expect(table(GRANULE_16K, 48)).toEqual([false, false, true]);
    expect(table(GRANULE_64K, 48)).toEqual([false, false, true]);
    expect(table(GRANULE_64K, 52)).toEqual([false, true, true]);
  });
});
