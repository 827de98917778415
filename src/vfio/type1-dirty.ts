/**
 * Dirty-page tracking (5.8+): VFIO_IOMMU_DIRTY_PAGES START/STOP/GET_BITMAP and the bitmap that
 * UNMAP_DMA(GET_DIRTY_BITMAP) returns (vfio-type1.md §3.10). A vfio-pci group never declares a
 * pinned-page dirty scope, so every page of every IOMMU-mapped range is reported dirty: the bitmap
 * of a mapping is all ones, and the model keeps just that fact per mapping (cost per mapping).
 */

import type { Current } from '../mm/file.ts';
import { type UserArg, userPointer } from '../mm/uaccess.ts';
import { EACCES, EFAULT, EINVAL } from '../uapi/errno.ts';
import { lowestBit } from '../uapi/u64.ts';
import {
  DIRTY_BITMAP_GET_SIZE,
  DIRTY_BITMAP_SIZE,
  DIRTY_BITMAP_SIZE_MAX,
  decodeDirtyBitmapGet,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  type VfioBitmap,
} from '../uapi/vfio.ts';
import type { Type1State, VfioDma } from './type1-state.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** DIRTY_BITMAP_PAGES_MAX: a mapping tracked for dirty pages may have at most INT_MAX pages. */
const DIRTY_BITMAP_PAGES_MAX = 0x7fff_ffff;

/** vfio_dma_bitmap_alloc's check (at MAP while tracking, and at START): too many pages is EINVAL. */
export function dmaBitmapTooLarge(s: Type1State, size: number): boolean {
  return size / s.pgsize > DIRTY_BITMAP_PAGES_MAX;
}

/** DIRTY_BITMAP_BYTES: bytes for `npages` bits, rounded up to 64-bit words. */
function bitmapBytes(npages: bigint): bigint {
  return ((npages + 63n) / 64n) * 8n;
}

/**
 * The user bitmap's checks, shared by UNMAP_DMA(GET_DIRTY_BITMAP) and DIRTY_PAGES(GET_BITMAP):
 * access_ok of [data, data + size), then verify_bitmap_size(size >> __ffs(pgsize), bitmap.size):
 * pages > 0, 0 < size <= 256 MiB, and big enough for the pages.
 */
export function checkUserBitmap(size: bigint, bitmap: VfioBitmap): number {
  if (bitmap.data + bitmap.size > 0x0000_8000_0000_0000n) return -EINVAL; // access_ok
  const npages = size >> BigInt(lowestBit(bitmap.pgsize));
  const bytes = bitmap.size;
  if (npages === 0n || bytes === 0n || bytes > BigInt(DIRTY_BITMAP_SIZE_MAX) || bytes < bitmapBytes(npages))
    return -EINVAL;
  return 0;
}

/**
 * update_user_bitmap: writes the mapping's bits (all dirty) into the user bitmap at the mapping's
 * page offset from `base`, as whole 64-bit words; the low bits of the first word keep what the user
 * had there, bits past the mapping in the last word are written as zero (the kernel copies words).
 */
export function updateUserBitmap(s: Type1State, bitmap: UserArg, dma: VfioDma, base: number): number {
  const pgsize = s.pgsize;
  const nbits = dma.size / pgsize;
  const bitOffset = (dma.iova - base) / pgsize;
  const shift = bitOffset % 64;
  const wordOffset = Math.floor(bitOffset / 64);
  const words = Math.ceil((nbits + shift) / 64);
  const out = new Uint8Array(words * 8);
  if (shift) {
    const first = bitmap.copyFrom(8, wordOffset * 8);
    if (typeof first === 'number') return -EFAULT;
    out.set(first);
    for (let i = shift; i < 64; i++) out[i >> 3] &= ~(1 << (i & 7));
  }
  const dirty = dma.iommuMapped ? nbits : 0;
  for (let i = shift; i < shift + dirty; i++) out[i >> 3] |= 1 << (i & 7);
  return bitmap.copyTo(out, wordOffset * 8) < 0 ? -EFAULT : 0;
}

export function vfioIommuDirtyPages(s: Type1State, current: Current, arg: UserArg): number {
  if (!s.v2) return -EACCES;
  const b = arg.copyFrom(DIRTY_BITMAP_SIZE);
  if (typeof b === 'number') return b;
  const v = new DataView(b.buffer);
  const argsz = v.getUint32(0, true);
  const flags = v.getUint32(4, true);
  const mask =
    VFIO_IOMMU_DIRTY_PAGES_FLAG_START |
    VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
    VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  if (argsz < DIRTY_BITMAP_SIZE || flags & ~mask) return -EINVAL;
  if (flags & (flags - 1)) return -EINVAL; // exactly one operation
  if (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
    if (!s.dirtyPageTracking) {
      for (const dma of s.dmas) if (dmaBitmapTooLarge(s, dma.size)) return -EINVAL;
      for (const dma of s.dmas) dma.dirtyBitmap = true;
      s.dirtyPageTracking = true;
    }
    return 0;
  }
  if (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
    if (s.dirtyPageTracking) {
      s.dirtyPageTracking = false;
      for (const dma of s.dmas) dma.dirtyBitmap = false;
    }
    return 0;
  }
  if (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) return getBitmap(s, current, arg, argsz);
  return -EINVAL;
}

function getBitmap(s: Type1State, current: Current, arg: UserArg, argsz: number): number {
  if (argsz - DIRTY_BITMAP_SIZE < DIRTY_BITMAP_GET_SIZE) return -EINVAL;
  const rb = arg.copyFrom(DIRTY_BITMAP_GET_SIZE, DIRTY_BITMAP_SIZE);
  if (typeof rb === 'number') return rb;
  const { iova, size, bitmap } = decodeDirtyBitmapGet(rb);
  if (s.profile.overflowFirst) {
    if (size === 0n) return -EINVAL;
    if (iova + size - 1n > U64_MAX) return -s.profile.overflowErrno;
  } else if (iova + size > U64_MAX) {
    return -EINVAL;
  }
  const r = checkUserBitmap(size, bitmap);
  if (r < 0) return r;
  const pgsize = BigInt(s.pgsize);
  if (bitmap.pgsize !== pgsize) return -EINVAL;
  if (iova % pgsize !== 0n) return -EINVAL;
  if (size === 0n || size % pgsize !== 0n) return -EINVAL;
  if (!s.dirtyPageTracking) return -EINVAL;
  const start = Number(iova);
  const end = Number(iova + size);
  // vfio_find_dma, which before 6.18 cannot see a mapping that ends at 2^64 (findDmaContaining).
  const first = s.findDmaContaining(start);
  if (first !== undefined && first.iova !== start) return -EINVAL;
  const last = s.findDmaContaining(end - s.pgsize);
  if (last !== undefined && last.iova + last.size !== end) return -EINVAL;
  const user = userPointer(current.mm, bitmap.data);
  for (
    let dma = s.dmas.firstOverlapping(start, end);
    dma !== undefined && dma.iova < end;
    dma = s.dmas.next(dma)
  ) {
    if (dma.iova < start) continue;
    const w = updateUserBitmap(s, user, dma, start);
    if (w < 0) return w;
  }
  return 0;
}
