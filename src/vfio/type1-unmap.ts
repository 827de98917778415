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
  decodeBitmap,
  decodeDmaUnmap,
  encodeDmaUnmap,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  type VfioBitmap,
} from '../uapi/vfio.ts';
import { updateUserBitmap, verifyBitmapSize } from './type1-dirty.ts';
import { removeDma } from './type1-pin.ts';
import type { Type1State, VfioDma } from './type1-state.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const TWO_64 = 2 ** 64;

export function vfioIommuUnmapDma(s: Type1State, current: Current, arg: UserArg): number {
  const b = arg.copyFrom(DMA_UNMAP_SIZE);
  if (typeof b === 'number') return b;
  const unmap = decodeDmaUnmap(b);
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
    if (unmap.argsz < DMA_UNMAP_SIZE + BITMAP_SIZE) return -EINVAL;
    const bb = arg.copyFrom(BITMAP_SIZE, DMA_UNMAP_SIZE);
    if (typeof bb === 'number') return bb;
    bitmap = decodeBitmap(bb, 0);
    if (bitmap.data + bitmap.size > 0x0000_8000_0000_0000n) return -EINVAL; // access_ok
    const shift = bitmap.pgsize === 0n ? 0n : BigInt(lowestBit(bitmap.pgsize));
    const r = verifyBitmapSize(unmap.size >> shift, bitmap.size);
    if (r < 0) return r;
  }
  const res = doUnmap(s, current, unmap.iova, unmap.size, unmap.flags, bitmap);
  if (res.ret < 0) return res.ret;
  const out = encodeDmaUnmap({
    argsz: unmap.argsz,
    flags: unmap.flags,
    iova: unmap.iova,
    size: res.unmapped,
  });
  return arg.copyTo(out) < 0 ? -EFAULT : 0;
}

function lowestBit(v: bigint): number {
  for (let i = 0; i < 64; i++) if ((v >> BigInt(i)) & 1n) return i;
  return 0;
}

function doUnmap(
  s: Type1State,
  current: Current,
  iova: bigint,
  size: bigint,
  flags: number,
  bitmap: VfioBitmap | undefined,
): { ret: number; unmapped: bigint } {
  const fail = { ret: -EINVAL, unmapped: 0n };
  const unmapAll = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
  const invalidateVaddr = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
  const pgsize = BigInt(s.pgsize);
  if (iova % pgsize !== 0n) return fail;
  let start: number;
  let end: number;
  if (unmapAll) {
    if (iova !== 0n || size !== 0n) return fail;
    start = 0;
    end = TWO_64;
  } else {
    if (size === 0n || size % pgsize !== 0n) return fail;
    if (iova + size - 1n > U64_MAX) return { ret: -s.profile.overflowErrno, unmapped: 0n };
    start = Number(iova);
    end = Number(iova + size);
  }
  if (bitmap !== undefined && (!s.dirtyPageTracking || bitmap.pgsize !== pgsize)) return fail;

  if (s.v2 && !unmapAll) {
    const first = s.findDmaContaining(start);
    if (first !== undefined && first.iova !== start) return fail;
    const last = s.findDmaContaining(end - s.pgsize);
    if (last !== undefined && last.iova + last.size !== end) return fail;
  }

  let unmapped = 0;
  const invalidated: VfioDma[] = [];
  let dma = s.findDmaFirstNode(start, end, unmapAll);
  while (dma !== undefined) {
    if (dma.iova >= end) break;
    if (!s.v2 && start > dma.iova) break;
    const next = s.dmas.next(dma);
    if (invalidateVaddr) {
      if (dma.vaddrInvalid) {
        // Undo this call's invalidations; the kernel reports EINVAL with nothing unmapped.
        for (const d of invalidated) d.vaddrInvalid = false;
        s.vaddrInvalidCount -= invalidated.length;
        return fail;
      }
      dma.vaddrInvalid = true;
      s.vaddrInvalidCount++;
      invalidated.push(dma);
      unmapped += dma.size;
      dma = next;
      continue;
    }
    if (bitmap !== undefined) {
      const r = updateUserBitmap(s, userPointer(current.mm, bitmap.data), dma, start);
      if (r < 0) return { ret: r, unmapped: BigInt(unmapped) };
    }
    unmapped += dma.size;
    removeDma(s, dma);
    dma = next;
  }
  return { ret: 0, unmapped: BigInt(unmapped) };
}
