/**
 * The driver side of VMSAv8-64 tables, behaving like Linux `io-pgtable-arm.c` (map_pages,
 * unmap_pages, iova_to_phys) plus the IOMMU core's `iommu_map`/`iommu_unmap` page-size loop.
 *
 * Tables are real descriptors in the caller's memory, allocated through the caller's allocator. Leaf
 * encodings are Linux's exactly (`protToPte`). Errors are negative errno values, never exceptions.
 */

import type { Pte } from './descriptors.ts';
import {
  decodeAddress,
  LINUX_MAIR0,
  leafPte,
  leafPteInto,
  protToPte,
  tablePte,
  writePte,
} from './descriptors.ts';
import {
  bitmapLg2s,
  ctz,
  fls,
  granuleToTg0,
  INV_POW2,
  levelShift,
  lpaeGeometry,
  POW2,
  pageSizesLg2,
  paSizeEncoding,
  pgsizeBitmap,
  s2Sl0ForStartLevel,
} from './geometry.ts';
import type { FrameMemory, PgtableMemory, TableAllocator } from './types.ts';
import { EEXIST, EINVAL, ENOMEM, ERANGE, frameMemoryOf, IOMMU_READ, IOMMU_WRITE } from './types.ts';
import { ACCESS_PROBE, FAULT_NONE, WalkRegime, WalkResult, walk } from './walk.ts';

/** Linux `ARM_LPAE_MAX_ADDR_BITS` (52-bit addresses need the 64KB granule). */
const MAX_ADDR_BITS = 52;

/** Callbacks matching Linux `iommu_flush_ops` (tlb_flush_walk, tlb_add_page). */
export interface IoPgtableTlbOps {
  /** A table was freed: walk caches for [iova, iova + size) must go. */
  flushWalk?(iova: number, size: number, granule: number): void;
  /** A leaf of `granule` bytes at `iova` was removed. */
  addPage?(iova: number, granule: number): void;
}

export interface IoPgtableConfig {
  stage: 1 | 2;
  /** Requested page sizes (Linux `pgsize_bitmap`); restricted to one granule like `arm_lpae_restrict_pgsizes`. */
  pgsizeBitmap: number;
  /** Input (IOVA or IPA) and output address sizes in bits. */
  ias: number;
  oas: number;
  /** Table walks are cache coherent (Linux `coherent_walk`): inner-shareable write-back walk attributes. */
  coherentWalk?: boolean;
  /**
   * A partial unmap of a block splits it (Linux up to 6.12, and what this model does by default).
   * Linux 6.13 removed the split ("iommu/io-pgtable-arm: Remove split on unmap behavior"): the unmap
   * then returns 0.
   */
  splitOnPartialUnmap?: boolean;
  tlb?: IoPgtableTlbOps;
}

/** Translation control values Linux derives for the SMMU (CD TCR fields or STE VTCR fields). */
export interface LpaeTcr {
  /** T0SZ / S2T0SZ = 64 - IAS. */
  tsz: number;
  /** TG0 / S2TG encoding. */
  tg: number;
  /** IPS / S2PS encoding of OAS. */
  ps: number;
  /** SH0 / S2SH0, IR0 / S2IR0, OR0 / S2OR0. */
  sh: number;
  irgn: number;
  orgn: number;
  /** S2SL0 (stage 2 only; 0 at stage 1). */
  sl: number;
}

