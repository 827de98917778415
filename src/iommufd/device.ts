/**
 * Devices in an iommufd context (drivers/iommu/iommufd/device.c, 6.18): binding (DMA ownership, MSI
 * isolation, cache coherency), and attaching a device to a page table (an IOAS through an automatic
 * HWPT, a paging HWPT or a nested HWPT), replacing it, detaching it. What the VFIO cdev calls for
 * VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT and VFIO_DEVICE_DETACH_IOMMUFD_PT.
 *
 * An attachment is per IOMMU group (every device of it shares the HWPT), holds one user of the HWPT per
 * device and one of the device; a paging HWPT's IOAS reserves the device's reserved regions (on
 * SMMUv3 the SW MSI window, 0x8000000-0x80fffff) while attached: a mapping there makes the attach
 * EADDRINUSE, a map there afterwards is EINVAL (oracle x7-iommufd-pin seq 23, 26).
 */

import type { Device } from '../iommu/group.ts';
import { EBUSY, EINVAL, ENOENT, EPERM } from '../uapi/errno.ts';
import type { IommufdCtx } from './ctx.ts';
import { iommufdDriver } from './driver-ops.ts';
import { hwptPagingAlloc } from './hwpt.ts';
import { type Hwpt, HwptPaging, type Ioas, IommufdDevice } from './objects.ts';

/** iommufd_device_bind: the new device object (its ID is what user space sees), or -errno. */
export function deviceBind(ctx: IommufdCtx, dev: Device): IommufdDevice | number {
  const drv = iommufdDriver(dev);
  // iommufd always maps with IOMMU_CACHE: a device that cannot be coherent is refused.
  if (!drv.capable(dev, 'cache-coherency')) return -EINVAL;
  const group = dev.group;
  if (!drv.hasIsolatedMsi(dev) && !ctx.core.params.allowUnsafeInterrupts) return -EPERM;
  // iommu_device_claim_dma_owner: another owner EPERM; a non-default domain attached EBUSY.
  if (group.ownerCount > 0) {
    if (group.owner !== ctx) return -EPERM;
  } else if (group.domain !== null) {
    return -EBUSY;
  }
  const ig = ctx.getGroup(group);
  const idev = ctx.alloc(new IommufdDevice(ctx, dev, ig));
  if (typeof idev === 'number') {
    ctx.dropGroup(ig);
    return idev;
  }
  if (group.ownerCount++ === 0) group.owner = ctx;
  ctx.ref();
  // The binding driver is a user until iommufd_device_unbind.
  idev.users++;
  ctx.finalize(idev);
  return idev;
}

/**
 * iommufd_device_unbind: a vDEVICE of the device is destroyed first and its ID kept as a tombstone,
 * then the device object goes (the caller detached it first).
 */
export function deviceUnbind(idev: IommufdDevice): void {
  const ctx = idev.ctx;
  idev.destroying = true;
  const v = idev.vdev;
  if (v !== null) {
    v.users++;
    ctx.removeWithRef(v, true);
  }
  ctx.removeWithRef(idev);
}

function isPaging(h: Hwpt): h is HwptPaging {
  return h instanceof HwptPaging;
}

/** iommu_attach_group_handle / iommu_replace_group_handle: every device of the group to `hwpt`'s domain. */
function groupSetDomain(idev: IommufdDevice, hwpt: Hwpt, old: Hwpt | null): number {
  const group = idev.dev.group;
  const domain = hwpt.domain!;
  const done: Device[] = [];
  for (const dev of group.devices) {
    const r = dev.iommu.attachDev(domain, dev);
    if (r < 0) {
      // A failed replace leaves the old domain; a failed attach, the blocking one.
      for (const d of done) {
        if (old?.domain) d.iommu.attachDev(old.domain, d);
        else d.iommu.detachDev(domain, d);
        domain.devices.delete(d);
      }
      return r;
    }
    domain.devices.add(dev);
    old?.domain?.devices.delete(dev);
    done.push(dev);
  }
  group.domain = domain;
  return 0;
}

/** iommufd_hw_pagetable_attach (no PASID): 0 or -errno, nothing changed on error. */
export function hwptAttach(hwpt: Hwpt, idev: IommufdDevice): number {
  const ig = idev.igroup;
  const attach = ig.attach;
  if (attach?.devices.has(idev)) return -EBUSY;
  if (attach !== null && attach.hwpt !== hwpt) return -EINVAL;
  const paging = isPaging(hwpt) ? hwpt : null;
  if (paging !== null) {
    const r = paging.ioas.iopt.enforceDevResvRegions(idev.dev);
    if (r < 0) return r;
  }
  if (attach === null) {
    const r = groupSetDomain(idev, hwpt, null);
    if (r < 0) {
      paging?.ioas.iopt.removeReserved(idev.dev);
      return r;
    }
    ig.attach = { hwpt, devices: new Set() };
  }
  hwpt.users++;
  ig.attach!.devices.add(idev);
  return 0;
}

/** iommufd_hw_pagetable_put: an automatic HWPT is destroyed with its last user. */
export function hwptPut(ctx: IommufdCtx, hwpt: Hwpt): void {
  if (isPaging(hwpt) && hwpt.autoDomain) ctx.removeWithRef(hwpt);
  else hwpt.users--;
}

