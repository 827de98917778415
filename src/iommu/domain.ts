/**
 * struct iommu_domain and the core's map/unmap (drivers/iommu/iommu.c): requests are split into
 * the largest page sizes the domain supports (iommu_pgsize) and handed to the driver, which
 * writes its page tables (or, for virtio-iommu, sends requests to the device).
 *
 * IOVAs and physical addresses are numbers. Every value the core handles is a multiple of the
 * smallest page size (4 KiB), and such values are exact as doubles up to 2^64, so even a
 * virtio-iommu domain reaching 2^64 - 4 KiB is exact; ranges use exclusive ends (2^64 is exact too).
 */

import { ctz, fls, POW2 } from '../pgtable/index.ts';
import { EINVAL, ENODEV } from '../uapi/errno.ts';
import type { IommuDriver } from './driver.ts';
import type { Device } from './group.ts';
import { gatherAdd, type IotlbGather } from './types.ts';

export type DomainType = 'unmanaged' | 'dma' | 'identity' | 'blocked' | 'nested';

/** log2 of the set bits of a 64-bit page-size bitmap, ascending. */
function pgsizeLg2s(bitmap: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((bitmap >> BigInt(i)) & 1n) out.push(i);
  return out;
}

/**
 * x mod 2^lg2 for an integer x (exact as a double, up to 2^64): the low bits through ToInt32, which
 * keeps an integral double's value mod 2^32 exactly; fmod (`%`) only for moduli above 2^32.
 */
export function modPow2(x: number, lg2: number): number {
  if (lg2 < 32) return x & ((1 << lg2) - 1);
  return lg2 === 32 ? x >>> 0 : x % POW2[lg2];
}

/**
 * What the IOMMU hardware reads for a domain (for state digests and views): an LPAE table from its
 * pgd, a VT-d second-level table, or virtio-iommu's device-side mapping list; null before it has any.
 */
export type DomainTables =
  | { kind: 'lpae'; pgd: number; startLevel: number; entries: number }
  | { kind: 'vtd'; root: number; levels: number }
  | { kind: 'mappings'; mappings: Iterable<{ iova: number; size: number; pa: number; flags: number }> }
  | null;

export abstract class IommuDomain {
  abstract readonly driver: IommuDriver;
  type: DomainType = 'unmanaged';
  /** Inclusive aperture (domain geometry). */
  apertureStart = 0n;
  apertureEnd = 0n;
  readonly devices = new Set<Device>();
  /** Cached pgsizeLg2s(pgsizeBitmap), and per k in 0..64 the largest supported lg2 <= k and the
   * smallest above k (-1: none): iommu_pgsize in O(1), whatever the bitmap (virtio-iommu has 52 sizes). */
  private bitmap = 0n;
  private lg2s: number[] = [];
  private floorLg2 = new Int8Array(65).fill(-1);
  private aboveLg2 = new Int8Array(65).fill(-1);
  /** Bytes from the address given to the last resolve() to the end of its leaf mapping (0: unmapped). */
  protected resolvedRemaining = 0;
  /** PA of the run found by the last contiguousRun() (-1 when it found none). */
  runPa = -1;
  private readonly scratchGather: IotlbGather = { start: 0, end: 0, pgsize: 0 };

  /** Bit n set: pages of 2^n bytes can be mapped. Setting it derives the page-size tables once. */
  get pgsizeBitmap(): bigint {
    return this.bitmap;
  }

  set pgsizeBitmap(b: bigint) {
    this.bitmap = b;
    const lg2s = pgsizeLg2s(b);
    this.lg2s = lg2s;
    this.floorLg2.fill(-1);
    this.aboveLg2.fill(-1);
    for (let k = 0; k <= 64; k++) {
      for (const l of lg2s) if (l <= k) this.floorLg2[k] = l;
      for (let i = lg2s.length - 1; i >= 0; i--) if (lg2s[i] > k) this.aboveLg2[k] = lg2s[i];
    }
  }

