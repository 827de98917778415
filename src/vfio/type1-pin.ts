/**
 * Pinning and mapping a vfio_dma, and its removal (vfio_pin_pages_remote, vfio_pin_map_dma,
 * vfio_unmap_unpin, vfio_remove_dma). Pages are pinned on the owner's mm, charged to locked_vm
 * against RLIMIT_MEMLOCK unless the mapping holds CAP_IPC_LOCK, mapped into every domain, and on
 * removal unmapped and their IOTLB entries synced **before** they are unpinned and uncharged.
 * Reference: vfio-type1.md §4 and §5.
 */

import type { IommuDomain } from '../iommu/domain.ts';
import { IOMMU_CACHE, IOMMU_WRITE, newGather } from '../iommu/types.ts';
import type { Current } from '../mm/file.ts';
import type { MmStruct } from '../mm/mm.ts';
import { PAGE_SHIFT, PAGE_SIZE } from '../mm/physmem.ts';
import { EFAULT, ENOMEM } from '../uapi/errno.ts';
import type { Type1State, VfioDma } from './type1-state.ts';

/** VFIO_IOMMU_TLB_SYNC_MAX: unpin after at most this many queued regions. */
const TLB_SYNC_MAX = 512;

// The last limit converted, and its value in pages: rlimits change rarely, maps often.
let lastMemlock = -1n;
let lastLimitPages = 0;

/** RLIMIT_MEMLOCK soft limit of `current` in pages (Infinity for RLIM_INFINITY). */
function memlockLimitPages(current: Current): number {
  const cur = current.task.memlock.cur;
  if (cur !== lastMemlock) {
    const pages = cur >> BigInt(PAGE_SHIFT);
    lastLimitPages = pages > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(pages);
    lastMemlock = cur;
  }
  return lastLimitPages;
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
    const extra = s.profile.coherencyEnforced ? IOMMU_CACHE : d.prot;
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
  let ret = 0;
  while (dma.size < size) {
    // Both page multiples below 2^64: the sum is exact. Beyond 2^53 no process memory exists.
    const vaddr = dma.vaddr + dma.size;
    if (vaddr > Number.MAX_SAFE_INTEGER) {
      ret = -EFAULT;
      break;
    }
    const n = pinPagesRemote(s, dma, vaddr, (size - dma.size) / PAGE_SIZE, limit);
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

// The unpin queue of vfio_unmap_unpin (the kernel's unmapped_region_list), kept between calls: one
// region per contiguous run, at most TLB_SYNC_MAX before a sync. Single-threaded, never re-entered.
const queuePa = new Float64Array(TLB_SYNC_MAX);
const queuePages = new Float64Array(TLB_SYNC_MAX);
const gather = newGather();

/** iommu_iotlb_sync of the gathered range, then unpin every queued region (unmapped_region_list). */
function syncAndUnpin(domain: IommuDomain, mm: MmStruct, queued: number): void {
  domain.iotlbSync(gather);
  gather.start = gather.end = gather.pgsize = 0;
  for (let i = 0; i < queued; i++) mm.unpin(queuePa[i], queuePages[i]);
}

/**
 * vfio_unmap_unpin: plain unmap on every domain but the first; on the first, unmap each
 * physically contiguous run into a gather, sync the IOTLB, then unpin; finally uncharge.
 */
function unmapUnpin(s: Type1State, dma: VfioDma): void {
  if (dma.size === 0 || s.domains.length === 0) return;
  const head = s.domains[0].domain;
  for (let i = 1; i < s.domains.length; i++) s.domains[i].domain.unmap(dma.iova, dma.size);
  const mm = dma.pinMm;
  const end = dma.iova + dma.size;
  gather.start = gather.end = gather.pgsize = 0;
  let queued = 0;
  let iova = dma.iova;
  while (iova < end) {
    // The run starting here (0: nothing mapped at iova), and the PA it starts at.
    const len = head.contiguousRun(iova, end - iova);
    if (len === 0) {
      iova += PAGE_SIZE;
      continue;
    }
    const pa = head.runPa;
    const unmapped = head.unmap(iova, len, gather);
    if (unmapped === 0) {
      // Slow path: a plain unmap (which syncs) and an immediate unpin.
      const n = head.unmap(iova, len);
      mm.unpin(pa, Math.max(n, PAGE_SIZE) / PAGE_SIZE);
      iova += Math.max(n, PAGE_SIZE);
      continue;
    }
    queuePa[queued] = pa;
    queuePages[queued] = unmapped / PAGE_SIZE;
    if (++queued >= TLB_SYNC_MAX) {
      syncAndUnpin(head, mm, queued);
      queued = 0;
    }
    iova += unmapped;
  }
  syncAndUnpin(head, mm, queued);
  dma.owner.mm.accountLockedVm(dma.lockedPages, false, dma.lockCap, 0n);
  dma.lockedPages = 0;
}

/**
 * vfio_remove_dma of every mapping, in iova order (UNMAP_ALL, release): the same per-mapping work,
 * then the tree is emptied at once. Returns the bytes that were mapped.
 */
export function removeAllDmas(s: Type1State): number {
  let total = 0;
  s.dmas.drain((dma) => {
    total += dma.size;
    unmapUnpin(s, dma);
    if (dma.vaddrInvalid) s.vaddrInvalidCount--;
    s.dmaAvail++;
  });
  return total;
}

/** vfio_remove_dma: unmap, unpin, uncharge, forget, and give the entry back to dma_avail. */
export function removeDma(s: Type1State, dma: VfioDma): void {
  unmapUnpin(s, dma);
  s.dmas.remove(dma);
  if (dma.vaddrInvalid) s.vaddrInvalidCount--;
  s.dmaAvail++;
}
