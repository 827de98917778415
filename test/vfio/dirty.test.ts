/**
 * VFIO_IOMMU_DIRTY_PAGES GET_BITMAP at the top of the address space (vfio-type1.md §3.10). Its "a
 * mapping bisected at either end → EINVAL" check looks the mappings up with vfio_find_dma, which before
 * 6.18 cannot see a mapping that ends at 2^64 (its end wraps to 0; UNMAP shows the same in
 * test/oracle/answers/6.12-virtio/x5-overflow.jsonl). Asked of the oracle
 * (test/oracle/local-answers/{6.12,6.18}-virtio/y5-dirty-top-of-space.jsonl seq 8-13, a local `dirty`
 * op added to the x86 probe; the bitmap is zeroed before each call): mappings A = [2^64-16K, 2^64)
 * and B = [1M, 1M+16K), tracking started, then GET_BITMAP of
 *                                    6.12            6.18
 *   [1M, 1M+12K)   B cut at its end  EINVAL          EINVAL
 *   [1M, 1M+16K)   all of B          0, bits 0xf     0, bits 0xf
 *   [top-16K, top-4K)  A cut         0, bits 0xf     EINVAL        (6.12 copies all of A's bits)
 *   [top-12K, top-4K)  A cut twice   0, bits 0       EINVAL        (A starts below the range: skipped)
 *   [top-16K, 2^64)    all of A      EINVAL          0, bits 0xf   (6.12: iova + size wraps)
 * then UNMAP of A: 0 bytes on 6.12 (the search misses it), 16 KiB on 6.18.
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

const K = 0x1000n;
const TOP = 1n << 64n;
const A = TOP - 4n * K;
const B = 0x10_0000n;

/** struct vfio_iommu_type1_dirty_bitmap, with the GET_BITMAP data when `get` is given (48 bytes). */
function dirtyPages(flags: number, get?: { iova: bigint; size: bigint; data: number }) {
  const b = new Uint8Array(get ? 48 : 8);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, true);
  v.setUint32(4, flags, true);
  if (get) {
    v.setBigUint64(8, get.iova, true);
    v.setBigUint64(16, get.size, true);
    v.setBigUint64(24, K, true); // bitmap.pgsize
    v.setBigUint64(32, 8n, true); // bitmap.size
    v.setBigUint64(40, BigInt(get.data), true);
  }
  return b;
}

describe('GET_BITMAP and a mapping that ends at 2^64 (oracle x86, virtio-iommu)', () => {
  const rows: [string, bigint, bigint, Record<'6.12' | '6.18', [number, number]>][] = [
    ['B cut at its end', B, 3n * K, { '6.12': [-EINVAL, 0], '6.18': [-EINVAL, 0] }],
    ['all of B', B, 4n * K, { '6.12': [0, 0xf], '6.18': [0, 0xf] }],
    ['A cut at its end', A, 3n * K, { '6.12': [0, 0xf], '6.18': [-EINVAL, 0] }],
    ['A cut at both ends', A + K, 2n * K, { '6.12': [0, 0], '6.18': [-EINVAL, 0] }],
    ['all of A', A, 4n * K, { '6.12': [-EINVAL, 0], '6.18': [0, 0xf] }],
  ];
  for (const kernel of ['6.12', '6.18'] as const) {
    it(`${kernel}: each range's answer and the bits it wrote`, () => {
      const host = new Host({
        kernel: kernel as KernelVersion,
        iommu: 'virtio',
        params: { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' },
      });
      const p = host.spawn();
      const c = openContainer(p);
      const g = openGroup(p, host.groups[0].id);
      if (typeof c === 'number' || typeof g === 'number') throw new Error('open');
      expect(g.setContainer(c)).toBe(0);
      expect(c.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
      const ram = p.mmap(0x10000);
      expect(c.mapDma({ vaddr: ram, iova: A, size: 0x4000 })).toBe(0);
      expect(c.mapDma({ vaddr: ram + 0x4000, iova: B, size: 0x4000 })).toBe(0);
      expect(p.ioctl(c.fd, VFIO_IOMMU_DIRTY_PAGES, dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_START))).toBe(0);
      const bitmap = p.mmap(4096);
      for (const [what, iova, size, want] of rows) {
        expect(p.writeMemory(bitmap, new Uint8Array(8))).toBe(0);
        const req = dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, { iova, size, data: bitmap });
        const ret = p.ioctl(c.fd, VFIO_IOMMU_DIRTY_PAGES, req);
        const bits = p.readMemory(bitmap, 8) as Uint8Array;
        expect([what, ret, bits[0]]).toEqual([what, ...want[kernel]]);
      }
      expect(c.unmapDma({ iova: A, size: 0x4000 })).toEqual({
        ret: 0,
        size: kernel === '6.12' ? 0n : 0x4000n,
      });
    });
  }
});
