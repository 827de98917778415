/**
 * The driver side against the shape of Linux's io-pgtable-arm selftest: page-size set x IAS x OAS x
 * stage, each checking empty tables, distinct mappings of every page size, overlapping maps, partial
 * unmap (block split) and remap, full unmap and remap, and the last largest page of the IAS. Every
 * translation is checked twice: by the driver's iova_to_phys and by the hardware walker.
 */
import { describe, expect, it } from 'vitest';
import { PhysMem } from '../../src/mm/physmem.ts';
import {
  ACCESS_READ,
  ACCESS_WRITE,
  EEXIST,
  EINVAL,
  ENOMEM,
  ERANGE,
  FAULT_NONE,
  FAULT_TRANSLATION,
  GRANULE_4K,
  IOMMU_CACHE,
  IOMMU_NOEXEC,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtable,
  pgsizeBitmap,
  TableHeap,
  WalkResult,
  walk,
} from '../../src/pgtable/index.ts';

const SZ_1G = 2 ** 30;
const HEAP_BASE = 0xc000_0000; // tables must sit below every OAS in the matrix (32 bits)
const HEAP_SIZE = 2 ** 28;

// Linux io-pgtable-arm-selftests: page-size sets and address sizes.
const PGSIZES = [0x1000 | 0x200000 | 0x40000000, 0x4000 | 0x2000000, 0x10000 | 0x20000000];
const ADDRESS_SIZES = [32, 36, 40, 42, 44, 48];

function setup(
  stage: 1 | 2,
  pgsize: number,
  ias: number,
  oas: number,
  flushes?: number[],
  opts: { heapSize?: number; splitOnPartialUnmap?: boolean } = {},
) {
  const mem = new PhysMem();
  const heap = new TableHeap(mem, HEAP_BASE, opts.heapSize ?? HEAP_SIZE, (a, n) => mem.fill(a, n, 0));
  const tlb = flushes && {
    flushWalk: (_iova: number, _size: number, granule: number) => flushes.push(granule),
    addPage: (_iova: number, granule: number) => flushes.push(granule),
  };
  const split = opts.splitOnPartialUnmap;
  const pt = IoPgtable.create(
    mem,
    { stage, pgsizeBitmap: pgsize, ias, oas, tlb, splitOnPartialUnmap: split },
    heap,
  );
  if (pt === null) throw new Error('model bug: valid config refused');
  const hw = new WalkResult();
  const regime = pt.regime();
  // The hardware view of an address: output address or -1, and the leaf size.
  const hwWalk = (iova: number, access = ACCESS_READ) =>
    walk(mem, regime, iova, access, hw) === FAULT_NONE ? hw.oa : -1;
  return { mem, heap, pt, hw, hwWalk };
}

