/**
 * Recording configurations by name, as kernel-answers/ names its directories:
 * `<kernel>-<iommu>[-s1|-s2][-no-unsafe-irq]` or `6.18-iommufd`. The x86 virtio recordings were
 * made with vfio_iommu_type1.allow_unsafe_interrupts=1 unless the name says -no-unsafe-irq.
 */

import type { HostOptions } from '../../host/host.ts';
import { KERNEL_VERSIONS, type KernelVersion } from '../../uapi/profile.ts';
import type { ProbeOptions } from './runner.ts';

export interface RecordingConfig {
  host: HostOptions;
  probe: ProbeOptions;
}

/** The configuration a recording directory name stands for, or undefined if the name is not one. */
export function configFromName(name: string): RecordingConfig | undefined {
  const m = /^(\d+\.\d+)-(intel|virtio|smmuv3|iommufd)((?:-[a-z0-9-]+)?)$/.exec(name);
  if (m === null || !KERNEL_VERSIONS.includes(m[1] as KernelVersion)) return undefined;
  const kernel = m[1] as KernelVersion;
  const flags = m[3].split('-').filter((f) => f.length > 0);
  const known = new Set(['s1', 's2', 'no', 'unsafe', 'irq']);
  if (flags.some((f) => !known.has(f))) return undefined;
  const noUnsafe = m[3].includes('-no-unsafe-irq');
  switch (m[2]) {
    case 'intel':
      return { host: { kernel, iommu: 'intel' }, probe: {} };
    case 'virtio':
      return {
        host: {
          kernel,
          iommu: 'virtio',
          params: noUnsafe ? {} : { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' },
        },
        probe: {},
      };
    case 'smmuv3': {
      const smmu = flags.includes('s1') ? 's1' : flags.includes('s2') ? 's2' : 's1s2';
      return { host: { kernel, iommu: 'smmuv3', smmu }, probe: {} };
    }
    case 'iommufd':
      // A kernel built with IOMMUFD on QEMU 10's SMMUv3: its recordings carry QEMU's deviations
      // (docs/smmu.md), so the SMMU runs the `qemu` compatibility preset.
      return {
        host: { kernel, iommu: 'smmuv3', smmu: 's1s2', iommufd: true, smmuCompat: 'qemu' },
        probe: { iommufd: true },
      };
  }
  return undefined;
}
