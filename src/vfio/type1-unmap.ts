/**
 * VFIO_IOMMU_UNMAP_DMA (vfio-type1.md §3.9): wrapper checks, then vfio_dma_do_unmap's alignment,
 * ALL, size, dirty-bitmap and v2 bisection checks, then the walk over mappings in iova order.
 * On error nothing is written back (the caller keeps its size); on success the 24-byte header is
 * copied back with `size` = bytes unmapped (or invalidated).
 */

import type { Current } from '../mm/file.ts';
import { type UserArg, userPointer } from '../mm/uaccess.ts';
import { EFAULT, EINVAL } from '../uapi/errno.ts';
import {
  BITMAP_SIZE,
  DMA_UNMAP_SIZE,
  DmaUnmapHalves,
  decodeBitmap,
  decodeDmaUnmapHalves,
  setDmaUnmapSize,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  type VfioBitmap,
} from '../uapi/vfio.ts';
import { checkUserBitmap, updateUserBitmap } from './type1-dirty.ts';
import { removeAllDmas, removeDma } from './type1-pin.ts';
import type { Type1State, VfioDma } from './type1-state.ts';
import { alignedTo, endWraps, toNumber } from './type1-u64.ts';

const TWO_64 = 2 ** 64;

// copy_from_user lands here and is decoded here: one header per call, reused; on success the same
// bytes go back with `size` replaced (the kernel copies its struct back). Never re-entered.
const struct = new Uint8Array(DMA_UNMAP_SIZE);
const hdr = new DmaUnmapHalves();
/** Bytes unmapped (or invalidated) by the last successful doUnmap. */
let unmapped = 0;

export function vfioIommuUnmapDma(s: Type1State, current: Current, arg: UserArg): number {
  const c = arg.copyFromInto(struct, DMA_UNMAP_SIZE);
  if (c < 0) return c;
  const unmap = decodeDmaUnmapHalves(struct, hdr);
  const mask = s.profile.unmapAllVaddr
    ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR
    : s.profile.dirtyTracking
      ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP
      : 0;
  if (unmap.argsz < DMA_UNMAP_SIZE || unmap.flags & ~mask) return -EINVAL;
  const getBitmap = (unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
  if (getBitmap && unmap.flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) return -EINVAL;
  let bitmap: VfioBitmap | undefined;
  if (getBitmap) {
    // The dirty-bitmap path is rare: bigint is fine here.
    if (unmap.argsz < DMA_UNMAP_SIZE + BITMAP_SIZE) return -EINVAL;
    const bb = arg.copyFrom(BITMAP_SIZE, DMA_UNMAP_SIZE);
    if (typeof bb === 'number') return bb;
    bitmap = decodeBitmap(bb, 0);
    const r = checkUserBitmap((BigInt(unmap.sizeHi) << 32n) | BigInt(unmap.sizeLo), bitmap);
    if (r < 0) return r;
  }
  const ret = doUnmap(s, current, unmap, bitmap);
  if (ret < 0) return ret;
  setDmaUnmapSize(struct, unmapped);
  return arg.copyTo(struct) < 0 ? -EFAULT : 0;
}

/**
 * vfio_dma_do_unmap: 0 with the bytes in `unmapped`, or -errno. The u64 fields are checked as
 * halves; once aligned and not wrapping they are exact numbers (the end up to 2^64).
 */
function doUnmap(s: Type1State, current: Current, u: DmaUnmapHalves, bitmap: VfioBitmap | undefined): number {
  const flags = u.flags;
  const unmapAll = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
  const invalidateVaddr = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
  const lg2 = s.pgsizeLg2;
  if (!alignedTo(u.iovaLo, u.iovaHi, lg2)) return -EINVAL;
  let start: number;
  let end: number;
  if (unmapAll) {
    if (u.iovaLo !== 0 || u.iovaHi !== 0 || u.sizeLo !== 0 || u.sizeHi !== 0) return -EINVAL;
    start = 0;
    end = TWO_64;
  } else {
    if ((u.sizeLo === 0 && u.sizeHi === 0) || !alignedTo(u.sizeLo, u.sizeHi, lg2)) return -EINVAL;
    if (endWraps(u.iovaLo, u.iovaHi, u.sizeLo, u.sizeHi)) return -s.profile.overflowErrno;
    start = toNumber(u.iovaLo, u.iovaHi);
    end = start + toNumber(u.sizeLo, u.sizeHi);
  }
  if (bitmap !== undefined && (!s.dirtyPageTracking || bitmap.pgsize !== BigInt(s.pgsize))) return -EINVAL;

  if (s.v2 && !unmapAll) {
    const first = s.findDmaContaining(start);
    if (first !== undefined && first.iova !== start) return -EINVAL;
    const last = s.findDmaContaining(end - s.pgsize);
    if (last !== undefined && last.iova + last.size !== end) return -EINVAL;
  }

  let dma = s.findDmaFirstNode(start, end, unmapAll);
  if (unmapAll && !invalidateVaddr) {
    // The first node of [0, U64_MAX) is the lowest mapping, unless the end-of-space bug skipped the
    // only one: either way the walk below would take every mapping from it on, which is all of them.
    unmapped = dma === undefined ? 0 : removeAllDmas(s);
    return 0;
  }
  let total = 0;
  let invalidated: VfioDma[] | undefined;
  while (dma !== undefined) {
    if (dma.iova >= end) break;
    if (!s.v2 && start > dma.iova) break;
    const next = s.dmas.next(dma);
    if (invalidateVaddr) {
      invalidated ??= [];
      if (dma.vaddrInvalid) {
        // Undo this call's invalidations; the kernel reports EINVAL with nothing unmapped.
        for (const d of invalidated) d.vaddrInvalid = false;
        s.vaddrInvalidCount -= invalidated.length;
        return -EINVAL;
      }
      dma.vaddrInvalid = true;
      s.vaddrInvalidCount++;
      invalidated.push(dma);
      total += dma.size;
      dma = next;
      continue;
    }
    if (bitmap !== undefined) {
      const r = updateUserBitmap(s, userPointer(current.mm, bitmap.data), dma, start);
      if (r < 0) return r;
    }
    total += dma.size;
    removeDma(s, dma);
    dma = next;
  }
  unmapped = total;
  return 0;
}
