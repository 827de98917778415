/**
 * The kernel VFIO selftests' matrix (vfio_dma_mapping_test, vfio-type1.md §7): type {1, 3, 6} ×
 * backing {4 KiB, 2 MiB, 1 GiB} × kernel, on intel-iommu. Map succeeds and lands in the IOMMU at the
 * leaf level the backing allows (PTE, 2 MiB, 1 GiB, as the selftest checks through Intel's debugfs);
 * unmap returns exactly the size mapped; afterwards the translation is gone and nothing stays pinned
 * or charged (§4, Release; §5, unmap order). Type 6 on intel is EINVAL on 6.1/6.12 and ENODEV on 6.18
 * (test/kernel-answers/README.md, the nesting bullet).
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import { openContainer, openGroup, type VfioContainerHandle } from '../../src/host/vfio-api.ts';
import { EINVAL, ENODEV } from '../../src/uapi/errno.ts';
import type { KernelVersion } from '../../src/uapi/profile.ts';

const BACKINGS = [
  { name: '4K', hugeLg2: undefined, leaf: 0x1000 },
  { name: '2M', hugeLg2: 21 as const, leaf: 0x20_0000 },
  { name: '1G', hugeLg2: 30 as const, leaf: 0x4000_0000 },
];

function setup(kernel: KernelVersion, type: number) {
  const host = new Host({ kernel, iommu: 'intel' });
  const proc = host.spawn();
  const c = openContainer(proc) as VfioContainerHandle;
  const g = openGroup(proc, 1);
  if (typeof g === 'number') throw new Error(`open group: ${g}`);
  expect(g.setContainer(c)).toBe(0);
  return { host, proc, c, ret: c.setIommu(type) };
}

describe('type {1, 3, 6} x backing {4K, 2M, 1G} on intel-iommu', () => {
  for (const kernel of ['6.1', '6.12', '6.18'] as const)
    for (const type of [1, 3, 6])
      for (const b of BACKINGS)
        it(`${kernel} type ${type} ${b.name}`, () => {
          const { host, proc, c, ret } = setup(kernel, type);
          if (type === 6) {
            expect(ret).toBe(kernel === '6.18' ? -ENODEV : -EINVAL);
            return;
          }
          expect(ret).toBe(0);
          const size = 2 * b.leaf;
          const vaddr = proc.mmap(size, b.hugeLg2 ? { hugeLg2: b.hugeLg2 } : {});
          const iova = 0x4000_0000; // 1 GiB aligned, inside the 39-bit aperture
          expect(c.mapDma({ vaddr, iova, size })).toBe(0);
          const domain = host.iommu.hw as unknown as {
            context: Map<number, { lookup(i: number): number; outSize: number; outPa: number }>;
          };
          const pt = domain.context.get(host.devices[0].rid)!;
          expect(pt.lookup(iova)).not.toBe(0);
          expect(pt.outSize).toBe(b.leaf);
          expect(proc.mm.lockedVm).toBe(size / 4096);
          const un = c.unmapDma({ iova, size });
          expect(un).toEqual({ ret: 0, size: BigInt(size) });
          expect(pt.lookup(iova)).toBe(0);
          expect(proc.mm.lockedVm).toBe(0);
          expect(proc.mm.pinnedPages).toBe(0);
        });
});
