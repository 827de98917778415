/**
 * A vfio_dma made of several physically contiguous runs (huge folios faulted out of order) is
 * unmapped run by run: each run's pages are unpinned exactly, whatever the domain's leaves look like
 * (virtio-iommu mappings are any multiple of 4 KiB, page-table leaves are aligned blocks). Source:
 * vfio-type1.md §4 (a run is cut where physical contiguity breaks; each is charged once per pin) and §5
 * (unmap order: contiguous runs unmapped, synced, then unpinned; then locked_vm uncharged).
 */

import { describe, expect, it } from 'vitest';
import { Host, type HostIommuKind } from '../../src/host/host.ts';
import { openContainer, openGroup } from '../../src/host/vfio-api.ts';

const MiB2 = 2 ** 21;

describe('unmap of a mapping made of several runs', () => {
  for (const iommu of ['virtio', 'intel', 'smmuv3'] as HostIommuKind[]) {
    it(`${iommu}: every pin and charge comes back`, () => {
      const host = new Host({ iommu, params: { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' } });
      const p = host.spawn();
      const c = openContainer(p);
      const g = openGroup(p, host.groups[0].id);
      if (typeof c === 'number' || typeof g === 'number') throw new Error('open');
      expect(g.setContainer(c)).toBe(0);
      expect(c.setIommu(3)).toBe(0);
      const ram = p.mmap(5 * MiB2, { hugeLg2: 21 });
      // Folio 3 first: folios 0-2 then come out contiguous after it, and 3 and 4 each stand alone.
      expect(p.writeMemory(ram + 3 * MiB2, new Uint8Array([1]))).toBe(0);
      expect(c.mapDma({ vaddr: ram, iova: 0x4000_0000, size: 5 * MiB2 })).toBe(0);
      expect(p.mm.pinnedPages).toBe(5 * 512);
      const u = c.unmapDma({ iova: 0x4000_0000, size: 5 * MiB2 });
      expect(u).toEqual({ ret: 0, size: BigInt(5 * MiB2) });
      expect(p.mm.pinnedPages).toBe(0);
      expect(p.mm.lockedVm).toBe(0);
    });
  }
});
