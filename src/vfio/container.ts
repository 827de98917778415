/**
 * /dev/vfio/vfio: the container (drivers/vfio/container.c). GET_API_VERSION, CHECK_EXTENSION and
 * SET_IOMMU are the core's; every other ioctl goes to the IOMMU driver once SET_IOMMU succeeded,
 * and is EINVAL before (vfio-type1.md §1, §3.1-3.3).
 */

import type { Current, KernelFile } from '../mm/file.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EINVAL, ENODEV } from '../uapi/errno.ts';
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_GET_API_VERSION,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU,
} from '../uapi/vfio.ts';
import type { VfioGroup } from './group.ts';
import { Type1Iommu, type1Accepts, type1CheckExtension } from './type1.ts';
import type { VfioCore } from './vfio.ts';

export class VfioContainer implements KernelFile {
  readonly kind = 'vfio-container';
  readonly groups: VfioGroup[] = [];
  iommu: Type1Iommu | null = null;

  constructor(readonly core: VfioCore) {}

  ioctl(current: Current, request: number, arg: UserArg): number {
    switch (request) {
      case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
      case VFIO_CHECK_EXTENSION:
        return this.checkExtension(arg.value);
      case VFIO_SET_IOMMU:
        return this.setIommu(arg.value, current);
      default:
        return this.iommu === null ? -EINVAL : this.iommu.ioctl(current, request, arg);
    }
  }

  /**
   * With a driver set only it answers; otherwise every registered driver is polled (newest first:
   * type-1, then the no-IOMMU driver) and the first positive answer wins. The no-IOMMU driver also
   * answers for a container of no-IOMMU groups, which this model's hosts never have.
   */
  checkExtension(ext: bigint): number {
    const p = this.core.profile;
    if (this.iommu !== null) return type1CheckExtension(p, this.iommu, ext, this.core.params);
    const t1 = type1CheckExtension(p, null, ext, this.core.params);
    if (t1 > 0) return t1;
    if (this.groups.length === 0) return this.noiommuCheckExtension(ext);
    return 0;
  }

  /** vfio_ioctl_set_iommu: EINVAL without a group or with a driver set; ENODEV for an unknown type. */
  private setIommu(type: bigint, current: Current): number {
    if (this.groups.length === 0 || this.iommu !== null) return -EINVAL;
    let ret = -ENODEV;
    // Only type-1 can be eligible for an IOMMU-backed container (no no-IOMMU groups are modelled).
    if (type1CheckExtension(this.core.profile, null, type) > 0) {
      if (!type1Accepts(type)) {
        ret = -EINVAL; // type-1's open() refuses it (e.g. 9, UNMAP_ALL)
      } else {
        const iommu = new Type1Iommu(this.core.profile, this.core.params, Number(type));
        ret = this.attachAll(iommu, current);
        if (ret === 0) this.iommu = iommu;
        else iommu.release();
      }
    }
    return ret;
  }

  /** __vfio_container_attach_groups: all groups join the new backend, or none does. */
  private attachAll(iommu: Type1Iommu, current: Current): number {
    const done: VfioGroup[] = [];
    for (const g of this.groups) {
      const r = iommu.attachGroup(g.iommuGroup, current);
      if (r < 0) {
        for (const d of done) iommu.detachGroup(d.iommuGroup);
        return r;
      }
      done.push(g);
    }
    return 0;
  }

  private noiommuCheckExtension(ext: bigint): number {
    return this.core.params.enableUnsafeNoiommuMode && ext === BigInt(VFIO_NOIOMMU_IOMMU) ? 1 : 0;
  }

  /** vfio_container_attach_group, after the group's own checks. */
  attachGroup(group: VfioGroup, current: Current): number {
    if (this.iommu !== null) {
      const r = this.iommu.attachGroup(group.iommuGroup, current);
      if (r < 0) return r;
    }
    this.groups.push(group);
    return 0;
  }

  /** vfio_group_detach_container: the last group out takes the IOMMU backend with it. */
  detachGroup(group: VfioGroup): void {
    this.iommu?.detachGroup(group.iommuGroup);
    this.groups.splice(this.groups.indexOf(group), 1);
    if (this.groups.length === 0 && this.iommu !== null) {
      this.iommu.release();
      this.iommu = null;
    }
  }

  /** Closing the container fd: attached groups keep the container (and its mappings) alive. */
  release(): void {}
}
