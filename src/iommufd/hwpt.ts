/**
 * HW page tables (drivers/iommu/iommufd/hw_pagetable.c, device.c's GET_HW_INFO, eventq.c's fault
 * queue; 6.18): IOMMU_HWPT_ALLOC of a paging HWPT on an IOAS (NEST_PARENT: the stage-2 parent) or of a
 * nested HWPT on a vIOMMU, IOMMU_GET_HW_INFO, IOMMU_HWPT_INVALIDATE, dirty tracking and
 * IOMMU_FAULT_QUEUE_ALLOC, each checking in the kernel's order.
 */

import { userPointer } from '../mm/uaccess.ts';
import { EFAULT, EINVAL, ENOENT, EOPNOTSUPP } from '../uapi/errno.ts';
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  IOMMU_HW_INFO_FLAG_INPUT_TYPE,
  IOMMU_HW_INFO_TYPE_NONE,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  iommuFaultAlloc,
  iommuHwInfo,
  iommuHwptAlloc,
  iommuHwptGetDirtyBitmap,
  iommuHwptInvalidate,
  iommuHwptSetDirtyTracking,
} from '../uapi/iommufd.ts';
import type { IommufdCtx } from './ctx.ts';
import { hwptAttach } from './device.ts';
import { iommufdDriver } from './driver-ops.ts';
import { respond, respondAndFinalize, type Ucmd } from './main.ts';
import {
  Fault,
  FaultFile,
  type Hwpt,
  HwptNested,
  HwptPaging,
  type Ioas,
  type IommufdDevice,
  type Viommu,
} from './objects.ts';
import { clearUser, UserArray, UserData } from './user.ts';

/**
 * iommufd_hwpt_paging_alloc: a paging domain for `idev`'s IOMMU, filled from the IOAS. Unsupported or
 * unknown flags, dirty tracking without the capability, NEST_PARENT with FAULT_ID_VALID: EOPNOTSUPP;
 * then the driver decides. With `immediateAttach` the device is attached before the domain is filled
 * (the path of an attach to an IOAS). The object is not yet finalised.
 */
export function hwptPagingAlloc(
  ctx: IommufdCtx,
  ioas: Ioas,
  idev: IommufdDevice,
  flags: number,
  immediateAttach: boolean,
  userData: boolean,
): HwptPaging | number {
  const valid =
    IOMMU_HWPT_ALLOC_NEST_PARENT |
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
    IOMMU_HWPT_FAULT_ID_VALID |
    IOMMU_HWPT_ALLOC_PASID;
  const drv = iommufdDriver(idev.dev);
  if ((flags !== 0 || userData) && drv.domainAllocPagingFlags === undefined) return -EOPNOTSUPP;
  if (flags & ~valid) return -EOPNOTSUPP;
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !(drv.dirtyTrackingCapable?.(idev.dev) ?? false))
    return -EOPNOTSUPP;
  if (flags & IOMMU_HWPT_FAULT_ID_VALID && flags & IOMMU_HWPT_ALLOC_NEST_PARENT) return -EOPNOTSUPP;
  const hwpt = ctx.alloc(new HwptPaging(ioas));
  if (typeof hwpt === 'number') return hwpt;
  ioas.users++;
  hwpt.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  const domain =
    drv.domainAllocPagingFlags !== undefined
      ? drv.domainAllocPagingFlags(idev.dev, flags & ~IOMMU_HWPT_FAULT_ID_VALID, userData)
      : drv.domainAllocPaging(idev.dev);
  if (typeof domain === 'number') {
    ctx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;
  if (immediateAttach) {
    const r = hwptAttach(hwpt, idev);
    if (r < 0) {
      ctx.abortAndDestroy(hwpt);
      return r;
    }
  }
  const r = ioas.iopt.addDomain(domain);
  if (r < 0) {
    if (immediateAttach) detachNew(hwpt, idev);
    ctx.abortAndDestroy(hwpt);
    return r;
  }
  ioas.hwptList.push(hwpt);
  hwpt.inList = true;
  return hwpt;
}

