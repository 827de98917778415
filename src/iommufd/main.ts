/**
 * /dev/iommu's file (drivers/iommu/iommufd/main.c, 6.18): ioctl dispatch, IOMMU_DESTROY, and the VFIO
 * container ioctls iommufd answers on its own fd (vfio_compat.c).
 *
 * Dispatch, in the kernel's order: a number outside the table (IOMMUFD_CMD_BASE ... HW_QUEUE_ALLOC)
 * goes to the VFIO compatibility handler (ENOTTY for what it does not know); then the struct's `size`
 * is read (EFAULT), the number must be the table's exactly (ENOTTY), `size` must reach the op's
 * minimum (EINVAL), and the struct is copied as copy_struct_from_user does (a longer struct with a
 * non-zero tail: E2BIG). Handlers write back at most `size` bytes (iommufd_ucmd_respond).
 */

import type { Current, KernelFile } from '../mm/file.ts';
import { copyStructFromUser, type UserArg } from '../mm/uaccess.ts';
import { EFAULT, EINVAL, ENODEV, ENOTTY } from '../uapi/errno.ts';
import {
  IOMMU_DESTROY,
  IOMMU_FAULT_QUEUE_ALLOC,
  IOMMU_GET_HW_INFO,
  IOMMU_HW_QUEUE_ALLOC,
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  IOMMU_HWPT_INVALIDATE,
  IOMMU_HWPT_SET_DIRTY_TRACKING,
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_ALLOW_IOVAS,
  IOMMU_IOAS_CHANGE_PROCESS,
  IOMMU_IOAS_COPY,
  IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FILE,
  IOMMU_IOAS_UNMAP,
  IOMMU_OPTION,
  IOMMU_VDEVICE_ALLOC,
  IOMMU_VEVENTQ_ALLOC,
  IOMMU_VFIO_IOAS,
  IOMMU_VIOMMU_ALLOC,
  IOMMUFD_CMD_BASE,
  iommuDestroy,
  iommuFaultAlloc,
  iommuHwInfo,
  iommuHwptAlloc,
  iommuHwptGetDirtyBitmap,
  iommuHwptInvalidate,
  iommuHwptSetDirtyTracking,
  iommuHwQueueAlloc,
  iommuIoasAlloc,
  iommuIoasAllowIovas,
  iommuIoasChangeProcess,
  iommuIoasCopy,
  iommuIoasIovaRanges,
  iommuIoasMap,
  iommuIoasMapFile,
  iommuIoasUnmap,
  iommuOption,
  iommuVdeviceAlloc,
  iommuVeventqAlloc,
  iommuVfioIoas,
  iommuViommuAlloc,
} from '../uapi/iommufd.ts';
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_GET_API_VERSION,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
} from '../uapi/vfio.ts';
import type { IommufdCtx } from './ctx.ts';
import {
  iommufdFaultAlloc,
  iommufdGetHwInfo,
  iommufdHwptAlloc,
  iommufdHwptGetDirtyBitmap,
  iommufdHwptInvalidate,
  iommufdHwptSetDirtyTracking,
} from './hwpt.ts';
import {
  iommufdIoasAlloc,
  iommufdIoasAllowIovas,
  iommufdIoasChangeProcess,
  iommufdIoasCopy,
  iommufdIoasIovaRanges,
  iommufdIoasMap,
  iommufdIoasMapFile,
  iommufdIoasUnmap,
  iommufdOption,
  iommufdVfioIoas,
} from './ioas.ts';
import type { IommufdObject } from './object.ts';
import type { HwptPaging } from './objects.ts';
import {
  iommufdHwQueueAlloc,
  iommufdVdeviceAlloc,
  iommufdVeventqAlloc,
  iommufdViommuAlloc,
} from './viommu.ts';

/** struct iommufd_ucmd: the call being handled, with the kernel's copy of the struct. */
export interface Ucmd {
  ctx: IommufdCtx;
  current: Current;
  arg: UserArg;
  /** The struct's `size` as user space set it. */
  userSize: number;
  /** The kernel's copy (the op's full size, zero-extended). */
  cmd: Uint8Array;
  view: DataView;
}

/** iommufd_ucmd_respond: copy back min(size, user's size) bytes; EFAULT on a fault. */
export function respond(u: Ucmd, size: number): number {
  return u.arg.copyTo(u.cmd.subarray(0, Math.min(u.userSize, size))) < 0 ? -EFAULT : 0;
}

/**
 * The end of every object allocation: the ID written back (iommufd_ucmd_respond), then
 * iommufd_object_finalize, or iommufd_object_abort_and_destroy when the write faults.
 */
export function respondAndFinalize(u: Ucmd, obj: IommufdObject, size: number): number {
  const r = respond(u, size);
  if (r < 0) {
    u.ctx.abortAndDestroy(obj);
    return r;
  }
  u.ctx.finalize(obj);
  return 0;
}

interface IoctlOp {
  ioctlNum: number;
  size: number;
  min: number;
  execute(u: Ucmd): number;
}

function op(ioctlNum: number, codec: { size: number; min: number }, execute: (u: Ucmd) => number): IoctlOp {
  return { ioctlNum, size: codec.size, min: codec.min, execute };
}

/** IOMMU_DESTROY: ENOENT, EBUSY while anything uses the object, else destroyed. */
function iommufdDestroy(u: Ucmd): number {
  return u.ctx.destroyId(iommuDestroy.decode(u.cmd).id);
}

