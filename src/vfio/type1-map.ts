/**
 * VFIO_IOMMU_MAP_DMA, validated once and in the kernel's order (vfio-type1.md §3.8):
 * wrapper (argsz, unknown flags) -> [6.18: size 0, overflow EOVERFLOW] -> prot/VADDR combination ->
 * size 0 and alignment -> [<= 6.17: wrap EINVAL] -> VADDR update (ENOENT/EINVAL) or overlap (EEXIST)
 * -> dma_entry_limit (ENOSPC) -> valid IOVA list (EINVAL) -> pin and map.
 * A failed call changes nothing.
 */

import { IOMMU_READ, IOMMU_WRITE } from '../iommu/types.ts';
import type { Current } from '../mm/file.ts';
import { CAP_IPC_LOCK } from '../mm/task.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EEXIST, EINVAL, ENOENT, ENOMEM, ENOSPC } from '../uapi/errno.ts';
import {
  DMA_MAP_SIZE,
  DmaMapHalves,
  decodeDmaMapHalves,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
} from '../uapi/vfio.ts';
import { dmaBitmapTooLarge } from './type1-dirty.ts';
import { pinMapDma, removeDma } from './type1-pin.ts';
import type { Type1State, VfioDma } from './type1-state.ts';
import { alignedTo, endWraps, toNumber } from './type1-u64.ts';

// copy_from_user lands here and is decoded here: one struct per call, reused (no allocation per
// MAP; the model is single-threaded and nothing below re-enters MAP_DMA).
const struct = new Uint8Array(DMA_MAP_SIZE);
const map = new DmaMapHalves();

export function vfioIommuMapDma(s: Type1State, current: Current, arg: UserArg): number {
  const r = arg.copyFromInto(struct, DMA_MAP_SIZE);
  if (r < 0) return r;
  decodeDmaMapHalves(struct, map);
  const mask = s.profile.unmapAllVaddr
    ? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR
    : VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  if (map.argsz < DMA_MAP_SIZE || map.flags & ~mask) return -EINVAL;
  return doMap(s, current, map);
}

/**
 * vfio_dma_do_map. The u64 fields are checked as halves, exactly; once size, iova and vaddr are
 * known to be page aligned and iova + size and vaddr + size not to wrap, they are exact numbers.
 */
function doMap(s: Type1State, current: Current, m: DmaMapHalves): number {
  const flags = m.flags;
  const setVaddr = (flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
  let prot = 0;
  if (flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
  if (flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
  const sizeZero = m.sizeLo === 0 && m.sizeHi === 0;
  const wraps =
    endWraps(m.iovaLo, m.iovaHi, m.sizeLo, m.sizeHi) || endWraps(m.vaddrLo, m.vaddrHi, m.sizeLo, m.sizeHi);

  if (s.profile.overflowFirst) {
    // 6.18-rc4 "sanitize for overflow using check_*_overflow()".
    if (sizeZero) return -EINVAL;
    if (wraps) return -s.profile.overflowErrno;
  }
  if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) return -EINVAL;
  // (size | iova | vaddr) & (pgsize - 1): pgsize is a power of two.
  const lg2 = s.pgsizeLg2;
  if (sizeZero || !alignedTo(m.sizeLo | m.iovaLo | m.vaddrLo, m.sizeHi | m.iovaHi | m.vaddrHi, lg2))
    return -EINVAL;
  if (wraps) return -s.profile.overflowErrno;

  // Page aligned and not wrapping: exact as numbers (end up to 2^64).
  const start = toNumber(m.iovaLo, m.iovaHi);
  const len = toNumber(m.sizeLo, m.sizeHi);
  const vaddr = toNumber(m.vaddrLo, m.vaddrHi);
  const found = s.findDma(start, start + len);
  if (setVaddr) return updateVaddr(s, current, found, start, len, vaddr);
  if (found !== undefined) return -EEXIST;
  if (s.profile.dmaEntryLimit && s.dmaAvail === 0) return -ENOSPC;
  if (s.profile.iovaList && !s.iovaRangeValid(start, start + len)) return -EINVAL;

  const dma: VfioDma = {
    iova: start,
    size: 0,
    vaddr,
    prot,
    iommuMapped: false,
    lockCap: current.task.capable(CAP_IPC_LOCK),
    owner: current,
    pinMm: current.mm,
    lockedPages: 0,
    vaddrInvalid: false,
    dirtyBitmap: false,
  };
  s.dmaAvail--;
  s.dmas.insert(dma);
  if (s.domains.length === 0) {
    dma.size = len;
    return 0;
  }
  const r = pinMapDma(s, dma, len, current);
  if (r < 0) return r;
  if (s.dirtyPageTracking) {
    if (dmaBitmapTooLarge(s, len)) {
      removeDma(s, dma);
      return -EINVAL;
    }
    dma.dirtyBitmap = true;
  }
  return 0;
}

/**
 * MAP_DMA with only VADDR: gives an invalidated mapping its new process address. A different
 * process takes over the mapping's charge first (vfio_change_dma_owner; ENOMEM if it cannot).
 */
function updateVaddr(
  s: Type1State,
  current: Current,
  dma: VfioDma | undefined,
  iova: number,
  size: number,
  vaddr: number,
): number {
  if (dma === undefined) return -ENOENT;
  if (!dma.vaddrInvalid || dma.iova !== iova || dma.size !== size) return -EINVAL;
  if (dma.owner.task !== current.task) {
    const lockCap = current.task.capable(CAP_IPC_LOCK);
    const r = current.mm.accountLockedVm(dma.lockedPages, true, lockCap, current.task.memlock.cur);
    if (r < 0) return -ENOMEM;
    dma.owner.mm.accountLockedVm(dma.lockedPages, false, dma.lockCap, 0n);
    dma.owner = current;
    dma.lockCap = lockCap;
  }
  dma.vaddr = vaddr;
  dma.vaddrInvalid = false;
  s.vaddrInvalidCount--;
  return 0;
}