/** One set of tables for one domain, as Linux's `arm_lpae_io_pgtable`. */
export class IoPgtable {
  readonly stage: 1 | 2;
  readonly ias: number;
  readonly oas: number;
  readonly granuleLg2: number;
  readonly startLevel: number;
  /** Log2 of the entries of the start table (concatenated tables included). */
  readonly pgdBitsLg2: number;
  readonly pgdBytes: number;
  /** Physical address of the start table (TTB0 / S2TTB). */
  readonly pgd: number;
  /** Page sizes after restriction, and as log2 list (smallest first). */
  readonly pgsizeBitmap: number;
  readonly pageSizesLg2: readonly number[];
  readonly tcr: LpaeTcr;
  /** Stage-1 MAIR Linux programs (NC, WBRWA, DEVICE, INC_OWBRWA). */
  readonly mair: number;
  private readonly mem: PgtableMemory;
  /** The same memory when it gives frames' words in place (PhysMem), else null. */
  private readonly frames: FrameMemory | null;
  private readonly alloc: TableAllocator;
  private readonly tlb: IoPgtableTlbOps | undefined;
  private readonly split: boolean;
  private readonly stride: number;
  /**
   * The leaf the last lookup() found (read it right after the call): fault, level, oa, sizeLg2 and
   * the descriptor with its address. Not its permissions: arm_lpae_iova_to_phys reads none.
   */
  readonly probe = new WalkResult();
  /** protToPte by prot value (IOMMU_* flags < 64), made on first use: maps reuse a few prots. */
  private readonly attrsByProt: (Pte | undefined)[] = [];
  /** Scratch descriptor for the leaves a map writes. */
  private readonly leaf: Pte = { lo: 0, hi: 0 };
  private probeRegime: WalkRegime | undefined;
  private mapped = 0;
  /** The IOVA the last lookup() found mapped (-1: none), its leaf in `probe`. */
  private lookedUp = -1;
  /**
   * A walk cache for lookup(): the level-3 table the last walk to a page went through and the number
   * of the level-2 entry's span it serves (-1: none). Only this io-pgtable writes table descriptors,
   * and a path to a table changes only when a table on it is freed (a new table goes into an empty
   * entry; a split replaces a block, which no walk to a page went through): freeTable forgets both.
   */
  private leafTable = -1;
  private leafSpan = -1;

  private constructor(
    mem: PgtableMemory,
    alloc: TableAllocator,
    cfg: IoPgtableConfig,
    granuleLg2: number,
    pgd: number,
  ) {
    const geo = lpaeGeometry(cfg.stage, granuleLg2, cfg.ias);
    this.mem = mem;
    this.frames = frameMemoryOf(mem);
    this.alloc = alloc;
    this.tlb = cfg.tlb;
    this.split = cfg.splitOnPartialUnmap ?? true;
    this.stage = cfg.stage;
    this.ias = cfg.ias;
    this.oas = cfg.oas;
    this.granuleLg2 = granuleLg2;
    this.stride = granuleLg2 - 3;
    this.startLevel = geo.startLevel;
    this.pgdBitsLg2 = geo.pgdBitsLg2;
    this.pgdBytes = geo.pgdBytes;
    this.pgd = pgd;
    this.pageSizesLg2 = pageSizesLg2(granuleLg2, cfg.oas);
    this.pgsizeBitmap = pgsizeBitmap(granuleLg2, cfg.oas);
    const coherent = cfg.coherentWalk ?? true;
    this.tcr = {
      tsz: 64 - cfg.ias,
      tg: granuleToTg0(granuleLg2),
      ps: paSizeEncoding(cfg.oas),
      sh: coherent ? 3 : 2,
      irgn: coherent ? 1 : 0,
      orgn: coherent ? 1 : 0,
      sl: cfg.stage === 2 ? s2Sl0ForStartLevel(granuleLg2, geo.startLevel) : 0,
    };
    this.mair = LINUX_MAIR0;
  }

