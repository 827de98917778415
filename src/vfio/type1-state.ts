/**
 * The type-1 backend's state: struct vfio_iommu, vfio_domain and vfio_dma
 * (drivers/vfio/vfio_iommu_type1.c).
 */

import type { IommuDomain } from '../iommu/domain.ts';
import type { IommuGroup } from '../iommu/group.ts';
import { type Range, RangeTree } from '../iommu/range-tree.ts';
import type { Current } from '../mm/file.ts';
import type { MmStruct } from '../mm/mm.ts';
import type { KernelProfile } from '../uapi/profile.ts';
import { lowestBit } from '../uapi/u64.ts';
import { VFIO_TYPE1_IOMMU, VFIO_TYPE1_NESTING_IOMMU } from '../uapi/vfio.ts';
import type { IovaRange } from './iova-list.ts';
import type { VfioParams } from './params.ts';

/** One user DMA mapping. `size` grows while it is being pinned and mapped. */
export interface VfioDma extends Range {
  /** Process address of the first byte: page aligned, so exact as a number up to 2^64. */
  vaddr: number;
  /** IOMMU_READ | IOMMU_WRITE from the MAP flags. */
  prot: number;
  iommuMapped: boolean;
  /** capable(CAP_IPC_LOCK) when it was mapped: the limit does not apply. */
  lockCap: boolean;
  /** The process charged for it (dma->task, dma->mm); VADDR updates can hand it over. */
  owner: Current;
  /** The address space whose pages are pinned (a VADDR handover moves the charge, not the pins). */
  pinMm: MmStruct;
  /** Pages charged to the owner's locked_vm for this mapping (dma->locked_vm). */
  lockedPages: number;
  /** VADDR flow: the vaddr was invalidated by UNMAP_DMA(VADDR) and awaits MAP_DMA(VADDR). */
  vaddrInvalid: boolean;
  /** A dirty bitmap is allocated (dirty tracking was on): every page is reported dirty. */
  dirtyBitmap: boolean;
}

export interface VfioDomain {
  domain: IommuDomain;
  groups: IommuGroup[];
  /** enforce_cache_coherency succeeded (5.19+); DMA_CC_IOMMU reports the AND over domains. */
  enforceCacheCoherency: boolean;
  /** IOMMU_CACHE when the IOMMU is coherent (before 5.19 each domain had its own prot). */
  prot: number;
}

const TWO_64 = 2 ** 64;
/** PAGE_MASK as a u64: the page-size bitmap of a container with no domain (vfio-type1.md §5). */
export const PAGE_MASK_U64 = 0xffff_ffff_ffff_f000n;

export class Type1State {
  readonly v2: boolean;
  readonly nesting: boolean;
  /** Most recently attached first (the kernel adds at the head). */
  domains: VfioDomain[] = [];
  readonly dmas = new RangeTree<VfioDma>();
  dmaAvail: number;
  private bitmap = PAGE_MASK_U64;
  /** Cached from the bitmap: the smallest page size and its log2 (read on every MAP and UNMAP). */
  private minPgsize = 4096;
  private minPgsizeLg2 = 12;
  private list: IovaRange[] = [];
  /**
   * The valid IOVA list as numbers, [start, end) per range, rounded inwards to 4 KiB: every MAP
   * range is page aligned, so comparing it with these is exact (see iovaRangeValid).
   */
  private listStart: number[] = [];
  private listEnd: number[] = [];
  dirtyPageTracking = false;
  vaddrInvalidCount = 0;

  constructor(
    readonly profile: KernelProfile,
    readonly params: VfioParams,
    type: number,
  ) {
    this.v2 = type !== VFIO_TYPE1_IOMMU;
    this.nesting = type === VFIO_TYPE1_NESTING_IOMMU && profile.nesting !== 'removed';
    this.dmaAvail = params.dmaEntryLimit;
  }

  /** AND of the domains' page sizes; PAGE_MASK with no domain. */
  get pgsizeBitmap(): bigint {
    return this.bitmap;
  }

  set pgsizeBitmap(b: bigint) {
    this.bitmap = b;
    this.minPgsizeLg2 = b === 0n ? 12 : lowestBit(b);
    this.minPgsize = 2 ** this.minPgsizeLg2;
  }

  /** Smallest page size: the alignment unit of MAP/UNMAP and the dirty bitmap. */
  get pgsize(): number {
    return this.minPgsize;
  }

  /** log2 of pgsize. */
  get pgsizeLg2(): number {
    return this.minPgsizeLg2;
  }

  /** The valid IOVA list (5.4+): inclusive 64-bit bounds, sorted. */
  get iovaList(): IovaRange[] {
    return this.list;
  }

  set iovaList(list: IovaRange[]) {
    this.list = list;
    // Rounded inwards to 4 KiB, then exact as numbers (multiples of 4096 up to 2^64).
    this.listStart = list.map((r) => Number(((r.start + 0xfffn) >> 12n) << 12n));
    this.listEnd = list.map((r) => Number(((r.end + 1n) >> 12n) << 12n));
  }

  /**
   * vfio_iommu_iova_dma_valid for a page-aligned range [start, end) (exclusive end, up to 2^64):
   * inside one range of the list; an empty list allows everything. For such ranges, start >= r.start
   * iff start >= r.start rounded up to a page, and end - 1 <= r.end iff end <= (r.end + 1) rounded down.
   */
  iovaRangeValid(start: number, end: number): boolean {
    const n = this.listStart.length;
    if (n === 0) return true;
    for (let i = 0; i < n; i++) if (start >= this.listStart[i] && end <= this.listEnd[i]) return true;
    return false;
  }

  /**
   * vfio_find_dma as the profile's kernel computes it. Before 6.18 ends are `iova + size` in u64,
   * so a mapping or a query that ends at 2^64 wraps to 0 and the search never matches it.
   */
  findDma(start: number, end: number): VfioDma | undefined {
    if (!this.profile.endOfSpaceBug) return this.dmas.findOverlap(start, end);
    if (end === TWO_64) return undefined;
    for (
      let d = this.dmas.firstOverlapping(start, end);
      d !== undefined && d.iova < end;
      d = this.dmas.next(d)
    )
      if (d.iova + d.size !== TWO_64) return d;
    return undefined;
  }

  /** The mapping holding the byte at `addr`, as vfio_find_dma(addr, 0 or 1) finds it. */
  findDmaContaining(addr: number): VfioDma | undefined {
    const d = this.dmas.findContaining(addr);
    if (d !== undefined && this.profile.endOfSpaceBug && d.iova + d.size === TWO_64) return undefined;
    return d;
  }

  /**
   * vfio_find_dma_first_node: where an unmap walk starts (it then follows rb_next). `all` is
   * UNMAP_ALL's range [0, U64_MAX), whose end does not wrap even before 6.18.
   */
  findDmaFirstNode(start: number, end: number, all: boolean): VfioDma | undefined {
    if (!this.profile.endOfSpaceBug) return this.dmas.firstOverlapping(start, end);
    if (!all && end === TWO_64) return undefined;
    for (let d = this.dmas.firstOverlapping(start, TWO_64); d !== undefined; d = this.dmas.next(d)) {
      if (d.iova + d.size === TWO_64) continue;
      return d.iova >= end ? undefined : d;
    }
    return undefined;
  }

  /** Any mapping inside [start, end] (inclusive 64-bit bounds). */
  hasMappingIn(start: bigint, end: bigint): boolean {
    const s = Number(start - (start % 4096n));
    const e = Number(end - (end % 4096n)) + 4096;
    return this.dmas.findOverlap(s, e) !== undefined;
  }
}
