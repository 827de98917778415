/**
 * Intel VT-d second-level page tables (VT-d spec §9.8): 4 KiB tables of 512 64-bit entries,
 * R bit 0, W bit 1, PS (super page) bit 7, address bits 51:12. A 39-bit address width walks
 * 3 levels, 48-bit 4 levels. Entries are real words in host memory, written by the driver
 * and read by the hardware walk.
 */

import type { PhysMem } from '../mm/physmem.ts';
import { IOMMU_READ, IOMMU_WRITE } from './types.ts';

export const DMA_PTE_READ = 1;
export const DMA_PTE_WRITE = 2;
const DMA_PTE_LARGE_PAGE = 1 << 7;

const ADDR_HI_MASK = 0x000f_ffff; // bits 51:32 of the entry, in its high word

/** Address bits of an entry (lo, hi words). */
function vtdPteAddr(lo: number, hi: number): number {
  return (hi & ADDR_HI_MASK) * 2 ** 32 + ((lo & 0xffff_f000) >>> 0);
}

/** Shift of level `level` (1 = 4 KiB leaves, 2 = 2 MiB, 3 = 1 GiB, 4 = 512 GiB). */
function vtdLevelShift(level: number): number {
  return 12 + 9 * (level - 1);
}

const TWO_32 = 4294967296;
/** 2^-vtdLevelShift(level) for levels 0..5 (index 0 unused). */
const LEVEL_INV = Array.from({ length: 6 }, (_, l) => 2 ** -vtdLevelShift(l));
/** 2^vtdLevelShift(level): the bytes a leaf at `level` maps. */
const LEVEL_SIZE = Array.from({ length: 6 }, (_, l) => 2 ** vtdLevelShift(l));

export class VtdPageTable {
  readonly root: number;

  constructor(
    private readonly mem: PhysMem,
    /** 3 for a 39-bit address width, 4 for 48. */
    readonly levels: number,
  ) {
    this.root = mem.allocFrame(12);
    if (this.root < 0) throw new Error('out of host memory for a VT-d root table');
  }

  /**
   * Writes one leaf of 2^pageLg2 bytes (12, 21 or 30). Returns 0, or -1 when a table page could
   * not be allocated.
   */
  mapOne(iova: number, pa: number, pageLg2: number, prot: number): number {
    this.foundIova = -1;
    const leafLevel = (pageLg2 - 12) / 9 + 1;
    let table = this.root;
    for (let level = this.levels; level > leafLevel; level--) {
      const slot = table + this.index(iova, level) * 8;
      const lo = this.mem.readU32(slot);
      const hi = this.mem.readU32(slot + 4);
      if (lo & (DMA_PTE_READ | DMA_PTE_WRITE) && !(lo & DMA_PTE_LARGE_PAGE)) {
        table = vtdPteAddr(lo, hi);
        continue;
      }
      const next = this.mem.allocFrame(12);
      if (next < 0) return -1;
      this.writeEntry(slot, next + (DMA_PTE_READ | DMA_PTE_WRITE));
      table = next;
    }
    let bits = 0;
    if (prot & IOMMU_READ) bits |= DMA_PTE_READ;
    if (prot & IOMMU_WRITE) bits |= DMA_PTE_WRITE;
    if (leafLevel > 1) bits |= DMA_PTE_LARGE_PAGE;
    this.writeEntry(table + this.index(iova, leafLevel) * 8, pa + bits);
    return 0;
  }

  /**
   * Clears the leaf covering `iova`; returns its size in bytes (a super page goes whole, as
   * intel_iommu_unmap does), or 0 when nothing was mapped there.
   */
  unmapOne(iova: number): number {
    if (iova === this.foundIova) {
      // lookup(iova) just found this leaf and nothing was written since: clear it without a walk
      // (the unmap after the lookup of vfio's unmap loop).
      this.foundIova = -1;
      this.writeEntry(this.foundSlot, 0);
      return LEVEL_SIZE[this.foundLevel];
    }
    this.foundIova = -1;
    let table = this.root;
    for (let level = this.levels; level >= 1; level--) {
      const slot = table + this.index(iova, level) * 8;
      const lo = this.mem.readU32(slot);
      const hi = this.mem.readU32(slot + 4);
      if (!(lo & (DMA_PTE_READ | DMA_PTE_WRITE))) return 0;
      if (level === 1 || lo & DMA_PTE_LARGE_PAGE) {
        this.writeEntry(slot, 0);
        return LEVEL_SIZE[level];
      }
      table = vtdPteAddr(lo, hi);
    }
    return 0;
  }

  /**
   * The leaf covering `iova`: returns its entry's low word (0 when unmapped), with the output
   * address and leaf size left in `outPa` / `outSize`.
   */
  lookup(iova: number): number {
    let table = this.root;
    for (let level = this.levels; level >= 1; level--) {
      const slot = table + this.index(iova, level) * 8;
      const lo = this.mem.readU32(slot);
      const hi = this.mem.readU32(slot + 4);
      if (!(lo & (DMA_PTE_READ | DMA_PTE_WRITE))) return 0;
      if (level === 1 || lo & DMA_PTE_LARGE_PAGE) {
        const size = LEVEL_SIZE[level];
        this.outSize = size;
        this.outPa = vtdPteAddr(lo, hi) + (iova % size);
        this.foundIova = iova;
        this.foundSlot = slot;
        this.foundLevel = level;
        return lo;
      }
      table = vtdPteAddr(lo, hi);
    }
    return 0;
  }
  outPa = 0;
  outSize = 0;
  /** The leaf the last successful lookup found (its input address, slot and level), until a write. */
  private foundIova = -1;
  private foundSlot = 0;
  private foundLevel = 0;

  /** Frees every table page (domain free). */
  free(): void {
    this.foundIova = -1;
    this.freeTable(this.root, this.levels);
  }

  private freeTable(table: number, level: number): void {
    if (level > 1) {
      for (let i = 0; i < 512; i++) {
        const lo = this.mem.readU32(table + i * 8);
        const hi = this.mem.readU32(table + i * 8 + 4);
        if (lo & (DMA_PTE_READ | DMA_PTE_WRITE) && !(lo & DMA_PTE_LARGE_PAGE))
          this.freeTable(vtdPteAddr(lo, hi), level - 1);
      }
    }
    this.mem.freeFrame(table, 12);
  }

  private index(iova: number, level: number): number {
    // An exact multiply by 2^-shift (no Math.pow per call); `& 511` of the integral result is exact.
    return Math.floor(iova * LEVEL_INV[level]) & 511;
  }

  private writeEntry(slot: number, value: number): void {
    const hi = Math.floor(value / TWO_32);
    this.mem.writeU32(slot, value - hi * TWO_32);
    this.mem.writeU32(slot + 4, hi);
  }
}
