/**
 * VFIO_TYPE1_NESTING_IOMMU on every kernel profile x host IOMMU, in one table (vfio-type1.md §6 and
 * the recorded d-nesting answers): CHECK_EXTENSION(6), SET_IOMMU(6), and which stage the domain got,
 * seen through the aperture (2^44 - 1: stage 2 with QEMU's 44-bit IAS; 2^48 - 1: stage 1).
 * 3.19 pairs the seed's VFIO with attribute-based nesting on the SMMUv3 driver (which arrived in 4.2,
 * with the same DOMAIN_ATTR_NESTING contract: seed-era.md §4.5); it has no GET_INFO caps, so its
 * stage is read from the domain.
 */

import { describe, expect, it } from 'vitest';
import { Host, type HostOptions } from '../../src/host/host.ts';
import {
  openContainer,
  openGroup,
  type VfioContainerHandle,
  type VfioGroupHandle,
} from '../../src/host/vfio-api.ts';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { EINVAL, ENODEV, EPERM } from '../../src/uapi/errno.ts';
import type { KernelVersion } from '../../src/uapi/profile.ts';

type Row = [KernelVersion, string, HostOptions, number, number, 'S1' | 'S2' | null];
const virtio = { iommu: 'virtio' as const, params: { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' } };
const S2 = { iommu: 'smmuv3' as const, smmu: 's1s2' as const };
const S1ONLY = { iommu: 'smmuv3' as const, smmu: 's1' as const };
const S2ONLY = { iommu: 'smmuv3' as const, smmu: 's2' as const };

// kernel, host, options, CHECK_EXTENSION(6), SET_IOMMU(6), stage of the domain
const TABLE: Row[] = [
  ['3.19', 'intel', { iommu: 'intel' }, 1, -EINVAL, null],
  ['6.1', 'intel', { iommu: 'intel' }, 1, -EINVAL, null],
  ['6.12', 'intel', { iommu: 'intel' }, 1, -EINVAL, null],
  ['6.18', 'intel', { iommu: 'intel' }, 0, -ENODEV, null],
  ['6.1', 'virtio', virtio, 1, -EINVAL, null],
  ['6.12', 'virtio', virtio, 1, -EINVAL, null],
  ['6.18', 'virtio', virtio, 0, -ENODEV, null],
  ['3.19', 'smmuv3', S2, 1, 0, 'S2'],
  ['6.1', 'smmuv3', S2, 1, 0, 'S2'],
  ['6.12', 'smmuv3', S2, 1, -EPERM, null],
  ['6.18', 'smmuv3', S2, 0, -ENODEV, null],
  ['3.19', 'smmuv3 s1-only', S1ONLY, 1, 0, 'S1'],
  ['6.1', 'smmuv3 s1-only', S1ONLY, 1, 0, 'S1'],
  ['6.12', 'smmuv3 s1-only', S1ONLY, 1, -EPERM, null],
  ['6.1', 'smmuv3 s2-only', S2ONLY, 1, 0, 'S2'],
];

describe('type 6 on every kernel x host', () => {
  it.each(TABLE)(
    '%s %s: CHECK_EXTENSION(6)=%s, SET_IOMMU(6)=%s, stage %s',
    (kernel, _n, opts, check, set, stage) => {
      const host = new Host({ kernel, ...opts });
      const p = host.spawn();
      const c = openContainer(p) as VfioContainerHandle;
      const g = openGroup(p, host.groups[0].id) as VfioGroupHandle;
      expect(g.setContainer(c)).toBe(0);
      expect(c.checkExtension(6)).toBe(check);
      expect(c.setIommu(6)).toBe(set);
      if (set < 0) {
        // The container stays usable: type 3 works afterwards (vfio-type1.md §6, R: SET_IOMMU(3) after the failure).
        expect(c.setIommu(3)).toBe(0);
        return;
      }
      const d = (host.iommu as ArmSmmuV3).domainOf(host.devices[0].rid)!;
      expect(d.finalStage).toBe(stage);
      if (kernel !== '3.19') {
        const ranges = c.getInfo().info!.caps.find((x) => x.id === 1);
        const end = ranges && 'ranges' in ranges ? ranges.ranges.at(-1)!.end : 0n;
        expect(end).toBe(stage === 'S2' ? 2n ** 44n - 1n : 2n ** 48n - 1n);
      }
      // A nesting container is a v2 container: bisecting a mapping is EINVAL (vfio-type1.md §6).
      const buf = p.mmap(0x2000);
      expect(c.mapDma({ vaddr: buf, iova: 0x100000, size: 0x2000 })).toBe(0);
      expect(c.unmapDma({ iova: 0x100000, size: 0x1000 }).ret).toBe(-EINVAL);
    },
  );
});
