/**
 * Pinning and mapping a vfio_dma, and its removal (vfio_pin_pages_remote, vfio_pin_map_dma,
 * vfio_unmap_unpin, vfio_remove_dma). Pages are pinned on the owner's mm, charged to locked_vm
 * against RLIMIT_MEMLOCK unless the mapping holds CAP_IPC_LOCK, mapped into every domain, and on
 * removal unmapped and their IOTLB entries synced **before** they are unpinned and uncharged.
 * Reference: vfio-type1.md §4 and §5.
 */

import { IOMMU_CACHE, IOMMU_WRITE, newGather } from '../iommu/types.ts';
import type { Current } from '../mm/file.ts';
import { PAGE_SHIFT, PAGE_SIZE } from '../mm/physmem.ts';
import { EFAULT, ENOMEM } from '../uapi/errno.ts';
import type { Type1State, VfioDma } from './type1-state.ts';

/** VFIO_IOMMU_TLB_SYNC_MAX: unpin after at most this many queued regions. */
const TLB_SYNC_MAX = 512;

/** RLIMIT_MEMLOCK soft limit of `current` in pages (Infinity for RLIM_INFINITY). */
export function memlockLimitPages(current: Current): number {
  const pages = current.task.memlock.cur >> BigInt(PAGE_SHIFT);
  return pages > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(pages);
}

/**
 * vfio_pin_pages_remote: pins the physically contiguous run at `vaddr` (at most `npages`),
 * charging each non-reserved page. The first page over the limit is ENOMEM; a later one ends the
 * run early (the next call then fails). Returns pages pinned, the run's address in mm.runPa.
 */
function pinPagesRemote(s: Type1State, dma: VfioDma, vaddr: number, npages: number, limit: number): number {
  const mm = dma.pinMm;
  const max = s.params.disableHugepages ? 1 : npages;
  let n = mm.pinRun(vaddr, max, (dma.prot & IOMMU_WRITE) !== 0);
  if (n < 0) return n;
  if (mm.runReserved) return n;
  const pa = mm.runPa;
  const acct = dma.owner.mm;
  if (!dma.lockCap) {
    if (acct.lockedVm + 1 > limit) {
      mm.unpin(pa, n);
      return -ENOMEM;
    }
    const allowed = Math.min(n, limit - acct.lockedVm);
    if (allowed < n) {
      mm.unpin(pa + allowed * PAGE_SIZE, n - allowed);
      n = allowed;
    }
  }
  const r = acct.accountLockedVm(n, true, dma.lockCap, dma.owner.task.memlock.cur);
  if (r < 0) {
    mm.unpin(pa, n);
    return r;
  }
  dma.lockedPages += n;
  mm.runPa = pa;
  return n;
}

/** vfio_iommu_map: the run goes into every domain; a failure unmaps it from those already done. */
function iommuMap(s: Type1State, iova: number, pa: number, size: number, prot: number): number {
  for (let i = 0; i < s.domains.length; i++) {
    const d = s.domains[i];
    const extra = s.profile.version === '3.19' ? d.prot : IOMMU_CACHE;
    const r = d.domain.map(iova, pa, size, prot | extra);
    if (r < 0) {
      for (let j = 0; j < i; j++) s.domains[j].domain.unmap(iova, size);
      return r;
    }
  }
  return 0;
}

/** vfio_pin_map_dma: grows dma.size run by run; any failure removes the whole mapping. */
export function pinMapDma(s: Type1State, dma: VfioDma, size: number, current: Current): number {
  const limit = memlockLimitPages(current);
  const base = dma.vaddr;
  let ret = 0;
  while (dma.size < size) {
    const vaddr = base + BigInt(dma.size);
    if (vaddr > BigInt(Number.MAX_SAFE_INTEGER)) {
      ret = -EFAULT;
      break;
    }
    const n = pinPagesRemote(s, dma, Number(vaddr), (size - dma.size) / PAGE_SIZE, limit);
    if (n <= 0) {
      ret = n;
      break;
    }
    const pa = dma.pinMm.runPa;
    const reserved = dma.pinMm.runReserved;
    const r = iommuMap(s, dma.iova + dma.size, pa, n * PAGE_SIZE, dma.prot);
    if (r < 0) {
      if (!reserved) {
        dma.pinMm.unpin(pa, n);
        dma.owner.mm.accountLockedVm(n, false, dma.lockCap, 0n);
        dma.lockedPages -= n;
      }
      ret = r;
      break;
    }
    dma.size += n * PAGE_SIZE;
  }
  dma.iommuMapped = true;
  if (ret < 0) removeDma(s, dma);
  return ret;
}

/**
 * vfio_unmap_unpin: plain unmap on every domain but the first; on the first, unmap each
 * physically contiguous run into a gather, sync the IOTLB, then unpin; finally uncharge.
 */
export function unmapUnpin(s: Type1State, dma: VfioDma): void {
  if (dma.size === 0 || s.domains.length === 0) return;
  const [head, ...rest] = s.domains;
  for (const d of rest) d.domain.unmap(dma.iova, dma.size);
  const mm = dma.pinMm;
  const end = dma.iova + dma.size;
  let queue: { pa: number; pages: number }[] = [];
  const gather = newGather();
  const flush = (): void => {
    head.domain.iotlbSync(gather);
    gather.start = gather.end = 0;
    for (const q of queue) mm.unpin(q.pa, q.pages);
    queue = [];
  };
  let iova = dma.iova;
  while (iova < end) {
    const pa = head.domain.iovaToPhys(iova);
    if (pa < 0) {
      iova += PAGE_SIZE;
      continue;
    }
    const len = head.domain.contiguousRun(iova, end - iova);
    const unmapped = head.domain.unmap(iova, len, gather);
    if (unmapped === 0) {
      // Slow path: a plain unmap (which syncs) and an immediate unpin.
      const n = head.domain.unmap(iova, len);
      mm.unpin(pa, Math.max(n, PAGE_SIZE) / PAGE_SIZE);
      iova += Math.max(n, PAGE_SIZE);
      continue;
    }
    queue.push({ pa, pages: unmapped / PAGE_SIZE });
    if (queue.length >= TLB_SYNC_MAX) flush();
    iova += unmapped;
  }
  flush();
  dma.owner.mm.accountLockedVm(dma.lockedPages, false, dma.lockCap, 0n);
  dma.lockedPages = 0;
}

/** vfio_remove_dma: unmap, unpin, uncharge, forget, and give the entry back to dma_avail. */
export function removeDma(s: Type1State, dma: VfioDma): void {
  unmapUnpin(s, dma);
  s.dmas.remove(dma);
  if (dma.vaddrInvalid) s.vaddrInvalidCount--;
  s.dmaAvail++;
}