  /**
   * Allocates the start table for `cfg` (Linux `alloc_io_pgtable_ops`). Returns null for a
   * configuration Linux refuses (no supported granule, address sizes out of range) or when the
   * allocator has no memory.
   */
  static create(mem: PgtableMemory, cfg: IoPgtableConfig, alloc: TableAllocator): IoPgtable | null {
    const granuleLg2 = chooseGranule(cfg.pgsizeBitmap);
    if (granuleLg2 < 0) return null;
    if (cfg.ias > MAX_ADDR_BITS || cfg.oas > MAX_ADDR_BITS || paSizeEncoding(cfg.oas) < 0) return null;
    if (granuleLg2 !== 16 && (cfg.ias > 48 || cfg.oas > 48)) return null;
    if (cfg.stage === 2 && cfg.ias > cfg.oas) return null;
    const geo = lpaeGeometry(cfg.stage, granuleLg2, cfg.ias);
    const pgd = alloc.allocTable(geo.pgdBytes);
    if (pgd < 0) return null;
    return new IoPgtable(mem, alloc, cfg, granuleLg2, pgd);
  }

  /** The walker's view of these tables (what the SMMU would walk). */
  regime(): WalkRegime {
    return new WalkRegime({
      stage: this.stage,
      granuleLg2: this.granuleLg2,
      inputBits: this.ias,
      startLevel: this.startLevel,
      ttb: this.pgd,
      oaBits: this.oas,
      paMaxBits: this.oas,
    });
  }

