/**
 * What iommufd asks of an IOMMU driver beyond struct iommu_ops' basics (domain_alloc_paging_flags,
 * hw_info, get_viommu_size / viommu_init, IOMMU_CAP_DIRTY_TRACKING). Drivers that lack a hook get
 * the core's answer for a missing op (arm-smmu-v3 has them all; virtio-iommu none).
 */

import type { ArmVsmmu, VsmmuCore } from '../iommu/arm-smmu-v3-iommufd.ts';
import type { IommuDomain } from '../iommu/domain.ts';
import type { IommuDriver } from '../iommu/driver.ts';
import type { Device } from '../iommu/group.ts';

export interface IommufdDriver extends IommuDriver {
  /** ops->domain_alloc_paging_flags(dev, flags, user_data): a finalised paging domain or -errno. */
  domainAllocPagingFlags?(dev: Device, flags: number, userData: boolean): IommuDomain | number;
  /** ops->hw_info: the driver's info struct and its type, or -errno. */
  hwInfo?(dev: Device, type: number): { type: number; data: Uint8Array } | number;
  /** device_iommu_capable(IOMMU_CAP_DIRTY_TRACKING). */
  dirtyTrackingCapable?(dev: Device): boolean;
  /** ops->get_viommu_size != 0: a vIOMMU of `type` can be made for `dev`. */
  viommuSupported?(dev: Device, type: number): boolean;
  /** ops->viommu_init over the nest parent's domain. */
  viommuInit?(core: VsmmuCore, parent: IommuDomain): ArmVsmmu | number;
}

export function iommufdDriver(dev: Device): IommufdDriver {
  return dev.iommu as IommufdDriver;
}