/** The 6.18 table, indexed by nr - IOMMUFD_CMD_BASE (no IOMMU_TEST_CMD: CONFIG_IOMMUFD_TEST is off). */
const OPS: IoctlOp[] = [
  op(IOMMU_DESTROY, iommuDestroy, iommufdDestroy),
  op(IOMMU_IOAS_ALLOC, iommuIoasAlloc, iommufdIoasAlloc),
  op(IOMMU_IOAS_ALLOW_IOVAS, iommuIoasAllowIovas, iommufdIoasAllowIovas),
  op(IOMMU_IOAS_COPY, iommuIoasCopy, iommufdIoasCopy),
  op(IOMMU_IOAS_IOVA_RANGES, iommuIoasIovaRanges, iommufdIoasIovaRanges),
  op(IOMMU_IOAS_MAP, iommuIoasMap, iommufdIoasMap),
  op(IOMMU_IOAS_UNMAP, iommuIoasUnmap, iommufdIoasUnmap),
  op(IOMMU_OPTION, iommuOption, iommufdOption),
  op(IOMMU_VFIO_IOAS, iommuVfioIoas, iommufdVfioIoas),
  op(IOMMU_HWPT_ALLOC, iommuHwptAlloc, iommufdHwptAlloc),
  op(IOMMU_GET_HW_INFO, iommuHwInfo, iommufdGetHwInfo),
  op(IOMMU_HWPT_SET_DIRTY_TRACKING, iommuHwptSetDirtyTracking, iommufdHwptSetDirtyTracking),
  op(IOMMU_HWPT_GET_DIRTY_BITMAP, iommuHwptGetDirtyBitmap, iommufdHwptGetDirtyBitmap),
  op(IOMMU_HWPT_INVALIDATE, iommuHwptInvalidate, iommufdHwptInvalidate),
  op(IOMMU_FAULT_QUEUE_ALLOC, iommuFaultAlloc, iommufdFaultAlloc),
  op(IOMMU_IOAS_MAP_FILE, iommuIoasMapFile, iommufdIoasMapFile),
  op(IOMMU_VIOMMU_ALLOC, iommuViommuAlloc, iommufdViommuAlloc),
  op(IOMMU_VDEVICE_ALLOC, iommuVdeviceAlloc, iommufdVdeviceAlloc),
  op(IOMMU_IOAS_CHANGE_PROCESS, iommuIoasChangeProcess, iommufdIoasChangeProcess),
  op(IOMMU_VEVENTQ_ALLOC, iommuVeventqAlloc, iommufdVeventqAlloc),
  op(IOMMU_HW_QUEUE_ALLOC, iommuHwQueueAlloc, iommufdHwQueueAlloc),
];

/**
 * iommufd_vfio_ioctl: the VFIO container ioctls on an iommufd fd. API version 0; CHECK_EXTENSION
 * 1 for type 1, type 1v2 and UNMAP_ALL, DMA_CC_IOMMU after the compatibility IOAS (ENODEV without
 * one), 0 for the rest (type 6 included); SET_IOMMU for types 1 and 1v2 needs the compatibility IOAS
 * (ENODEV). The compatibility GET_INFO / MAP_DMA / UNMAP_DMA are not modelled (ENOTTY).
 */
function vfioCompat(ctx: IommufdCtx, request: number, arg: UserArg): number {
  switch (request) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      switch (arg.value) {
        case BigInt(VFIO_TYPE1_IOMMU):
        case BigInt(VFIO_TYPE1v2_IOMMU):
        case BigInt(VFIO_UNMAP_ALL):
          return 1;
        case BigInt(VFIO_DMA_CC_IOMMU): {
          const ioas = ctx.compatIoas();
          if (ioas === null) return -ENODEV;
          return ioas.hwptList.every((h: HwptPaging) => h.domain?.enforceCacheCoherency() ?? false) ? 1 : 0;
        }
        default:
          return 0;
      }
    case VFIO_SET_IOMMU: {
      const t = arg.value;
      if (t !== BigInt(VFIO_TYPE1_IOMMU) && t !== BigInt(VFIO_TYPE1v2_IOMMU)) return -EINVAL;
      const ioas = ctx.compatIoas();
      if (ioas === null) return -ENODEV;
      return t === BigInt(VFIO_TYPE1_IOMMU) ? ioas.iopt.disableLarge() : 0;
    }
    default:
      return -ENOTTY;
  }
}

/** The file of an open /dev/iommu. */
export class IommufdFile implements KernelFile {
  readonly kind = 'iommufd';

  constructor(readonly ctx: IommufdCtx) {}

  ioctl(current: Current, request: number, arg: UserArg): number {
    const nr = request & 0xff;
    if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= OPS.length)
      return vfioCompat(this.ctx, request, arg);
    const sz = arg.copyFrom(4);
    if (typeof sz === 'number') return -EFAULT;
    const userSize = new DataView(sz.buffer).getUint32(0, true);
    const o = OPS[nr - IOMMUFD_CMD_BASE];
    if (o.ioctlNum !== request) return -ENOTTY;
    if (userSize < o.min) return -EINVAL;
    const cmd = copyStructFromUser(arg, o.size, userSize);
    if (typeof cmd === 'number') return cmd;
    return o.execute({ ctx: this.ctx, current, arg, userSize, cmd, view: new DataView(cmd.buffer) });
  }

  release(): void {
    this.ctx.put();
  }
}