  /**
   * Maps `pgcount` pages of `pgsize` bytes (Linux `arm_lpae_map_pages`). Returns bytes mapped (it may
   * stop at a table boundary, as Linux does) or a negative errno; on error some pages may already be
   * mapped and `lastMapped` says how many bytes.
   */
  mapPages(iova: number, pa: number, pgsize: number, pgcount: number, prot: number): number {
    this.mapped = 0;
    const sizeLg2 = this.sizeLg2Of(pgsize);
    if (sizeLg2 < 0 || pgcount < 1) return -EINVAL;
    if (!(iova < POW2[this.ias]) || !(pa < POW2[this.oas])) return -ERANGE;
    // No access requested: nothing to do (and success).
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) return 0;
    let attrs = prot < 64 ? this.attrsByProt[prot] : undefined;
    if (attrs === undefined) {
      attrs = protToPte(this.stage, prot);
      if (prot < 64) this.attrsByProt[prot] = attrs;
    }
    const ret = this.mapAt(iova, pa, sizeLg2, pgcount, attrs, this.startLevel, this.pgd);
    return ret < 0 ? ret : this.mapped;
  }

  /** Bytes mapped by the last `mapPages`, also when it failed part way. */
  get lastMapped(): number {
    return this.mapped;
  }

  /**
   * Unmaps `pgcount` pages of `pgsize` (Linux `arm_lpae_unmap_pages`). Returns bytes unmapped; 0 for an
   * unmapped range. A table under a whole-size range is freed; a block larger than `pgsize` is split.
   */
  unmapPages(iova: number, pgsize: number, pgcount: number): number {
    const sizeLg2 = this.sizeLg2Of(pgsize);
    if (sizeLg2 < 0 || pgcount < 1) return 0;
    if (!(iova < POW2[this.ias])) return 0;
    const leaf = this.unmapLookedUp(iova, sizeLg2, pgcount);
    return leaf >= 0 ? leaf : this.unmapAt(iova, sizeLg2, pgcount, this.startLevel, this.pgd);
  }

  /**
   * `iommu_map`: maps [iova, iova + size) to [pa, ...) with the largest page sizes that alignment and
   * length allow. Returns 0 or a negative errno; on failure everything this call mapped is unmapped.
   */
  map(iova: number, pa: number, size: number, prot: number): number {
    const min = POW2[this.pageSizesLg2[0]];
    if (iova % min !== 0 || pa % min !== 0 || size % min !== 0) return -EINVAL;
    const origIova = iova;
    const origSize = size;
    let err = 0;
    while (size > 0) {
      const pgsizeLg2 = this.pgsizeFor(iova, pa, size);
      const count = this.countFor(iova, pa, size, pgsizeLg2);
      const ret = this.mapPages(iova, pa, POW2[pgsizeLg2], count, prot);
      // Pages may be mapped even when an error occurred: count them so they are unmapped below.
      size -= this.mapped;
      if (ret < 0) {
        err = ret;
        break;
      }
      if (ret === 0) break; // no access requested: nothing is mapped
      iova += ret;
      pa += ret;
    }
    if (err < 0) this.unmap(origIova, origSize - size);
    return err;
  }

  /** `iommu_unmap`: unmaps up to `size` bytes at `iova`, stopping at the first hole. Returns bytes unmapped. */
  unmap(iova: number, size: number): number {
    const min = POW2[this.pageSizesLg2[0]];
    if (iova % min !== 0 || size % min !== 0) return 0;
    let unmapped = 0;
    while (unmapped < size) {
      const pgsizeLg2 = this.pgsizeFor(iova, iova, size - unmapped);
      const count = this.countFor(iova, iova, size - unmapped, pgsizeLg2);
      const done = this.unmapPages(iova, POW2[pgsizeLg2], count);
      if (done === 0) break;
      iova += done;
      unmapped += done;
    }
    return unmapped;
  }

  /**
   * Linux `arm_lpae_iova_to_phys`, keeping the leaf: true when `iova` is mapped, with the leaf's
   * output, size and PTE left in `probe` (a software walk: no TLB, no events, no output-size check).
   */
  lookup(iova: number): boolean {
    this.lookedUp = -1;
    if (!(iova < POW2[this.ias])) return false;
    this.probeRegime ??= new WalkRegime({
      stage: this.stage,
      granuleLg2: this.granuleLg2,
      inputBits: this.ias,
      startLevel: this.startLevel,
      ttb: this.pgd,
      oaBits: 52,
      paMaxBits: 52,
    });
    const span = Math.floor(iova * INV_POW2[this.granuleLg2 + this.stride]);
    if (span === this.leafSpan && this.lookupLeaf(iova)) {
      this.lookedUp = iova;
      return true;
    }
    const p = this.probe;
    if (walk(this.mem, this.probeRegime, iova, ACCESS_PROBE, p) !== FAULT_NONE) return false;
    if (p.level === 3 && this.startLevel < 3) {
      this.leafTable = p.descAddr - this.index(iova, 3) * 8;
      this.leafSpan = span;
    }
    this.lookedUp = iova;
    return true;
  }

  /**
   * lookup() through the walk cache: the page descriptor read straight from the remembered level-3
   * table, decoded as walk() decodes a level-3 leaf (a 64 KiB granule with OA[51:48] in bits
   * [15:12]). False when it does not hold a page; the full walk then says what it holds.
   * The three levels above were half of vfio's per-page iova_to_phys in an UNMAP_ALL (bench unmap-all).
   */
  private lookupLeaf(iova: number): boolean {
    const descAddr = this.leafTable + this.index(iova, 3) * 8;
    const w = this.frames?.wordsAt(descAddr);
    if (w === undefined) return false;
    const o = (descAddr & 0xfff) >>> 2;
    const lo = w[o];
    const hi = w[o + 1];
    if ((lo & 3) !== 3) return false;
    const g = this.granuleLg2;
    const p = this.probe;
    p.fault = FAULT_NONE;
    p.level = 3;
    p.sizeLg2 = g;
    p.oa = this.deref(lo, hi) + ((iova >>> 0) & (POW2[g] - 1));
    p.descAddr = descAddr;
    p.descLo = lo;
    p.descHi = hi;
    return true;
  }

  /** Linux `arm_lpae_iova_to_phys`: the output address, or 0 when nothing is mapped. */
  iovaToPhys(iova: number): number {
    return this.lookup(iova) ? this.probe.oa : 0;
  }

  /** Frees every table, the start table last (Linux `arm_lpae_free_pgtable`). */
  free(): void {
    this.freeTable(this.startLevel, this.pgd);
  }

  /**
   * The unmap of one leaf the last lookup() found, cleared where the walk found it: vfio's unmap walks
   * to each leaf for its PA and then unmaps it, and a second descent was a tenth of UNMAP_ALL (bench
   * unmap-all). Only while no table was freed since (one could hold another span now) and the PTE
   * still holds the words read (a remap, or the hardware's access flag); otherwise -1 and the caller
   * descends.
   */
  private unmapLookedUp(iova: number, sizeLg2: number, pgcount: number): number {
    const p = this.probe;
    if (pgcount !== 1 || iova !== this.lookedUp || sizeLg2 !== p.sizeLg2) return -1;
    const w = this.frames?.wordsAt(p.descAddr);
    const o = (p.descAddr & 0xfff) >>> 2;
    if (w === undefined || w[o] !== p.descLo || w[o + 1] !== p.descHi) return -1;
    w[o] = 0;
    w[o + 1] = 0;
    const size = POW2[sizeLg2];
    this.tlb?.addPage?.(iova, size);
    return size;
  }

  /** Largest page size for the next chunk (Linux `iommu_pgsize`), as log2. */
  pgsizeFor(iova: number, pa: number, size: number): number {
    const maxLg2 = Math.min(fls(size), Math.min(ctz(iova), ctz(pa)));
    let best = -1;
    for (const k of this.pageSizesLg2) if (k <= maxLg2) best = k;
    return best;
  }

  /**
   * How many pages of 2^pgsizeLg2 to map at once (the count half of `iommu_pgsize`): all of `size`,
   * unless the next larger page size could be used from its next aligned boundary.
   */
  countFor(iova: number, pa: number, size: number, pgsizeLg2: number): number {
    const next = this.pageSizesLg2.find((k) => k > pgsizeLg2);
    if (next !== undefined) {
      const nextSize = POW2[next];
      if (iova % nextSize === pa % nextSize) {
        const offset = nextSize - or53(iova % nextSize, pa % nextSize);
        if (offset + nextSize <= size) size = offset;
      }
    }
    return Math.floor(size * INV_POW2[pgsizeLg2]);
  }

  /** log2 of `pgsize` when it is one of the table's page sizes, else -1 (no closure per call). */
  private sizeLg2Of(pgsize: number): number {
    const sizes = this.pageSizesLg2;
    for (let i = 0; i < sizes.length; i++) if (POW2[sizes[i]] === pgsize) return sizes[i];
    return -1;
  }

  private index(addr: number, level: number): number {
    const bits = level === this.startLevel ? this.pgdBitsLg2 : this.stride;
    // The low bits through ToInt32 (exact for an integral double), not fmod (`%`): a third of an unmap.
    return Math.floor(addr * INV_POW2[levelShift(this.granuleLg2, level)]) & ((1 << bits) - 1);
  }

  private entries(level: number): number {
    return POW2[level === this.startLevel ? this.pgdBitsLg2 : this.stride];
  }

  private tableBytes(level: number): number {
    return level === this.startLevel ? this.pgdBytes : POW2[this.granuleLg2];
  }

  private isLeaf(lo: number, level: number): boolean {
    return level === 3 ? (lo & 3) === 3 : (lo & 3) === 1;
  }

  /** Next-level table address (OA[51:48] in bits [15:12] with 64KB, as Linux `iopte_to_paddr`). */
  private deref(lo: number, hi: number): number {
    return decodeAddress(lo, hi, this.granuleLg2, this.granuleLg2 === 16);
  }

  /** `__arm_lpae_map`: descend to the level whose block size is the page size, allocating tables. */
  private mapAt(
    iova: number,
    pa: number,
    sizeLg2: number,
    pgcount: number,
    attrs: Pte,
    level: number,
    table: number,
  ): number {
    const idx = this.index(iova, level);
    const ptep = table + idx * 8;
    if (levelShift(this.granuleLg2, level) === sizeLg2) {
      // Install leaves here, up to the end of this table.
      const num = Math.min(pgcount, this.entries(level) - idx);
      const ret = this.initPtes(iova, pa, sizeLg2, num, attrs, level, table, idx);
      if (ret === 0) this.mapped += num * POW2[sizeLg2];
      return ret;
    }
    if (level >= 3) return -EINVAL;
    let lo = this.mem.readU32(ptep) >>> 0;
    let hi = this.mem.readU32(ptep + 4) >>> 0;
    if (lo === 0 && hi === 0) {
      const next = this.alloc.allocTable(POW2[this.granuleLg2]);
      if (next < 0) return -ENOMEM;
      const t = tablePte(next, this.granuleLg2);
      writePte(this.mem, ptep, t);
      lo = t.lo;
      hi = t.hi;
    } else if (this.isLeaf(lo, level)) {
      // We require an unmap first.
      return -EEXIST;
    }
    return this.mapAt(iova, pa, sizeLg2, pgcount, attrs, level + 1, this.deref(lo, hi));
  }

  /** `arm_lpae_init_pte`: refuse over a leaf, free a table being replaced by a block, write leaves. */
  private initPtes(
    iova: number,
    pa: number,
    sizeLg2: number,
    num: number,
    attrs: Pte,
    level: number,
    table: number,
    idx: number,
  ): number {
    const size = POW2[sizeLg2];
    for (let i = 0; i < num; i++) {
      const p = table + (idx + i) * 8;
      const lo = this.mem.readU32(p) >>> 0;
      const hi = this.mem.readU32(p + 4) >>> 0;
      if (this.isLeaf(lo, level)) return -EEXIST;
      if ((lo & 3) === 3 && level < 3 && (lo !== 0 || hi !== 0)) {
        // A table under the new block: unmap (and free) it first.
        if (this.unmapAt(iova + i * size, sizeLg2, 1, level, table) !== size) return -EINVAL;
      }
    }
    for (let i = 0; i < num; i++) {
      writePte(
        this.mem,
        table + (idx + i) * 8,
        leafPteInto(attrs, pa + i * size, level, this.granuleLg2, this.leaf),
      );
    }
    return 0;
  }

  /** `__arm_lpae_unmap`. */
  private unmapAt(iova: number, sizeLg2: number, pgcount: number, level: number, table: number): number {
    if (level > 3) return 0;
    const idx = this.index(iova, level);
    const ptep = table + idx * 8;
    // The PTE's frame in one lookup where the memory gives it (PhysMem): an unmap reads a PTE per
    // level and clears the leaves, and two lookups a word were a fifth of UNMAP_ALL (bench unmap-all).
    const w = this.frames?.wordsAt(ptep);
    const o = (ptep & 0xfff) >>> 2;
    const lo = w !== undefined ? w[o] : this.mem.readU32(ptep) >>> 0;
    const hi = w !== undefined ? w[o + 1] : this.mem.readU32(ptep + 4) >>> 0;
    if (lo === 0 && hi === 0) return 0;
    const size = POW2[sizeLg2];
    if (levelShift(this.granuleLg2, level) === sizeLg2) {
      const num = Math.min(pgcount, this.entries(level) - idx);
      let i = 0;
      for (; i < num; i++) {
        const p = ptep + i * 8;
        // Leaves past the frame (16/64 KiB tables) go word by word.
        const j = o + 2 * i;
        const inFrame = w !== undefined && j < 1024;
        const l = inFrame ? w[j] : this.mem.readU32(p) >>> 0;
        const h = inFrame ? w[j + 1] : this.mem.readU32(p + 4) >>> 0;
        if (l === 0 && h === 0) break;
        if (inFrame) {
          w[j] = 0;
          w[j + 1] = 0;
        } else {
          this.mem.writeU32(p, 0);
          this.mem.writeU32(p + 4, 0);
        }
        if (!this.isLeaf(l, level)) {
          // A table under the range: flush walks over it and free the whole subtree.
          this.tlb?.flushWalk?.(iova + i * size, size, POW2[this.granuleLg2]);
          this.freeTable(level + 1, this.deref(l, h));
        } else {
          this.tlb?.addPage?.(iova + i * size, size);
        }
      }
      return i * size;
    }
    if (this.isLeaf(lo, level)) {
      if (!this.split) return 0;
      return this.splitBlockUnmap(iova, sizeLg2, pgcount, lo, hi, level + 1, ptep);
    }
    return this.unmapAt(iova, sizeLg2, pgcount, level + 1, this.deref(lo, hi));
  }

  /**
   * `arm_lpae_split_blk_unmap`: replace the block with a table of next-level leaves carrying its
   * attributes, minus the part being unmapped, then continue the unmap in the new table.
   */
  private splitBlockUnmap(
    iova: number,
    sizeLg2: number,
    pgcount: number,
    blkLo: number,
    blkHi: number,
    level: number,
    ptep: number,
  ): number {
    const table = this.alloc.allocTable(POW2[this.granuleLg2]);
    if (table < 0) return 0;
    const splitLg2 = levelShift(this.granuleLg2, level);
    const splitSize = POW2[splitLg2];
    const entries = POW2[this.stride];
    let unmapStart = -1;
    let num = 0;
    if (sizeLg2 === splitLg2) {
      unmapStart = this.index(iova, level);
      num = Math.min(pgcount, entries - unmapStart);
    }
    // Attributes of the block without address and type (Linux ATTR_MASK: bits 11:2, 51, 53, 54).
    const attrs = { lo: (blkLo & 0xffc) >>> 0, hi: (blkHi & 0x00680000) >>> 0 };
    let blkPa = decodeAddress(blkLo, blkHi, levelShift(this.granuleLg2, level - 1), this.granuleLg2 === 16);
    for (let i = 0; i < entries; i++, blkPa += splitSize) {
      if (i >= unmapStart && i < unmapStart + num) continue;
      writePte(this.mem, table + i * 8, leafPte(attrs, blkPa, level, this.granuleLg2));
    }
    writePte(this.mem, ptep, tablePte(table, this.granuleLg2));
    if (unmapStart >= 0) {
      for (let i = 0; i < num; i++) this.tlb?.addPage?.(iova + i * POW2[sizeLg2], POW2[sizeLg2]);
      return num * POW2[sizeLg2];
    }
    return this.unmapAt(iova, sizeLg2, pgcount, level, table);
  }

  private freeTable(level: number, table: number): void {
    this.lookedUp = -1;
    this.leafSpan = -1;
    if (level < 3) {
      const n = level === this.startLevel ? POW2[this.pgdBitsLg2] : POW2[this.stride];
      for (let i = 0; i < n; i++) {
        const lo = this.mem.readU32(table + i * 8) >>> 0;
        const hi = this.mem.readU32(table + i * 8 + 4) >>> 0;
        if ((lo !== 0 || hi !== 0) && !this.isLeaf(lo, level)) this.freeTable(level + 1, this.deref(lo, hi));
      }
    }
    this.alloc.freeTable(table, this.tableBytes(level));
  }
}

/** The granule Linux picks from a bitmap (`arm_lpae_restrict_pgsizes`, assuming a 4KB kernel PAGE_SIZE). */
function chooseGranule(bitmap: number): number {
  const lg2s = bitmapLg2s(bitmap);
  if (!lg2s.some((k) => k === 12 || k === 14 || k === 16)) return -1;
  if (lg2s.includes(12)) return 12;
  if (lg2s.some((k) => k < 12)) return -1;
  // The smallest size above PAGE_SIZE becomes the granule; only 16KB and 64KB are formats.
  const smallest = lg2s[0];
  return smallest === 14 || smallest === 16 ? smallest : -1;
}

/** Bitwise OR of two non-negative numbers < 2^53. */
function or53(a: number, b: number): number {
  const lo = ((a >>> 0) | (b >>> 0)) >>> 0;
  const hi = Math.floor(a / 4294967296) | Math.floor(b / 4294967296);
  return hi * 4294967296 + lo;
}
