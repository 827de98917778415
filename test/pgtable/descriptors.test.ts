/**
 * Descriptor encodings: the bits, AP[2:1] / S2AP, MemAttr 0xf / 0x5 / 0x1 and XN of reference §1.4,
 * where blocks exist (§1.1), and the leaves a 6.18 kernel wrote (kernel-answers/6.18-iommufd).
 */
import { describe, expect, it } from 'vitest';
import {
  decodeAddress,
  decodeDescriptor,
  encodeAddress,
  GRANULE_4K,
  GRANULE_16K,
  GRANULE_64K,
  hex64,
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  leafPte,
  levelShift,
  protToPte,
  tablePte,
} from '../../src/pgtable/index.ts';
import { KERNEL_ANSWERS, loadRecording } from '../helpers/recordings.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

describe('Linux io-pgtable-arm leaf encodings (arm_lpae_prot_to_pte)', () => {
  it('stage-1 4K page: cached RW = X | 0xf47, read-only = X | 0xfc7 (recorded s1_map leaves, 6.18-iommufd)', () => {
    // kernel-answers/6.18-iommufd/b-s1-faults.jsonl: "leaf": "0x40001f47" and (ro=1) "0x40012fc7".
    const leaves = loadRecording(KERNEL_ANSWERS, '6.18-iommufd', 'b-s1-faults.jsonl')
      .lines.flat()
      .map((l) => l.leaf);
    expect(leaves).toContain('0x40001f47');
    expect(leaves).toContain('0x40012fc7');
    expect(hex64(...words(leafPte(protToPte(1, RW | IOMMU_CACHE), 0x40001000, 3, GRANULE_4K)))).toBe(
      '0x0000000040001f47',
    );
    expect(hex64(...words(leafPte(protToPte(1, IOMMU_READ | IOMMU_CACHE), 0x40012000, 3, GRANULE_4K)))).toBe(
      '0x0000000040012fc7',
    );
  });

  it('stage 1: write implies read (no AP[2] for a write-only request), PRIV clears AP[1]', () => {
    expect(protToPte(1, IOMMU_WRITE | IOMMU_CACHE).lo & 0xc0).toBe(0x40);
    expect(protToPte(1, RW | IOMMU_PRIV | IOMMU_CACHE).lo & 0xc0).toBe(0x00);
    expect(protToPte(1, IOMMU_READ | IOMMU_PRIV | IOMMU_CACHE).lo & 0xc0).toBe(0x80);
  });

  it('stage 1 AttrIndx: MMIO 2, CACHE 1, otherwise 0; SH inner only when cached', () => {
    // nG 0x800 | AF 0x400 | SH outer 0x200 | AP[1] 0x40 | AttrIndx 2 << 2
    expect(protToPte(1, RW | IOMMU_MMIO).lo).toBe(0xe48);
    expect(protToPte(1, RW).lo).toBe(0xe40);
    expect(protToPte(1, RW | IOMMU_CACHE).lo).toBe(0xf44);
  });

  it('stage 2: HAP read bit 6 / write bit 7, MemAttr 0xf / 0x1 / 0x5 at [5:2], XN for NOEXEC', () => {
    expect(protToPte(2, RW | IOMMU_CACHE)).toEqual({ lo: 0x400 | 0x300 | 0xc0 | (0xf << 2), hi: 0 });
    expect(protToPte(2, IOMMU_READ | IOMMU_MMIO)).toEqual({ lo: 0x400 | 0x200 | 0x40 | (0x1 << 2), hi: 0 });
    expect(protToPte(2, IOMMU_WRITE)).toEqual({ lo: 0x400 | 0x200 | 0x80 | (0x5 << 2), hi: 0 });
    // Linux ARM_LPAE_PTE_XN = 3 << 53 at both stages.
    expect(protToPte(2, RW | IOMMU_NOEXEC).hi).toBe(0x00600000);
    expect(protToPte(1, RW | IOMMU_NOEXEC).hi).toBe(0x00600000);
  });

  it('table descriptors are next-table address | 3', () => {
    expect(tablePte(0x40102000, GRANULE_4K)).toEqual({ lo: 0x40102003, hi: 0 });
    expect(tablePte(0x1234_5678_0000, GRANULE_64K)).toEqual({ lo: 0x56780003, hi: 0x1234 });
  });
});

describe('encode/decode round trips for every granule, stage and level', () => {
  const granules = [GRANULE_4K, GRANULE_16K, GRANULE_64K];
  for (const g of granules) {
    for (const stage of [1, 2] as const) {
      it(`granule 2^${g} stage ${stage}`, () => {
        for (let level = 0; level <= 3; level++) {
          // A table descriptor at every level that can hold one.
          if (level < 3) {
            const next = 0xabc * 2 ** g;
            const t = tablePte(next, g);
            const d = decodeDescriptor(t.lo, t.hi, stage, level, g);
            expect(d.kind).toBe('table');
            expect(d.address).toBe(next);
          }
          const shift = levelShift(g, level);
          const addr = 0x7 * 2 ** shift;
          if (addr >= 2 ** 48) continue;
          const attrs = protToPte(stage, IOMMU_READ | IOMMU_CACHE | IOMMU_NOEXEC);
          const leaf = leafPte(attrs, addr, level, g);
          const d = decodeDescriptor(leaf.lo, leaf.hi, stage, level, g);
          const blockOk = level === 3 || level === 2 || (level === 1 && g === GRANULE_4K);
          expect(d.kind).toBe(level === 3 ? 'page' : blockOk ? 'block' : 'reserved');
          if (!blockOk) continue;
          expect(d.address).toBe(addr);
          expect(d.size).toBe(2 ** shift);
          expect(d.fields.AF).toBe(1);
          expect(d.fields.SH).toBe(3);
          if (stage === 1) {
            expect(d.fields.AttrIndx).toBe(1);
            expect(d.fields.AP).toBe(3);
            expect(d.fields.nG).toBe(1);
            expect(d.fields.UXN).toBe(1);
          } else {
            expect(d.fields.MemAttr).toBe(0xf);
            expect(d.fields.S2AP).toBe(1);
            expect(d.fields.XN).toBe(3);
          }
        }
      });
    }
  }

  it('an invalid descriptor and a level-3 block encoding decode as invalid / reserved', () => {
    expect(decodeDescriptor(0x40001f46, 0, 1, 3, GRANULE_4K).kind).toBe('invalid');
    expect(decodeDescriptor(0x40001f45, 0, 1, 3, GRANULE_4K).kind).toBe('reserved');
  });

  // Reference §1.4 (marked UNVERIFIED there).
  it('a 52-bit output address rides in bits [15:12] with the 64KB granule (FEAT_LPA)', () => {
    const addr = 0xa_1234_5678_0000;
    const e = encodeAddress(addr, GRANULE_64K);
    expect((e.lo >>> 12) & 0xf).toBe(0xa);
    expect(decodeAddress(e.lo, e.hi, 16, true)).toBe(addr);
    // Without a 52-bit output size those bits are not address bits.
    expect(decodeAddress(e.lo, e.hi, 16, false)).toBe(addr % 2 ** 48);
  });
});

function words(p: { lo: number; hi: number }): [number, number] {
  return [p.lo, p.hi];
}
