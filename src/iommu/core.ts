/**
 * The IOMMU core's group-level operations (drivers/iommu/iommu.c) that VFIO calls:
 * DMA ownership, attach/detach of a whole group, the nesting request, reserved regions
 * and MSI isolation.
 */

import { EBUSY, EINVAL, EPERM } from '../uapi/errno.ts';
import type { IommuDomain } from './domain.ts';
import type { IommuGroup } from './group.ts';
import type { ResvRegion } from './types.ts';

/** iommu_group_claim_dma_owner: EPERM when someone else owns it, EBUSY if a non-default domain is attached. */
export function iommuGroupClaimDmaOwner(group: IommuGroup, owner: unknown): number {
  if (group.ownerCount > 0) return -EPERM;
  if (group.domain !== null) return -EBUSY;
  group.owner = owner;
  group.ownerCount = 1;
  return 0;
}

export function iommuGroupReleaseDmaOwner(group: IommuGroup): void {
  group.owner = null;
  group.ownerCount = 0;
}

/** iommu_attach_group: every device of the group joins `domain`, or none does. */
export function iommuAttachGroup(domain: IommuDomain, group: IommuGroup): number {
  if (group.domain !== null) return -EBUSY;
  const done = [];
  for (const dev of group.devices) {
    const r = dev.iommu.attachDev(domain, dev);
    if (r < 0) {
      for (const d of done) d.iommu.detachDev(domain, d);
      return r;
    }
    domain.devices.add(dev);
    done.push(dev);
  }
  group.domain = domain;
  return 0;
}

/** iommu_detach_group: the group returns to its default domain. */
export function iommuDetachGroup(domain: IommuDomain, group: IommuGroup): void {
  for (const dev of group.devices) {
    dev.iommu.detachDev(domain, dev);
    domain.devices.delete(dev);
  }
  group.domain = null;
}

/**
 * The nesting request type 6 makes before attaching (vfio-type1.md §6, seed-era.md §1):
 * 3.19-5.12 iommu_domain_set_attr(DOMAIN_ATTR_NESTING); 5.13-6.12 iommu_enable_nesting, which is
 * EINVAL for a non-UNMANAGED domain or a driver without the hook.
 */
export function iommuRequestNesting(domain: IommuDomain): number {
  const drv = domain.driver;
  switch (drv.profile.nesting) {
    case 'set-attr':
      return drv.domainSetAttrNesting ? drv.domainSetAttrNesting(domain) : -EINVAL;
    case 'enable-nesting':
      if (domain.type !== 'unmanaged') return -EINVAL;
      return drv.enableNesting ? drv.enableNesting(domain) : -EINVAL;
    case 'removed':
      return -EINVAL;
  }
}

/** iommu_get_group_resv_regions: every device's reserved regions, in device order. */
export function iommuGetGroupResvRegions(group: IommuGroup): ResvRegion[] {
  return group.devices.flatMap((dev) => dev.iommu.getResvRegions(dev));
}

/** iommu_group_has_isolated_msi: true when every device's MSIs are isolated. */
export function iommuGroupHasIsolatedMsi(group: IommuGroup): boolean {
  return group.devices.every((dev) => dev.iommu.hasIsolatedMsi(dev));
}