describe('io-pgtable selftest matrix', () => {
  for (const stage of [1, 2] as const) {
    for (const pgsize of PGSIZES) {
      for (const ias of ADDRESS_SIZES) {
        for (const oas of ADDRESS_SIZES) {
          // Linux skips IAS > OAS (not valid for stage 2).
          if (ias > oas) continue;
          it(`stage ${stage} pgsizes 0x${pgsize.toString(16)} ias ${ias} oas ${oas}`, () => {
            const flushes: number[] = [];
            const { heap, pt, hw, hwWalk } = setup(stage, pgsize, ias, oas, flushes);
            const sizes = [0, 1, 2].map((i) => pt.pageSizesLg2[i]).filter((k) => k !== undefined);
            expect(pt.pgsizeBitmap).toBe(pgsize);

            // Empty page tables translate nothing.
            for (const a of [42, SZ_1G + 42, 2 * SZ_1G + 42]) {
              expect(pt.iovaToPhys(a)).toBe(0);
              expect(hwWalk(a)).toBe(-1);
              expect(hw.fault).toBe(FAULT_TRANSLATION);
            }

            // Distinct mappings of each page size at 1 GiB strides; overlapping maps fail.
            let iova = 0;
            for (const k of sizes) {
              const size = 2 ** k;
              const prot = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE;
              expect(pt.mapPages(iova, iova, size, 1, prot)).toBe(size);
              expect(pt.mapPages(iova, iova + size, size, 1, IOMMU_READ | IOMMU_NOEXEC)).toBe(-EEXIST);
              expect(pt.iovaToPhys(iova + 42)).toBe(iova + 42);
              expect(hwWalk(iova + 42, ACCESS_WRITE)).toBe(iova + 42);
              expect(hw.sizeLg2).toBe(k);
              iova += SZ_1G;
            }

            // Partial unmap: the smallest page inside the second mapping splits its block.
            const small = 2 ** sizes[0];
            expect(pt.unmapPages(SZ_1G + small, small, 1)).toBe(small);
            expect(pt.iovaToPhys(SZ_1G + small + 42)).toBe(0);
            expect(pt.iovaToPhys(SZ_1G + 42)).toBe(SZ_1G + 42);
            expect(pt.iovaToPhys(SZ_1G + 2 * small + 42)).toBe(SZ_1G + 2 * small + 42);
            // Remap of the partial unmap, somewhere else.
            expect(pt.mapPages(SZ_1G + small, small, small, 1, IOMMU_READ)).toBe(small);
            expect(pt.iovaToPhys(SZ_1G + small + 42)).toBe(small + 42);
            expect(hwWalk(SZ_1G + small + 42)).toBe(small + 42);
            expect(hwWalk(SZ_1G + small + 42, ACCESS_WRITE)).toBe(-1);

            // Full unmap and remap of every page size.
            iova = 0;
            for (const k of sizes) {
              const size = 2 ** k;
              expect(pt.unmapPages(iova, size, 1)).toBe(size);
              expect(pt.iovaToPhys(iova + 42)).toBe(0);
              expect(hwWalk(iova + 42)).toBe(-1);
              expect(pt.mapPages(iova, iova, size, 1, IOMMU_WRITE)).toBe(size);
              expect(pt.iovaToPhys(iova + 42)).toBe(iova + 42);
              iova += SZ_1G;
            }

            // The last largest page of the IAS (the concatenated-table corner at stage 2).
            const big = 2 ** sizes[sizes.length - 1];
            const last = 2 ** ias - big;
            if (last >= 3 * SZ_1G) {
              expect(pt.mapPages(last, big, big, 1, IOMMU_READ)).toBe(big);
              expect(pt.iovaToPhys(last + big - 1)).toBe(2 * big - 1);
              expect(hwWalk(last + big - 1)).toBe(2 * big - 1);
              expect(pt.unmapPages(last, big, 1)).toBe(big);
            }
            // Beyond the IAS nothing maps.
            expect(pt.mapPages(2 ** ias, 0, small, 1, IOMMU_READ)).toBe(-ERANGE);

            // Every flush the tables asked for (the unmaps asked for some) was a legal page size or the granule.
            expect(flushes.length).toBeGreaterThan(0);
            for (const f of flushes) expect(sizes.map((k) => 2 ** k)).toContain(f);

            pt.free();
            expect(heap.used).toBe(0);
          });
        }
      }
    }
  }
});