/** Undoes hwptAttach of a HWPT being allocated (iommufd_hw_pagetable_detach before the abort). */
function detachNew(hwpt: HwptPaging, idev: IommufdDevice): void {
  const ig = idev.igroup;
  ig.attach?.devices.delete(idev);
  if (ig.attach !== null && ig.attach.devices.size === 0) {
    for (const dev of idev.dev.group.devices) {
      dev.iommu.detachDev(hwpt.domain!, dev);
      hwpt.domain!.devices.delete(dev);
    }
    idev.dev.group.domain = null;
    ig.attach = null;
  }
  hwpt.ioas.iopt.removeReserved(idev.dev);
  hwpt.users--;
}

/** iommufd_viommu_alloc_hwpt_nested: the vIOMMU's driver makes the nested domain from the user data. */
function viommuAllocHwptNested(
  ctx: IommufdCtx,
  viommu: Viommu,
  flags: number,
  data: UserData,
): HwptNested | number {
  if (flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)) return -EOPNOTSUPP;
  if (data.len === 0) return -EOPNOTSUPP;
  if (viommu.ops === null) return -EOPNOTSUPP;
  const hwpt = ctx.alloc(new HwptNested(viommu.hwpt, viommu));
  if (typeof hwpt === 'number') return hwpt;
  viommu.users++;
  const domain = viommu.ops.allocDomainNested(flags & ~IOMMU_HWPT_FAULT_ID_VALID, data);
  if (typeof domain === 'number') {
    ctx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;
  return hwpt;
}

/** IOMMU_HWPT_ALLOC (iommufd_hwpt_alloc). */
export function iommufdHwptAlloc(u: Ucmd): number {
  const ctx = u.ctx;
  const c = iommuHwptAlloc.decode(u.cmd);
  if (c.__reserved !== 0) return -EOPNOTSUPP;
  if (
    (c.data_type === IOMMU_HWPT_DATA_NONE && c.data_len !== 0) ||
    (c.data_type !== IOMMU_HWPT_DATA_NONE && c.data_len === 0)
  )
    return -EINVAL;
  const idev = ctx.get(c.dev_id, 'device') as IommufdDevice | undefined;
  if (idev === undefined) return -ENOENT;
  const pt = ctx.get(c.pt_id);
  if (pt === undefined) return -EINVAL;
  const data = new UserData(u.current.mm, c.data_type, c.data_uptr, c.data_len);
  let hwpt: Hwpt | number;
  if (pt.type === 'ioas') {
    hwpt = hwptPagingAlloc(ctx, pt as Ioas, idev, c.flags, false, c.data_len !== 0);
  } else if (pt.type === 'hwpt_paging') {
    // iommufd_hwpt_nested_alloc: no driver here has domain_alloc_nested (6.18's arm-smmu-v3 nests
    // only through a vIOMMU; x9 seq 23-24).
    hwpt = -EOPNOTSUPP;
  } else if (pt.type === 'viommu') {
    const viommu = pt as Viommu;
    hwpt = viommu.iommuDev !== idev.dev.iommu ? -EINVAL : viommuAllocHwptNested(ctx, viommu, c.flags, data);
  } else {
    return -EINVAL;
  }
  if (typeof hwpt === 'number') return hwpt;
  if (c.flags & IOMMU_HWPT_FAULT_ID_VALID) {
    const fault = ctx.get(c.fault_id, 'fault');
    if (fault === undefined) {
      ctx.abortAndDestroy(hwpt);
      return -ENOENT;
    }
    hwpt.fault = fault as Fault;
    fault.users++;
  }
  u.view.setUint32(16, hwpt.id, true);
  return respondAndFinalize(u, hwpt, iommuHwptAlloc.size);
}

