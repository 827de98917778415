/**
 * vIOMMU, vDEVICE, vEVENTQ and HW queue allocation (drivers/iommu/iommufd/viommu.c, eventq.c; 6.18),
 * each checking in the kernel's order.
 */

import { EEXIST, EINVAL, ENOENT, EOPNOTSUPP, EOVERFLOW } from '../uapi/errno.ts';
import {
  IOMMU_HW_QUEUE_TYPE_DEFAULT,
  IOMMU_VEVENTQ_TYPE_DEFAULT,
  IOMMU_VIOMMU_TYPE_DEFAULT,
  iommuHwQueueAlloc,
  iommuVdeviceAlloc,
  iommuVeventqAlloc,
  iommuViommuAlloc,
} from '../uapi/iommufd.ts';
import { iommufdDriver } from './driver-ops.ts';
import { respondAndFinalize, type Ucmd } from './main.ts';
import { type HwptPaging, type IommufdDevice, Vdevice, Veventq, VeventqFile, Viommu } from './objects.ts';

/**
 * IOMMU_VIOMMU_ALLOC: flags or the DEFAULT type EOPNOTSUPP; the device (ENOENT); the driver must offer
 * this vIOMMU type for it (EOPNOTSUPP: arm-smmu-v3 also refuses without CANWBS or S2FWB, oracle
 * a-nested-happy seq 15); the HWPT must be a paging one (ENOENT) and a nest parent (EINVAL).
 */
export function iommufdViommuAlloc(u: Ucmd): number {
  const ctx = u.ctx;
  const c = iommuViommuAlloc.decode(u.cmd);
  if (c.flags !== 0 || c.type === IOMMU_VIOMMU_TYPE_DEFAULT) return -EOPNOTSUPP;
  const idev = ctx.get(c.dev_id, 'device') as IommufdDevice | undefined;
  if (idev === undefined) return -ENOENT;
  const drv = iommufdDriver(idev.dev);
  if (drv.viommuSupported === undefined || drv.viommuInit === undefined) return -EOPNOTSUPP;
  if (!drv.viommuSupported(idev.dev, c.type)) return -EOPNOTSUPP;
  const hwpt = ctx.get(c.hwpt_id, 'hwpt_paging') as HwptPaging | undefined;
  if (hwpt === undefined) return -ENOENT;
  if (!hwpt.nestParent) return -EINVAL;
  const viommu = ctx.alloc(new Viommu(hwpt, c.type, idev.dev.iommu));
  if (typeof viommu === 'number') return viommu;
  hwpt.users++;
  const ops = drv.viommuInit(viommu, hwpt.domain!);
  if (typeof ops === 'number') {
    ctx.abortAndDestroy(viommu);
    return ops;
  }
  viommu.ops = ops;
  u.view.setUint32(20, viommu.id, true);
  return respondAndFinalize(u, viommu, iommuViommuAlloc.size);
}

/**
 * IOMMU_VDEVICE_ALLOC: the vIOMMU and the device (ENOENT), the same physical IOMMU (EINVAL), a device
 * being unbound (ENOENT), one vDEVICE per device (EEXIST: oracle a-nested-happy seq 31), one device per
 * virtual ID (EEXIST).
 */
export function iommufdVdeviceAlloc(u: Ucmd): number {
  const ctx = u.ctx;
  const c = iommuVdeviceAlloc.decode(u.cmd);
  const viommu = ctx.get(c.viommu_id, 'viommu') as Viommu | undefined;
  if (viommu === undefined) return -ENOENT;
  const idev = ctx.get(c.dev_id, 'device') as IommufdDevice | undefined;
  if (idev === undefined) return -ENOENT;
  if (viommu.iommuDev !== idev.dev.iommu) return -EINVAL;
  if (idev.destroying) return -ENOENT;
  if (idev.vdev !== null) return -EEXIST;
  const vdev = ctx.alloc(new Vdevice(viommu, idev, c.virt_id));
  if (typeof vdev === 'number') return vdev;
  viommu.users++;
  idev.vdev = vdev;
  if (viommu.vdevs.has(c.virt_id)) {
    ctx.abortAndDestroy(vdev);
    return -EEXIST;
  }
  viommu.vdevs.set(c.virt_id, vdev);
  u.view.setUint32(12, vdev.id, true);
  const r = respondAndFinalize(u, vdev, iommuVdeviceAlloc.size);
  if (r < 0) return r;
  // The vDEVICE keeps the reference on the device it looked up.
  idev.users++;
  return 0;
}

/**
 * IOMMU_VEVENTQ_ALLOC: flags, reserved or the DEFAULT type EOPNOTSUPP; depth 0 EINVAL; the vIOMMU
 * (ENOENT); one vEVENTQ per type and vIOMMU (EEXIST until the first is destroyed). The fd holds the
 * vEVENTQ: IOMMU_DESTROY is EBUSY while it is open.
 */
export function iommufdVeventqAlloc(u: Ucmd): number {
  const ctx = u.ctx;
  const c = iommuVeventqAlloc.decode(u.cmd);
  if (c.flags !== 0 || c.__reserved !== 0 || c.type === IOMMU_VEVENTQ_TYPE_DEFAULT) return -EOPNOTSUPP;
  if (c.veventq_depth === 0) return -EINVAL;
  const viommu = ctx.get(c.viommu_id, 'viommu') as Viommu | undefined;
  if (viommu === undefined) return -ENOENT;
  if (viommu.veventqs.some((q) => q.veventqType === c.type)) return -EEXIST;
  const q = ctx.alloc(new Veventq(viommu, c.type, c.veventq_depth));
  if (typeof q === 'number') return q;
  viommu.users++;
  viommu.veventqs.push(q);
  const fd = u.current.unusedFd();
  if (fd < 0) {
    ctx.abortAndDestroy(q);
    return fd;
  }
  u.view.setUint32(20, q.id, true);
  u.view.setUint32(24, fd, true);
  const r = respondAndFinalize(u, q, iommuVeventqAlloc.size);
  if (r < 0) return r;
  q.users++;
  ctx.ref();
  u.current.installFd(new VeventqFile(q, ctx));
  return 0;
}

/**
 * IOMMU_HW_QUEUE_ALLOC: flags or the DEFAULT type EOPNOTSUPP, length 0 EINVAL, a wrapping range
 * EOVERFLOW, the vIOMMU (ENOENT); no vIOMMU here has HW queues (Tegra241 CMDQV only): EOPNOTSUPP.
 */
export function iommufdHwQueueAlloc(u: Ucmd): number {
  const c = iommuHwQueueAlloc.decode(u.cmd);
  if (c.flags !== 0 || c.type === IOMMU_HW_QUEUE_TYPE_DEFAULT) return -EOPNOTSUPP;
  if (c.length === 0n) return -EINVAL;
  if (c.nesting_parent_iova + c.length - 1n > 0xffff_ffff_ffff_ffffn) return -EOVERFLOW;
  if (u.ctx.get(c.viommu_id, 'viommu') === undefined) return -ENOENT;
  return -EOPNOTSUPP;
}