describe('iommu_map / iommu_unmap page-size choice', () => {
  it('uses blocks where size and alignment allow, pages elsewhere', () => {
    const { mem, pt, hw, hwWalk } = setup(2, pgsizeBitmap(GRANULE_4K), 48, 48);
    // 4 MiB + 8 KiB starting 4 KiB below a 2 MiB boundary: 1 page, 2 blocks, 1 page.
    const iova = 0x40000000 - 0x1000;
    expect(pt.map(iova, iova + 0x1_0000_0000, 0x402000, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE)).toBe(0);
    const leafSizes = [iova, iova + 0x1000, iova + 0x201000, iova + 0x401000].map((a) => {
      expect(hwWalk(a)).toBe(a + 0x1_0000_0000);
      return hw.sizeLg2;
    });
    expect(leafSizes).toEqual([12, 21, 21, 12]);
    // Misalignment is EINVAL; an unmap of a range with a hole stops at the hole.
    expect(pt.map(0x123, 0, 0x1000, IOMMU_READ)).toBe(-EINVAL);
    expect(pt.unmap(iova, 0x403000)).toBe(0x402000);
    expect(hwWalk(iova + 0x1000)).toBe(-1);
    // The tables written: L0, L1, the L2 tables of both GiBs and two L3 tables for the end pages
    // (the blocks need none).
    expect(mem.touchedFrames).toBe(6);
  });

  it('a map that runs out of table memory unmaps what it mapped and returns ENOMEM', () => {
    // Room for the start table and exactly two more tables.
    const { pt } = setup(1, pgsizeBitmap(GRANULE_4K), 48, 48, undefined, { heapSize: 3 * 0x1000 });
    // A 4 KiB page at 0 needs L1, L2 and L3 tables: the third allocation fails.
    expect(pt.map(0, 0, 0x1000, IOMMU_READ)).toBe(-ENOMEM);
    expect(pt.iovaToPhys(0)).toBe(0);
  });

  it('a block replaces an empty table below it, and a partial unmap of a block splits it', () => {
    const { pt, hw, hwWalk } = setup(1, pgsizeBitmap(GRANULE_4K), 48, 48);
    expect(pt.map(0x200000, 0x200000, 0x1000, IOMMU_READ)).toBe(0);
    expect(pt.unmap(0x200000, 0x1000)).toBe(0x1000);
    // The L3 table under 0x200000 is empty but present: a 2 MiB block replaces it.
    expect(pt.map(0x200000, 0x800000, 0x200000, IOMMU_READ)).toBe(0);
    expect(hwWalk(0x200000 + 5)).toBe(0x800005);
    expect(hw.sizeLg2).toBe(21);
    // Unmapping 4 KiB in the middle leaves 511 pages with the block's attributes.
    expect(pt.unmap(0x300000, 0x1000)).toBe(0x1000);
    expect(hwWalk(0x300000)).toBe(-1);
    expect(hwWalk(0x301000)).toBe(0x901000);
    expect(hw.sizeLg2).toBe(12);
    // The block's attributes (read-only, non-cached: nG | AF | SH outer | AP[2:1] = 0b11) carry over.
    expect(hw.descLo & 0xffc).toBe(0xec0);
  });

  it('Linux 6.13+ (no split on partial unmap) unmaps nothing', () => {
    const { pt } = setup(1, 0x40201000, 48, 48, undefined, { splitOnPartialUnmap: false });
    expect(pt.map(0x200000, 0x200000, 0x200000, IOMMU_READ)).toBe(0);
    expect(pt.unmap(0x200000, 0x1000)).toBe(0);
    expect(pt.iovaToPhys(0x200000)).toBe(0x200000);
  });

  it('computes the TCR/VTCR values Linux programs', () => {
    const s2 = setup(2, pgsizeBitmap(GRANULE_4K), 40, 44).pt;
    // 40-bit IPA: concatenated L1 start -> SL0 = 1 (reference §1.3), T0SZ 24, PS 44 bits = 4.
    expect(s2.tcr).toEqual({ tsz: 24, tg: 0, ps: 4, sh: 3, irgn: 1, orgn: 1, sl: 1 });
    expect(s2.pgdBytes).toBe(0x2000);
    const s1 = setup(1, pgsizeBitmap(GRANULE_4K), 48, 44).pt;
    // CD words Linux wrote for a 48-bit 4K stage-1 domain with OAS 44 (6.18-iommufd cd_write): T0SZ 16,
    // TG0 0, IR0/OR0 1, SH0 3, IPS 4; MAIR 0xf404ff44.
    expect(s1.tcr).toEqual({ tsz: 16, tg: 0, ps: 4, sh: 3, irgn: 1, orgn: 1, sl: 0 });
    expect(s1.mair).toBe(0xf404ff44);
  });

  it('refuses configurations Linux refuses', () => {
    const mem = new PhysMem();
    const heap = new TableHeap(mem, HEAP_BASE, HEAP_SIZE);
    expect(IoPgtable.create(mem, { stage: 1, pgsizeBitmap: 0x800, ias: 48, oas: 48 }, heap)).toBeNull();
    expect(IoPgtable.create(mem, { stage: 1, pgsizeBitmap: 0x1000, ias: 52, oas: 48 }, heap)).toBeNull();
    expect(IoPgtable.create(mem, { stage: 2, pgsizeBitmap: 0x1000, ias: 48, oas: 44 }, heap)).toBeNull();
    expect(IoPgtable.create(mem, { stage: 1, pgsizeBitmap: 0x1000, ias: 48, oas: 39 }, heap)).toBeNull();
  });
});

