/**
 * VFIO_IOMMU_DIRTY_PAGES GET_BITMAP at the top of the address space. Its "a mapping bisected at either
 * end → EINVAL" check looks the mappings up with vfio_find_dma (vfio-type1.md §3.10 step 6), and before
 * 6.18 that search cannot see a mapping that ends at 2^64: its end wraps to 0 (UNMAP shows it in
 * test/oracle/answers/6.12-virtio/x5-overflow.jsonl; from 6.18 the last page is handled, §3.8). So on
 * 6.12 a range that stops inside such a mapping passes the check, and the whole mapping's bits are
 * copied (update_user_bitmap copies a mapping's bitmap whole); 6.18 sees the mapping and refuses.
 * Reasoned from those rules: no recording has GET_BITMAP at the top.
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import { openContainer, openGroup } from '../../src/host/vfio-api.ts';
import { EINVAL } from '../../src/uapi/errno.ts';
import type { KernelVersion } from '../../src/uapi/profile.ts';
import {
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_TYPE1v2_IOMMU,
} from '../../src/uapi/vfio.ts';

const PAGE = 4096n;
const TOP = 1n << 64n;

/** struct vfio_iommu_type1_dirty_bitmap, with the GET_BITMAP data when `get` is given (48 bytes). */
function dirtyPages(flags: number, get?: { iova: bigint; size: bigint; bitmapSize: bigint; data: number }) {
  const b = new Uint8Array(get ? 48 : 8);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, true);
  v.setUint32(4, flags, true);
  if (get) {
    v.setBigUint64(8, get.iova, true);
    v.setBigUint64(16, get.size, true);
    v.setBigUint64(24, PAGE, true); // bitmap.pgsize
    v.setBigUint64(32, get.bitmapSize, true);
    v.setBigUint64(40, BigInt(get.data), true);
  }
  return b;
}

describe('GET_BITMAP and a mapping that ends at 2^64 (virtio-iommu: its aperture reaches the top)', () => {
  for (const [kernel, want] of [
    ['6.12', 0],
    ['6.18', -EINVAL],
  ] as [KernelVersion, number][]) {
    it(`${kernel}: a range stopping one page short of the mapping's end → ${want === 0 ? '0, all four bits' : 'EINVAL'}`, () => {
      const host = new Host({
        kernel,
        iommu: 'virtio',
        params: { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' },
      });
      const p = host.spawn();
      const c = openContainer(p);
      const g = openGroup(p, host.groups[0].id);
      if (typeof c === 'number' || typeof g === 'number') throw new Error('open');
      expect(g.setContainer(c)).toBe(0);
      expect(c.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
      const ram = p.mmap(4 * 4096);
      const iova = TOP - 4n * PAGE;
      expect(c.mapDma({ vaddr: ram, iova, size: 4 * 4096 })).toBe(0);
      expect(p.ioctl(c.fd, VFIO_IOMMU_DIRTY_PAGES, dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_START))).toBe(0);
      const bitmap = p.mmap(4096);
      const req = dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, {
        iova,
        size: 3n * PAGE,
        bitmapSize: 8n,
        data: bitmap,
      });
      expect(p.ioctl(c.fd, VFIO_IOMMU_DIRTY_PAGES, req)).toBe(want);
      // Every page of an IOMMU-mapped range is dirty (no pinned-page scope, vfio-type1.md §3.10).
      expect(p.readMemory(bitmap, 8)).toEqual(new Uint8Array([want === 0 ? 0x0f : 0, 0, 0, 0, 0, 0, 0, 0]));
    });
  }
});
