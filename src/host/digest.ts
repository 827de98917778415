/**
 * A digest of everything a failed ioctl must not change: each container's backend (type, domains,
 * mappings with their charges, dma_avail, page sizes, valid IOVA list, dirty tracking), where each
 * mapping translates in every domain, group membership, DMA ownership, and each process's locked
 * memory and pins. Two equal digests mean the kernel-visible state is the same.
 */

import type { VfioContainer } from '../vfio/container.ts';
import type { Host } from './host.ts';
import type { Process } from './process.ts';

function containerDigest(c: VfioContainer): unknown {
  const it = c.iommu;
  if (it === null) return { groups: c.groups.map((g) => g.id), iommu: null };
  const s = it.s;
  const dmas = [...s.dmas].map((d) => ({
    iova: d.iova,
    size: d.size,
    vaddr: d.vaddr.toString(16),
    prot: d.prot,
    locked: d.lockedPages,
    cap: d.lockCap,
    inval: d.vaddrInvalid,
    dirty: d.dirtyBitmap,
    // Where the first and last page translate in every domain (cheap, and catches table changes).
    pa: s.domains.map((dom) => [
      dom.domain.iovaToPhys(d.iova),
      dom.domain.iovaToPhys(d.iova + d.size - 4096),
    ]),
  }));
  return {
    groups: c.groups.map((g) => g.id),
    v2: it.v2,
    nesting: it.nesting,
    domains: s.domains.map((d) => d.groups.map((g) => g.id)),
    dmas,
    avail: s.dmaAvail,
    pgsize: s.pgsizeBitmap.toString(16),
    iova: s.iovaList.map((r) => `${r.start.toString(16)}-${r.end.toString(16)}`),
    dirty: s.dirtyPageTracking,
    vaddrInvalid: s.vaddrInvalidCount,
  };
}

export function stateDigest(host: Host, procs: Process[]): string {
  const containers = new Set<VfioContainer>();
  for (const g of host.vfio.groups.values()) if (g.container) containers.add(g.container);
  for (const p of procs)
    for (const fd of p.openFds) {
      const f = p.fdget(fd);
      if (f?.kind === 'vfio-container') containers.add(f as VfioContainer);
    }
  return JSON.stringify({
    groups: [...host.vfio.groups.values()].map((g) => ({
      id: g.id,
      open: g.openedFile !== null,
      container: g.container !== null,
      devices: g.openDevices,
      owner: g.iommuGroup.ownerCount,
      domain: g.iommuGroup.domain !== null,
    })),
    containers: [...containers].map(containerDigest),
    procs: procs.map((p) => ({
      fds: p.openFds,
      locked: p.mm.lockedVm,
      pinned: p.mm.pinnedPages,
      memlock: `${p.task.memlock.cur}/${p.task.memlock.max}`,
      caps: p.task.capEff,
    })),
  });
}
