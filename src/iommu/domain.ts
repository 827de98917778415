/**
 * struct iommu_domain and the core's map/unmap (drivers/iommu/iommu.c): requests are split into
 * the largest page sizes the domain supports (iommu_pgsize) and handed to the driver, which
 * writes its page tables (or, for virtio-iommu, sends requests to the device).
 *
 * IOVAs and physical addresses are numbers. Every value the core handles is a multiple of the
 * smallest page size (4 KiB), and such values are exact as doubles up to 2^64, so even a
 * virtio-iommu domain reaching 2^64 - 4 KiB is exact; ranges use exclusive ends (2^64 is exact too).
 */

import { EINVAL, ENODEV } from '../uapi/errno.ts';
import type { IommuDriver } from './driver.ts';
import type { Device } from './group.ts';
import { gatherAdd, type IotlbGather } from './types.ts';

export type DomainType = 'unmanaged' | 'dma' | 'identity' | 'blocked' | 'nested';

/** log2 of the set bits of a 64-bit page-size bitmap, ascending. */
export function pgsizeLg2s(bitmap: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((bitmap >> BigInt(i)) & 1n) out.push(i);
  return out;
}

export abstract class IommuDomain {
  abstract readonly driver: IommuDriver;
  type: DomainType = 'unmanaged';
  /** Bit n set: pages of 2^n bytes can be mapped. */
  pgsizeBitmap = 0n;
  /** Inclusive aperture (domain geometry). */
  apertureStart = 0n;
  apertureEnd = 0n;
  readonly devices = new Set<Device>();
  /** Cached pgsizeLg2s(pgsizeBitmap). */
  private lg2s: number[] = [];
  private lg2sFor = -1n;

  /** Driver: map `count` pages of `pgsize` bytes; returns bytes mapped or -errno. */
  protected abstract mapPages(iova: number, pa: number, pgsize: number, count: number, prot: number): number;
  /** Driver: unmap up to `count` pages of `pgsize`; returns bytes unmapped (may exceed the request). */
  protected abstract unmapPages(iova: number, pgsize: number, count: number, gather: IotlbGather): number;
  /** Physical address `iova` translates to, or -1. */
  abstract iovaToPhys(iova: number): number;
  /** Size of the leaf mapping that covers `iova` (0 when unmapped). */
  abstract leafSize(iova: number): number;
  /** Flushes the IOTLB for the gathered range (iommu_iotlb_sync). */
  iotlbSync(_gather: IotlbGather): void {}
  /** Asks the domain to block no-snoop DMA (5.19+ enforce_cache_coherency). */
  enforceCacheCoherency(): boolean {
    return false;
  }
  /** Releases the domain's tables. */
  free(): void {}

  protected get minPgsize(): number {
    return 2 ** this.sizes()[0];
  }

  /**
   * iommu_map: EINVAL unless iova, pa and size are aligned to the smallest page; on a driver error
   * everything mapped by this call is unmapped again.
   */
  map(iova: number, pa: number, size: number, prot: number): number {
    const sizes = this.sizes();
    if (sizes.length === 0) return -ENODEV;
    const min = 2 ** sizes[0];
    if (size === 0 || iova % min !== 0 || pa % min !== 0 || size % min !== 0) return -EINVAL;
    let done = 0;
    while (done < size) {
      const lg2 = this.pickPgsize(iova + done, pa + done, size - done);
      const pgsize = 2 ** lg2;
      const count = this.pgcount(iova + done, pa + done, size - done, lg2);
      const r = this.mapPages(iova + done, pa + done, pgsize, count, prot);
      if (r < 0) {
        if (done > 0) this.unmap(iova, done);
        return r;
      }
      done += r;
    }
    return 0;
  }

  /** iommu_unmap / iommu_unmap_fast: returns the bytes unmapped (0 on misalignment). */
  unmap(iova: number, size: number, gather?: IotlbGather): number {
    const sizes = this.sizes();
    if (sizes.length === 0) return 0;
    const min = 2 ** sizes[0];
    if (iova % min !== 0 || size % min !== 0) return 0;
    const g = gather ?? { start: 0, end: 0, pgsize: 0 };
    let done = 0;
    while (done < size) {
      const lg2 = this.pickPgsize(iova + done, iova + done, size - done);
      const count = this.pgcount(iova + done, iova + done, size - done, lg2);
      const r = this.unmapPages(iova + done, 2 ** lg2, count, g);
      if (r <= 0) break;
      gatherAdd(g, iova + done, r);
      done += r;
    }
    if (gather === undefined && done > 0) this.iotlbSync(g);
    return done;
  }

  /**
   * Length of the physically contiguous run that starts at `iova` (at most `max` bytes), found by
   * following leaf mappings: what vfio's unmap loop computes page by page, here per block.
   */
  contiguousRun(iova: number, max: number): number {
    const pa = this.iovaToPhys(iova);
    if (pa < 0) return 0;
    let len = 0;
    while (len < max) {
      const cur = iova + len;
      const here = this.iovaToPhys(cur);
      if (here !== pa + len) break;
      const leaf = this.leafSize(cur);
      if (leaf === 0) break;
      len += Math.min(leaf - (cur % leaf), max - len);
    }
    return len;
  }

  protected sizes(): number[] {
    if (this.lg2sFor !== this.pgsizeBitmap) {
      this.lg2s = pgsizeLg2s(this.pgsizeBitmap);
      this.lg2sFor = this.pgsizeBitmap;
    }
    return this.lg2s;
  }

  /** iommu_pgsize: the largest supported page that fits the size and both addresses' alignment. */
  private pickPgsize(iova: number, pa: number, size: number): number {
    const sizes = this.sizes();
    for (let i = sizes.length - 1; i >= 0; i--) {
      const p = 2 ** sizes[i];
      if (p <= size && iova % p === 0 && pa % p === 0) return sizes[i];
    }
    return sizes[0];
  }

  /** How many pages of 2^lg2 to map before a larger page size could take over. */
  private pgcount(iova: number, pa: number, size: number, lg2: number): number {
    const pgsize = 2 ** lg2;
    let count = Math.floor(size / pgsize);
    const sizes = this.sizes();
    const next = sizes.find((s) => s > lg2);
    if (next !== undefined) {
      const big = 2 ** next;
      if (iova % big === pa % big) {
        const toBoundary = (big - (iova % big)) / pgsize;
        if (toBoundary < count && size - toBoundary * pgsize >= big) count = toBoundary;
      }
    }
    return count;
  }
}
