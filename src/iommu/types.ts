/**
 * IOMMU core vocabulary (include/linux/iommu.h): protection flags, reserved regions,
 * capabilities, the IOTLB gather, and the DMA port a device uses to reach memory.
 */

/** IOMMU_* protection flags, as the kernel numbers them. */
export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;
export const IOMMU_CACHE = 4;
export const IOMMU_NOEXEC = 8;
export const IOMMU_MMIO = 16;
export const IOMMU_PRIV = 32;

/** enum iommu_resv_type. */
export type ResvType = 'direct' | 'direct-relaxable' | 'reserved' | 'msi' | 'sw-msi';

/** A reserved IOVA region of a device: [start, end] inclusive, as 64-bit values. */
export interface ResvRegion {
  start: bigint;
  end: bigint;
  type: ResvType;
}

/** enum iommu_cap values the type-1 backend asks about. */
export type IommuCap = 'cache-coherency' | 'intr-remap' | 'noexec';

/** Ranges whose IOTLB entries must be flushed before the pages can be freed (iommu_iotlb_gather). */
export interface IotlbGather {
  start: number;
  /** Exclusive end; start === end means empty. */
  end: number;
  pgsize: number;
}

export function newGather(): IotlbGather {
  return { start: 0, end: 0, pgsize: 0 };
}

export function gatherAdd(g: IotlbGather, iova: number, size: number): void {
  if (g.start === g.end) {
    g.start = iova;
    g.end = iova + size;
  } else {
    g.start = Math.min(g.start, iova);
    g.end = Math.max(g.end, iova + size);
  }
}