  /** Driver: map `count` pages of `pgsize` bytes; returns bytes mapped or -errno. */
  protected abstract mapPages(iova: number, pa: number, pgsize: number, count: number, prot: number): number;
  /** Driver: unmap up to `count` pages of `pgsize`; returns bytes unmapped (may exceed the request). */
  protected abstract unmapPages(iova: number, pgsize: number, count: number, gather: IotlbGather): number;
  /** Physical address `iova` translates to, or -1. */
  abstract iovaToPhys(iova: number): number;
  /** Size of the leaf mapping that covers `iova` (0 when unmapped). */
  abstract leafSize(iova: number): number;
  /**
   * iovaToPhys and the rest of the leaf at once: the PA (or -1), with the bytes from `iova` to the end
   * of the leaf that maps it in `resolvedRemaining`. This default reads leafSize() as a naturally
   * aligned power-of-two block (page tables); drivers whose mappings are not (virtio-iommu) or whose
   * lookup yields both at once override it.
   */
  protected resolve(iova: number): number {
    const pa = this.iovaToPhys(iova);
    const leaf = pa < 0 ? 0 : this.leafSize(iova);
    this.resolvedRemaining = leaf === 0 ? 0 : leaf - modPow2(iova, fls(leaf));
    return pa;
  }
  /** The tables the hardware walks for this domain (see DomainTables). */
  hwTables(): DomainTables {
    return null;
  }
  /** Flushes the IOTLB for the gathered range (iommu_iotlb_sync). */
  iotlbSync(_gather: IotlbGather): void {}
  /** Asks the domain to block no-snoop DMA (5.19+ enforce_cache_coherency). */
  enforceCacheCoherency(): boolean {
    return false;
  }
  /** Releases the domain's tables. */
  free(): void {}

  /**
   * iommu_map: EINVAL unless iova, pa and size are aligned to the smallest page; on a driver error
   * everything mapped by this call is unmapped again.
   */
  map(iova: number, pa: number, size: number, prot: number): number {
    const sizes = this.lg2s;
    if (sizes.length === 0) return -ENODEV;
    const minLg2 = sizes[0];
    if (size === 0 || modPow2(iova, minLg2) !== 0 || modPow2(pa, minLg2) !== 0 || modPow2(size, minLg2) !== 0)
      return -EINVAL;
    let done = 0;
    while (done < size) {
      const lg2 = this.pickPgsize(iova + done, pa + done, size - done);
      const count = this.pgcount(iova + done, pa + done, size - done, lg2);
      const r = this.mapPages(iova + done, pa + done, POW2[lg2], count, prot);
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
    const sizes = this.lg2s;
    if (sizes.length === 0) return 0;
    if (modPow2(iova, sizes[0]) !== 0 || modPow2(size, sizes[0]) !== 0) return 0;
    let g = gather;
    if (g === undefined) {
      g = this.scratchGather;
      g.start = g.end = g.pgsize = 0;
    }
    let done = 0;
    while (done < size) {
      const lg2 = this.pickPgsize(iova + done, iova + done, size - done);
      const count = this.pgcount(iova + done, iova + done, size - done, lg2);
      const r = this.unmapPages(iova + done, POW2[lg2], count, g);
      if (r <= 0) break;
      gatherAdd(g, iova + done, r);
      done += r;
    }
    if (gather === undefined && done > 0) this.iotlbSync(g);
    return done;
  }

  /**
   * Length of the physically contiguous run that starts at `iova` (at most `max` bytes), found by
   * following leaf mappings: what vfio's unmap loop computes page by page, here per block. 0 when
   * `iova` is unmapped; the run's first PA is left in `runPa`.
   */
  contiguousRun(iova: number, max: number): number {
    let len = 0;
    let expect = -1;
    this.runPa = -1;
    while (len < max) {
      const cur = iova + len;
      const here = this.resolve(cur);
      if (here < 0 || (len > 0 && here !== expect)) break;
      if (len === 0) this.runPa = here;
      const remaining = this.resolvedRemaining;
      if (remaining === 0) break;
      const step = Math.min(remaining, max - len);
      len += step;
      expect = here + step;
    }
    return len;
  }

  /**
   * iommu_pgsize: the largest supported page that fits the size and both addresses' alignment
   * (log2 at most fls(size), ctz(iova) and ctz(pa)); the smallest page when none fits.
   */
  private pickPgsize(iova: number, pa: number, size: number): number {
    const best = this.floorLg2[Math.min(fls(size), ctz(iova), ctz(pa))];
    return best < 0 ? this.lg2s[0] : best;
  }

  /** How many pages of 2^lg2 to map before a larger page size could take over. */
  private pgcount(iova: number, pa: number, size: number, lg2: number): number {
    const pgsize = POW2[lg2];
    let count = Math.floor(size / pgsize);
    const next = this.aboveLg2[lg2];
    if (next >= 0) {
      const big = POW2[next];
      const off = modPow2(iova, next);
      if (off === modPow2(pa, next)) {
        const toBoundary = (big - off) / pgsize;
        if (toBoundary < count && size - toBoundary * pgsize >= big) count = toBoundary;
      }
    }
    return count;
  }
}
