/**
 * struct iommu_ops: what an IOMMU driver offers the core. intel-iommu, virtio-iommu and
 * arm-smmu-v3 implement it; the core and VFIO see only this interface.
 */

import type { KernelProfile } from '../uapi/profile.ts';
import type { IommuDomain } from './domain.ts';
import type { Device } from './group.ts';
import type { IommuCap, NestedS1Config, ResvRegion, S1FaultRecord, S1Invalidation } from './types.ts';

export interface IommuDriver {
  /** Driver name as the kernel prints it: 'intel-iommu', 'virtio-iommu', 'arm-smmu-v3'. */
  readonly name: string;
  readonly profile: KernelProfile;
  /** iommu_capable(dev, cap). */
  capable(dev: Device, cap: IommuCap): boolean;
  /**
   * Allocates an unmanaged paging domain for `dev`'s IOMMU. When the profile finalises paging
   * domains at allocation (6.11+), the driver binds it to the device's IOMMU instance here.
   * Returns the domain or -errno.
   */
  domainAllocPaging(dev: Device): IommuDomain | number;
  /** Attaches `dev` to `domain` (finalising the domain on first use). 0 or -errno. */
  attachDev(domain: IommuDomain, dev: Device): number;
  /** Returns `dev` to its default (kernel) domain. */
  detachDev(domain: IommuDomain, dev: Device): void;
  /** Reserved regions of `dev` (MSI windows, RMRRs). */
  getResvRegions(dev: Device): ResvRegion[];
  /** The group's MSIs cannot be forged by the device (IRQ remapping, ITS device IDs). */
  hasIsolatedMsi(dev: Device): boolean;
  /** 5.13-6.12 enable_nesting op; absent means the core answers EINVAL. */
  enableNesting?(domain: IommuDomain): number;
  /** 3.19-5.12 domain_set_attr(DOMAIN_ATTR_NESTING); absent means the core answers EINVAL. */
  domainSetAttrNesting?(domain: IommuDomain): number;
  /** vfio-nest extension: bind the guest's stage-1 configuration on a nesting domain. */
  attachPasidTable?(domain: IommuDomain, cfg: NestedS1Config): number;
  detachPasidTable?(domain: IommuDomain): void;
  /** vfio-nest extension: a guest's stage-1 invalidation, in the domain's VMID. */
  cacheInvalidate?(domain: IommuDomain, inv: S1Invalidation): number;
  /** vfio-nest extension: take up to `max` stage-1 faults queued for the domain. */
  takeFaults?(domain: IommuDomain, max: number): { records: S1FaultRecord[]; pending: number; lost: number };
}
