/**
 * VFIO_IOMMU_GET_INFO (vfio-type1.md §3.7): argsz < 16 is EINVAL; flags PGSIZES, the page-size
 * bitmap, and (5.4+) the capability chain migration -> dma_avail -> iova_range. When argsz is too
 * small for the chain, argsz is rewritten to the total and no cap is delivered (cap_offset 0).
 */

import type { UserArg } from '../mm/uaccess.ts';
import { EFAULT, EINVAL } from '../uapi/errno.ts';
import {
  DIRTY_BITMAP_SIZE_MAX,
  encodeInfoCaps,
  encodeIommuInfoHeader,
  type InfoCap,
  IOMMU_INFO_SIZE,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
} from '../uapi/vfio.ts';
import type { Type1State } from './type1-state.ts';

/** offsetofend(struct vfio_iommu_type1_info, iova_pgsizes) */
const INFO_MINSZ = 16;
/** offsetofend(..., cap_offset): 5.4-6.5 copied 20 bytes back when argsz allowed it. */
const INFO_CAP_OFFSET_END = 20;

export function vfioIommuGetInfo(s: Type1State, arg: UserArg): number {
  const b = arg.copyFrom(INFO_MINSZ);
  if (typeof b === 'number') return b;
  const argsz = new DataView(b.buffer).getUint32(0, true);
  if (argsz < INFO_MINSZ) return -EINVAL;
  const p = s.profile;
  let copyLen = INFO_MINSZ;
  if (p.capsAlign8) copyLen = Math.min(argsz, IOMMU_INFO_SIZE);
  else if (p.infoCaps && argsz >= INFO_CAP_OFFSET_END) copyLen = INFO_CAP_OFFSET_END;

  const header = {
    argsz,
    flags: p.infoFlagPgsizes ? VFIO_IOMMU_INFO_PGSIZES : 0,
    iovaPgsizes: s.pgsizeBitmap,
    capOffset: 0,
  };
  if (p.infoCaps) {
    const caps = buildCaps(s);
    const chain = encodeInfoCaps(caps, p.capsAlign8);
    if (chain.byteLength > 0) {
      header.flags |= VFIO_IOMMU_INFO_CAPS;
      if (argsz < IOMMU_INFO_SIZE + chain.byteLength) {
        header.argsz = IOMMU_INFO_SIZE + chain.byteLength;
      } else {
        if (arg.copyTo(chain, IOMMU_INFO_SIZE) < 0) return -EFAULT;
        header.capOffset = IOMMU_INFO_SIZE;
      }
    }
  }
  const out = new Uint8Array(IOMMU_INFO_SIZE);
  encodeIommuInfoHeader(out, header);
  return arg.copyTo(out.subarray(0, copyLen)) < 0 ? -EFAULT : 0;
}

function buildCaps(s: Type1State): InfoCap[] {
  const caps: InfoCap[] = [
    {
      id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
      version: 1,
      flags: 0,
      // Only the smallest page size is supported for dirty tracking.
      pgsizeBitmap: BigInt(s.pgsize),
      maxDirtyBitmapSize: BigInt(DIRTY_BITMAP_SIZE_MAX),
    },
    { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, avail: s.dmaAvail },
  ];
  if (s.iovaList.length > 0)
    caps.push({
      id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
      version: 1,
      ranges: s.iovaList,
    });
  return caps;
}
