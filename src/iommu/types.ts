/**
 * IOMMU core vocabulary (include/linux/iommu.h): protection flags, reserved regions,
 * capabilities, the IOTLB gather, and the DMA port a device uses to reach memory.
 */

/** IOMMU_* protection flags: one table, pgtable's (the lowest layer that speaks them). */
export {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from '../pgtable/types.ts';

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

/**
 * vfio-nest's stage-1 binding (docs/nesting-uapi.md): the guest's stage-1 configuration, bound on a
 * nesting (stage-2) domain, as the driver needs it.
 */
export interface NestedS1Config {
  /** What the guest's STE says: translate through its CDs, bypass stage 1, or abort. */
  mode: 'translate' | 'bypass' | 'abort';
  /** IPA of the guest's CD table (STE.S1ContextPtr). */
  cdTable: number;
  /** STE.S1CDMax, S1Fmt, S1DSS. */
  s1cdmax: number;
  s1fmt: number;
  s1dss: number;
}

/** A guest's stage-1 cache invalidation, forwarded by the VMM. */
export type S1Invalidation =
  | { kind: 'all' }
  | { kind: 'asid'; asid: number }
  | { kind: 'va'; asid: number | null; addr: number; granule: number; count: number; leaf: boolean }
  | { kind: 'cd'; ssid: number | null };

/** A stage-1 fault the host hands to the VMM: the event record, with the physical StreamID. */
export interface S1FaultRecord {
  sid: number;
  ssid: number;
  words: [bigint, bigint, bigint, bigint];
}