/** IOMMU_GET_HW_INFO (iommufd_get_hw_info). */
export function iommufdGetHwInfo(u: Ucmd): number {
  const c = iommuHwInfo.decode(u.cmd);
  if (c.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE) return -EOPNOTSUPP;
  if (c.__reserved0 || c.__reserved1 || c.__reserved2) return -EOPNOTSUPP;
  const inType = c.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE ? c.out_data_type : 0;
  const idev = u.ctx.get(c.dev_id, 'device') as IommufdDevice | undefined;
  if (idev === undefined) return -ENOENT;
  const drv = iommufdDriver(idev.dev);
  let outType = IOMMU_HW_INFO_TYPE_NONE;
  let data: Uint8Array = new Uint8Array(0);
  if (drv.hwInfo !== undefined) {
    const r = drv.hwInfo(idev.dev, inType);
    if (typeof r === 'number') return r;
    outType = r.type;
    data = r.data;
  }
  const ptr = userPointer(u.current.mm, c.data_uptr);
  const copyLen = Math.min(c.data_len, data.length);
  if (copyLen > 0 && ptr.copyTo(data.subarray(0, copyLen)) < 0) return -EFAULT;
  if (copyLen < c.data_len && clearUser(ptr, copyLen, c.data_len - copyLen) < 0) return -EFAULT;
  const v = u.view;
  v.setUint32(12, data.length, true);
  v.setUint32(24, outType, true);
  v.setBigUint64(32, BigInt(drv.dirtyTrackingCapable?.(idev.dev) ? IOMMU_HW_CAP_DIRTY_TRACKING : 0), true);
  // No PASID capability on the modelled devices: out_max_pasid_log2 = 0.
  v.setUint8(28, 0);
  return respond(u, iommuHwInfo.size);
}

/**
 * IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate): on a nested HWPT (the driver's
 * cache_invalidate_user: none for SMMUv3, EOPNOTSUPP) or a vIOMMU (its cache_invalidate); anything
 * else EINVAL. entry_num comes back as the entries handled, also on an error.
 */
export function iommufdHwptInvalidate(u: Ucmd): number {
  const c = iommuHwptInvalidate.decode(u.cmd);
  let rc = 0;
  let done = 0;
  if (c.__reserved !== 0) rc = -EOPNOTSUPP;
  else if (c.entry_num !== 0 && (c.data_uptr === 0n || c.entry_len === 0)) rc = -EINVAL;
  else {
    const obj = u.ctx.get(c.hwpt_id);
    if (obj === undefined) rc = -ENOENT;
    else if (obj.type === 'hwpt_nested') rc = -EOPNOTSUPP;
    else if (obj.type === 'viommu') {
      const viommu = obj as Viommu;
      if (viommu.ops === null) rc = -EOPNOTSUPP;
      else {
        const array = new UserArray(u.current.mm, c.data_type, c.data_uptr, c.entry_len, c.entry_num);
        rc = viommu.ops.cacheInvalidate(array);
        done = array.done;
      }
    } else rc = -EINVAL;
  }
  u.view.setUint32(24, done, true);
  if (respond(u, iommuHwptInvalidate.size) < 0) return -EFAULT;
  return rc;
}

/** IOMMU_HWPT_SET_DIRTY_TRACKING: no driver here tracks dirty pages (EOPNOTSUPP once the HWPT is found). */
export function iommufdHwptSetDirtyTracking(u: Ucmd): number {
  const c = iommuHwptSetDirtyTracking.decode(u.cmd);
  if (c.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) return -EOPNOTSUPP;
  if (u.ctx.get(c.hwpt_id, 'hwpt_paging') === undefined) return -ENOENT;
  return -EOPNOTSUPP;
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP: as above (iopt_read_and_clear_dirty_data without dirty_ops). */
export function iommufdHwptGetDirtyBitmap(u: Ucmd): number {
  const c = iommuHwptGetDirtyBitmap.decode(u.cmd);
  if (c.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR || c.__reserved !== 0) return -EOPNOTSUPP;
  if (u.ctx.get(c.hwpt_id, 'hwpt_paging') === undefined) return -ENOENT;
  return -EOPNOTSUPP;
}

/** IOMMU_FAULT_QUEUE_ALLOC: a fault object and its fd (empty: no PRI or stall is modelled). */
export function iommufdFaultAlloc(u: Ucmd): number {
  const c = iommuFaultAlloc.decode(u.cmd);
  if (c.flags !== 0) return -EOPNOTSUPP;
  const fault = u.ctx.alloc(new Fault());
  if (typeof fault === 'number') return fault;
  const fd = u.current.unusedFd();
  if (fd < 0) {
    u.ctx.abortAndDestroy(fault);
    return fd;
  }
  u.view.setUint32(8, fault.id, true);
  u.view.setUint32(12, fd, true);
  const r = respondAndFinalize(u, fault, iommuFaultAlloc.size);
  if (r < 0) return r;
  u.ctx.ref();
  fault.users++;
  u.current.installFd(new FaultFile(fault, u.ctx));
  return 0;
}
