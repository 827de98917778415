/**
 * The VFIO type-1 IOMMU backend (vfio_iommu_type1): v1 (1), v2 (3) and nesting (6).
 * open -> attach groups (one IOMMU domain per compatible IOMMU, the nesting request before the
 * attach) -> MAP/UNMAP/GET_INFO/DIRTY_PAGES -> detach -> release. Check order and errno follow
 * reference/vfio-type1.md §3.3 and §6; the per-ioctl work lives in the type1-*.ts files.
 */

import {
  iommuAttachGroup,
  iommuDetachGroup,
  iommuGetGroupResvRegions,
  iommuGroupHasIsolatedMsi,
  iommuRequestNesting,
} from '../iommu/core.ts';
import type { IommuDomain } from '../iommu/domain.ts';
import type { IommuGroup } from '../iommu/group.ts';
import { IOMMU_CACHE } from '../iommu/types.ts';
import type { Current } from '../mm/file.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EBUSY, EINVAL, ENOTTY, EPERM } from '../uapi/errno.ts';
import type { KernelProfile } from '../uapi/profile.ts';
import {
  VFIO_DMA_CC_IOMMU,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1_NESTING_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from '../uapi/vfio.ts';
import {
  VFIO_IOMMU_CACHE_INVALIDATE,
  VFIO_IOMMU_GET_FAULTS,
  VFIO_IOMMU_SET_PASID_TABLE,
  VFIO_NEST_BIND_EXTENSION,
} from '../uapi/vfio-nest-ext.ts';
import { aperConflict, aperResize, resvConflict, resvExclude } from './iova-list.ts';
import type { VfioParams } from './params.ts';
import { vfioIommuDirtyPages } from './type1-dirty.ts';
import { vfioIommuGetInfo } from './type1-info.ts';
import { vfioIommuMapDma } from './type1-map.ts';
import { vfioIommuCacheInvalidate, vfioIommuGetFaults, vfioIommuSetPasidTable } from './type1-nest.ts';
import { pinMapDma, removeAllDmas } from './type1-pin.ts';
import { PAGE_MASK_U64, Type1State, type VfioDma, type VfioDomain } from './type1-state.ts';
import { vfioIommuUnmapDma } from './type1-unmap.ts';

/**
 * The type-1 driver's CHECK_EXTENSION, with (`iommu`) or without backend state
 * (vfio-type1.md §3.2; seed-era.md §2.1 for 3.19).
 */
export function type1CheckExtension(
  profile: KernelProfile,
  iommu: Type1Iommu | null,
  ext: bigint,
  params?: VfioParams,
): number {
  switch (ext) {
    case BigInt(VFIO_NEST_BIND_EXTENSION):
      // vfio-nest's extension: only a host built with it, and only where type 6 exists.
      return params?.nestBind && profile.nesting !== 'removed' ? 1 : 0;
    case BigInt(VFIO_TYPE1_IOMMU):
    case BigInt(VFIO_TYPE1v2_IOMMU):
      return 1;
    case BigInt(VFIO_TYPE1_NESTING_IOMMU):
      return profile.nesting === 'removed' ? 0 : 1;
    case BigInt(VFIO_DMA_CC_IOMMU):
      return iommu === null ? 0 : iommu.allDomainsCoherent() ? 1 : 0;
    case BigInt(VFIO_UNMAP_ALL):
      return profile.unmapAllVaddr ? 1 : 0;
    case BigInt(VFIO_UPDATE_VADDR):
      // Needs backend state: 0 before SET_IOMMU (no emulated groups are modelled).
      return profile.unmapAllVaddr && iommu !== null ? 1 : 0;
    default:
      return 0;
  }
}

/** type1's open(type): the types it accepts. 6 is plain v2 once nesting was removed (6.13). */
export function type1Accepts(type: bigint): boolean {
  return (
    type === BigInt(VFIO_TYPE1_IOMMU) ||
    type === BigInt(VFIO_TYPE1v2_IOMMU) ||
    type === BigInt(VFIO_TYPE1_NESTING_IOMMU)
  );
}

export class Type1Iommu {
  readonly s: Type1State;
  /** The type VFIO_SET_IOMMU asked for: 1, 3 (v2) or 6 (nesting; plain v2 once removed). */
  readonly type: number;

  constructor(profile: KernelProfile, params: VfioParams, type: number) {
    this.s = new Type1State(profile, params, type);
    this.type = type;
  }

  get v2(): boolean {
    return this.s.v2;
  }

  get nesting(): boolean {
    return this.s.nesting;
  }

  /** The vfio_dma list in IOVA order: read-only, for display and tests (the playground's VFIO view). */
  dmaList(): readonly VfioDma[] {
    const out: VfioDma[] = [];
    for (let d = this.s.dmas.first(); d !== undefined; d = this.s.dmas.next(d)) out.push(d);
    return out;
  }

  allDomainsCoherent(): boolean {
    const s = this.s;
    if (!s.profile.coherencyEnforced) return s.domains.every((d) => d.prot & IOMMU_CACHE);
    return s.domains.every((d) => d.enforceCacheCoherency);
  }

  /** vfio_iommu_type1_attach_group (vfio-type1.md §3.3, steps 1-16). Returns 0 or -errno; a failure changes nothing. */
  attachGroup(group: IommuGroup, current: Current): number {
    const s = this.s;
    if (s.vaddrInvalidCount > 0) return -EBUSY;
    if (s.domains.some((d) => d.groups.includes(group))) return -EINVAL;
    const dev = group.devices[0];
    const alloc = dev.iommu.domainAllocPaging(dev);
    if (typeof alloc === 'number') return alloc;
    const domain: IommuDomain = alloc;
    const fail = (errno: number, attached: boolean): number => {
      if (attached) iommuDetachGroup(domain, group);
      domain.free();
      return errno;
    };
    if (s.nesting) {
      const r = iommuRequestNesting(domain);
      if (r < 0) return fail(r, false);
    }
    const ra = iommuAttachGroup(domain, group);
    if (ra < 0) return fail(ra, false);

    const regions = iommuGetGroupResvRegions(group);
    let list = s.iovaList;
    if (s.profile.iovaList) {
      const has = (a: bigint, b: bigint): boolean => s.hasMappingIn(a, b);
      if (aperConflict(list, domain.apertureStart, domain.apertureEnd, has)) return fail(-EINVAL, true);
      if (resvConflict(regions, has)) return fail(-EINVAL, true);
      list = resvExclude(aperResize(list, domain.apertureStart, domain.apertureEnd), regions);
      if (list.length === 0) return fail(-EINVAL, true);
    }
    if (!s.params.allowUnsafeInterrupts && !iommuGroupHasIsolatedMsi(group)) return fail(-EPERM, true);

    const vd: VfioDomain = {
      domain,
      groups: [group],
      enforceCacheCoherency: domain.enforceCacheCoherency(),
      prot: dev.iommu.capable(dev, 'cache-coherency') ? IOMMU_CACHE : 0,
    };
    // A compatible domain already in the container takes the group instead (no replay needed).
    for (const d of s.domains) {
      if (d.domain.driver !== domain.driver || d.enforceCacheCoherency !== vd.enforceCacheCoherency) continue;
      iommuDetachGroup(domain, group);
      if (iommuAttachGroup(d.domain, group) === 0) {
        d.groups.push(group);
        domain.free();
        s.iovaList = list;
        return 0;
      }
      iommuAttachGroup(domain, group);
    }
    const r = this.replay(vd, current);
    if (r < 0) return fail(r, true);
    s.domains.unshift(vd);
    this.updatePgsizeBitmap();
    s.iovaList = list;
    return 0;
  }

  /** vfio_iommu_type1_detach_group: the last group of the last domain takes every mapping with it. */
  detachGroup(group: IommuGroup): void {
    const s = this.s;
    const d = s.domains.find((x) => x.groups.includes(group));
    if (d === undefined) return;
    iommuDetachGroup(d.domain, group);
    d.groups.splice(d.groups.indexOf(group), 1);
    if (d.groups.length > 0) return;
    if (s.domains.length === 1) removeAllDmas(s);
    s.domains.splice(s.domains.indexOf(d), 1);
    d.domain.free();
    this.updatePgsizeBitmap();
    this.recomputeIovaList();
  }

  /** vfio_iommu_type1_release: everything unmapped, unpinned and uncharged; domains freed. */
  release(): void {
    removeAllDmas(this.s);
    for (const d of this.s.domains) {
      for (const g of [...d.groups]) iommuDetachGroup(d.domain, g);
      d.domain.free();
    }
    this.s.domains = [];
  }

  ioctl(current: Current, request: number, arg: UserArg): number {
    const s = this.s;
    switch (request) {
      case VFIO_IOMMU_GET_INFO:
        return vfioIommuGetInfo(s, arg);
      case VFIO_IOMMU_MAP_DMA:
        return vfioIommuMapDma(s, current, arg);
      case VFIO_IOMMU_UNMAP_DMA:
        return vfioIommuUnmapDma(s, current, arg);
      case VFIO_IOMMU_DIRTY_PAGES:
        return s.profile.dirtyTracking ? vfioIommuDirtyPages(s, current, arg) : -ENOTTY;
      case VFIO_IOMMU_SET_PASID_TABLE:
        return s.params.nestBind ? vfioIommuSetPasidTable(s, arg) : -ENOTTY;
      case VFIO_IOMMU_CACHE_INVALIDATE:
        return s.params.nestBind ? vfioIommuCacheInvalidate(s, arg) : -ENOTTY;
      case VFIO_IOMMU_GET_FAULTS:
        return s.params.nestBind ? vfioIommuGetFaults(s, arg) : -ENOTTY;
      default:
        return -ENOTTY;
    }
  }

  /** vfio_iommu_replay: existing mappings go into the new domain (pinned now if never mapped). */
  private replay(vd: VfioDomain, current: Current): number {
    const s = this.s;
    const first = s.domains[0];
    const done: { iova: number; size: number }[] = [];
    for (const dma of s.dmas) {
      if (dma.iommuMapped && first !== undefined) {
        let iova = dma.iova;
        const end = dma.iova + dma.size;
        while (iova < end) {
          const pa = first.domain.iovaToPhys(iova);
          const len = first.domain.contiguousRun(iova, end - iova);
          if (pa < 0 || len === 0) {
            iova += 4096;
            continue;
          }
          const r = vd.domain.map(iova, pa, len, dma.prot | IOMMU_CACHE);
          if (r < 0) {
            for (const x of done) vd.domain.unmap(x.iova, x.size);
            return r;
          }
          done.push({ iova, size: len });
          iova += len;
        }
      } else {
        const size = dma.size;
        dma.size = 0;
        const saved = s.domains;
        s.domains = [vd];
        const r = pinMapDma(s, dma, size, current);
        s.domains = saved;
        if (r < 0) return r;
      }
    }
    return 0;
  }

  /** vfio_update_pgsize_bitmap: AND over domains; sizes below PAGE_SIZE become PAGE_SIZE. */
  private updatePgsizeBitmap(): void {
    const s = this.s;
    let bitmap = 0xffff_ffff_ffff_ffffn;
    for (const d of s.domains) bitmap &= d.domain.pgsizeBitmap;
    if (s.domains.length === 0) bitmap = PAGE_MASK_U64;
    else if (bitmap & ~PAGE_MASK_U64) bitmap = (bitmap & PAGE_MASK_U64) | 0x1000n;
    s.pgsizeBitmap = bitmap;
  }

  /** After a detach: the list is rebuilt from the remaining domains' apertures and groups' regions. */
  private recomputeIovaList(): void {
    const s = this.s;
    if (!s.profile.iovaList) return;
    let list: typeof s.iovaList = [];
    for (const d of s.domains) list = aperResize(list, d.domain.apertureStart, d.domain.apertureEnd);
    for (const d of s.domains)
      for (const g of d.groups) list = resvExclude(list, iommuGetGroupResvRegions(g));
    s.iovaList = list;
  }
}
