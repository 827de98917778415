/**
 * The arm-smmu-v3 domain's unmap of the leaf vfio's unmap loop has just resolved (contiguousRun):
 * the PTE the walk found is cleared in place, without a second descent (bench unmap-all). It must
 * clear only that leaf, and only while nothing has changed since the walk.
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import type { IommuDomain } from '../../src/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/pgtable/index.ts';

const IOVA = 2 ** 32;
const PA = 0x4000_0000 + 0x20_0000;
const RW = IOMMU_READ | IOMMU_WRITE;

function domain(): IommuDomain {
  const host = new Host({ kernel: '6.12', iommu: 'smmuv3' });
  const dev = host.devices[0];
  const d = host.iommu.domainAllocPaging(dev);
  if (typeof d === 'number') throw new Error(`domain_alloc_paging: ${d}`);
  expect(host.iommu.attachDev(d, dev)).toBe(0);
  // Two 4 KiB pages, not physically contiguous, and a third one page further on.
  expect(d.map(IOVA, PA, 0x1000, RW)).toBe(0);
  expect(d.map(IOVA + 0x1000, PA + 0x3000, 0x1000, RW)).toBe(0);
  expect(d.map(IOVA + 0x2000, PA + 0x5000, 0x1000, RW)).toBe(0);
  return d;
}

describe('ArmSmmuDomain: unmap of the leaf just resolved', () => {
  it('clears that leaf and leaves its neighbours (vfio unmap_unpin_fast: iova_to_phys, then unmap)', () => {
    const d = domain();
    expect(d.contiguousRun(IOVA + 0x1000, 0x1000)).toBe(0x1000);
    expect(d.runPa).toBe(PA + 0x3000);
    expect(d.unmap(IOVA + 0x1000, 0x1000)).toBe(0x1000);
    expect(d.iovaToPhys(IOVA + 0x1000)).toBe(-1);
    expect(d.iovaToPhys(IOVA)).toBe(PA);
    expect(d.iovaToPhys(IOVA + 0x2000)).toBe(PA + 0x5000);
  });

  it('unmaps the leaf asked for when another walk came between (the probe holds that one)', () => {
    const d = domain();
    expect(d.contiguousRun(IOVA, 0x1000)).toBe(0x1000);
    expect(d.leafSize(IOVA + 0x2000)).toBe(0x1000); // a walk of another leaf
    expect(d.unmap(IOVA, 0x1000)).toBe(0x1000);
    expect(d.iovaToPhys(IOVA)).toBe(-1);
    expect(d.iovaToPhys(IOVA + 0x2000)).toBe(PA + 0x5000);
  });

  it('finds the leaf again when the tables changed since the walk', () => {
    const d = domain();
    expect(d.contiguousRun(IOVA, 0x1000)).toBe(0x1000);
    // Unmapped and mapped elsewhere since: the PTE found by the walk now holds another address.
    expect(d.unmap(IOVA, 0x1000)).toBe(0x1000);
    expect(d.map(IOVA, PA + 0x7000, 0x1000, RW)).toBe(0);
    expect(d.unmap(IOVA, 0x1000)).toBe(0x1000);
    expect(d.iovaToPhys(IOVA)).toBe(-1);
    expect(d.unmap(IOVA, 0x1000)).toBe(0);
  });
});