describe('arm_lpae_iova_to_phys through the walk cache (lookup)', () => {
  it('answers as the full walk, page by page, across level-3 tables and granules', () => {
    for (const [pgsize, oas] of [
      [pgsizeBitmap(GRANULE_4K), 48],
      [0x4000 | 0x2000000, 48],
      [0x10000 | 0x20000000, 52],
    ] as const) {
      const { mem, pt } = setup(2, pgsize, 48, oas);
      const g = Math.log2(pgsize & -pgsize);
      const span = 2 ** (g + g - 3);
      const iovas: number[] = [];
      // Pages in two spans of a level-3 table each, at the top of a 2^40 window, and a hole.
      for (const base of [2 ** 40, 2 ** 40 + span, 2 ** 40 + 7 * span])
        for (const k of [0, 1, 5, 9]) iovas.push(base + k * 2 ** g);
      // 52-bit outputs carry OA[51:48] in descriptor bits [15:12].
      for (const [i, iova] of iovas.entries())
        expect(pt.map(iova, 2 ** (oas - 2) + i * 2 ** g, 2 ** g, IOMMU_READ | IOMMU_WRITE)).toBe(0);
      const full = new WalkResult();
      const regime = pt.regime();
      // Interleaved spans, mapped pages, holes and offsets inside pages.
      for (const iova of [...iovas, ...iovas.reverse()].flatMap((a) => [a + 0x18, a + 2 * 2 ** g])) {
        const mapped = walk(mem, regime, iova, ACCESS_READ, full) === FAULT_NONE;
        expect(pt.lookup(iova)).toBe(mapped);
        if (!mapped) continue;
        const p = pt.probe;
        expect([p.oa, p.sizeLg2, p.level, p.descAddr, p.descLo, p.descHi]).toEqual([
          full.oa,
          full.sizeLg2,
          full.level,
          full.descAddr,
          full.descLo,
          full.descHi,
        ]);
      }
    }
  });

  it('forgets a level-3 table once any table is freed (its memory may hold another span next)', () => {
    const { pt } = setup(2, pgsizeBitmap(GRANULE_4K), 48, 48);
    const a = 0x4000_0000; // span A
    const b = 0x8000_0000; // span B, the same index in its table
    expect(pt.map(a, 0x1_0000_0000, 0x1000, IOMMU_READ)).toBe(0);
    expect(pt.iovaToPhys(a)).toBe(0x1_0000_0000); // remembers A's level-3 table
    // A 2 MiB unmap over A's span frees its level-3 table; B's new tables reuse freed memory (the
    // heap hands out the last freed first, so a stale walk reads a table address as a page).
    // (Linux counts a table freed under the range as the whole range unmapped.)
    expect(pt.unmap(a, 0x200000)).toBe(0x200000);
    expect(pt.map(b, 0x2_0000_0000, 0x1000, IOMMU_READ)).toBe(0);
    // A is unmapped: a stale table would answer with B's page.
    expect(pt.iovaToPhys(a)).toBe(0);
    expect(pt.iovaToPhys(b)).toBe(0x2_0000_0000);
  });

  it('an unmap after its lookup clears the leaf the lookup found only while no table was freed since', () => {
    const { pt } = setup(1, pgsizeBitmap(GRANULE_4K), 48, 48);
    const a = 0x4000_0000;
    const b = 0x4020_0000; // the next level-2 entry: its level-3 table takes A's freed memory
    expect(pt.map(a, 0x1_0000_0000, 0x1000, IOMMU_READ)).toBe(0);
    expect(pt.iovaToPhys(a)).toBe(0x1_0000_0000); // unmapPages may clear this leaf directly
    expect(pt.unmap(a, 0x200000)).toBe(0x200000); // frees A's level-3 table
    expect(pt.map(b, 0x1_0000_0000, 0x1000, IOMMU_READ)).toBe(0); // same PA: the same words
    // A is unmapped: the remembered leaf's place now holds B's page, which must stay.
    expect(pt.unmap(a, 0x1000)).toBe(0);
    expect(pt.iovaToPhys(b)).toBe(0x1_0000_0000);
  });
});