/** iommufd_hw_pagetable_detach: the device leaves; the last one takes the group to the blocking domain. */
function hwptDetach(idev: IommufdDevice): Hwpt | null {
  const ig = idev.igroup;
  const attach = ig.attach;
  if (attach === null) return null;
  const hwpt = attach.hwpt;
  attach.devices.delete(idev);
  if (attach.devices.size === 0) {
    const group = idev.dev.group;
    for (const dev of group.devices) {
      dev.iommu.detachDev(hwpt.domain!, dev);
      hwpt.domain!.devices.delete(dev);
    }
    group.domain = null;
    ig.attach = null;
  }
  if (isPaging(hwpt)) hwpt.ioas.iopt.removeReserved(idev.dev);
  hwptPut(idev.ctx, hwpt);
  return hwpt;
}

type AttachFn = (idev: IommufdDevice, hwpt: Hwpt) => Hwpt | null | number;

const doAttach: AttachFn = (idev, hwpt) => {
  const r = hwptAttach(hwpt, idev);
  return r < 0 ? r : null;
};

/** iommufd_device_do_replace: the whole group moves to `hwpt`; returns the old HWPT for the caller to put. */
const doReplace: AttachFn = (idev, hwpt) => {
  const ig = idev.igroup;
  const attach = ig.attach;
  if (attach === null || !attach.devices.has(idev)) return -EINVAL;
  const old = attach.hwpt;
  if (hwpt === old) return null;
  const paging = isPaging(hwpt) ? hwpt : null;
  const oldPaging = isPaging(old) ? old : null;
  const newIoas = paging !== null && (oldPaging === null || paging.ioas !== oldPaging.ioas);
  const unresv = (): void => {
    for (const d of attach.devices) paging?.ioas.iopt.removeReserved(d.dev);
  };
  if (newIoas) {
    for (const d of attach.devices) {
      const r = paging.ioas.iopt.enforceDevResvRegions(d.dev);
      if (r < 0) {
        unresv();
        return r;
      }
    }
  }
  const r = groupSetDomain(idev, hwpt, old);
  if (r < 0) {
    if (paging !== null) unresv();
    return r;
  }
  if (oldPaging !== null && (paging === null || paging.ioas !== oldPaging.ioas))
    for (const d of attach.devices) oldPaging.ioas.iopt.removeReserved(d.dev);
  attach.hwpt = hwpt;
  const n = attach.devices.size;
  hwpt.users += n;
  if (n > 1) old.users -= n - 1;
  return old;
};

/**
 * iommufd_device_auto_get_domain: an automatic HWPT of the IOAS that takes the device (EINVAL tries the
 * next), else a new one (flags 0), attached as it is made on the attach path.
 */
function autoGetDomain(
  idev: IommufdDevice,
  ioas: Ioas,
  out: { ptId: number },
  fn: AttachFn,
): Hwpt | null | number {
  const immediate = fn === doAttach;
  for (const hwpt of ioas.hwptList) {
    if (!hwpt.autoDomain) continue;
    const r = fn(idev, hwpt);
    if (typeof r === 'number') {
      if (r === -EINVAL) continue;
      return r;
    }
    out.ptId = hwpt.id;
    return r;
  }
  const hwpt = hwptPagingAlloc(idev.ctx, ioas, idev, 0, immediate, false);
  if (typeof hwpt === 'number') return hwpt;
  let destroy: Hwpt | null = null;
  if (!immediate) {
    const r = fn(idev, hwpt);
    if (typeof r === 'number') {
      idev.ctx.abortAndDestroy(hwpt);
      return r;
    }
    destroy = r;
  }
  hwpt.autoDomain = true;
  out.ptId = hwpt.id;
  idev.ctx.finalize(hwpt);
  return destroy;
}

/** iommufd_device_change_pt: `ptId` is an IOAS, a paging or a nested HWPT (else EINVAL; unknown ENOENT). */
function changePt(idev: IommufdDevice, out: { ptId: number }, fn: AttachFn): number {
  const obj = idev.ctx.get(out.ptId);
  if (obj === undefined) return -ENOENT;
  let destroy: Hwpt | null | number;
  switch (obj.type) {
    case 'hwpt_nested':
    case 'hwpt_paging':
      destroy = fn(idev, obj as Hwpt);
      break;
    case 'ioas':
      destroy = autoGetDomain(idev, obj as Ioas, out, fn);
      break;
    default:
      return -EINVAL;
  }
  if (typeof destroy === 'number') return destroy;
  if (destroy !== null) hwptPut(idev.ctx, destroy);
  return 0;
}

/** iommufd_device_attach (no PASID): `out.ptId` becomes the HWPT's ID for an IOAS. */
export function deviceAttach(idev: IommufdDevice, out: { ptId: number }): number {
  const r = changePt(idev, out, doAttach);
  if (r === 0) idev.users++;
  return r;
}

/** iommufd_device_replace: the attached device moves to another page table, no gap in translation. */
export function deviceReplace(idev: IommufdDevice, out: { ptId: number }): number {
  return changePt(idev, out, doReplace);
}

/** iommufd_device_detach: back to blocked DMA. */
export function deviceDetach(idev: IommufdDevice): void {
  if (hwptDetach(idev) !== null) idev.users--;
}
