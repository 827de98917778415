/**
 * The options every command shares to describe a host: --kernel, --iommu, --smmu, --param,
 * --config, --group, --device, --iommufd. Validated here so a typo is one clear message.
 */

import type { HostConfigError, HostOptions } from '../host/host.ts';
import { configFromName } from '../scenario/probe/config.ts';
import type { ProbeOptions } from '../scenario/probe/runner.ts';
import { KERNEL_VERSIONS, type KernelVersion } from '../uapi/profile.ts';
import { UsageError } from './style.ts';

export const HOST_OPTION_SPEC = {
  kernel: { type: 'string' },
  iommu: { type: 'string' },
  smmu: { type: 'string' },
  param: { type: 'string', multiple: true },
  config: { type: 'string' },
  group: { type: 'string' },
  device: { type: 'string' },
  iommufd: { type: 'boolean' },
} as const;

export const HOST_OPTION_HELP = `Host:
  --kernel 3.19|6.1|6.12|6.18   kernel profile (default 6.12)
  --iommu intel|virtio|smmuv3   host IOMMU (default intel)
  --smmu s1|s2|s1s2             SMMUv3 stages (default s1s2, like QEMU 10's virt)
  --param module.name=value     module parameter, repeatable
                                (e.g. vfio_iommu_type1.allow_unsafe_interrupts=1)
  --config NAME                 a recording configuration, e.g. 6.12-virtio or 6.1-smmuv3-s1
  --group N                     IOMMU group number of the device (as the machine enumerated it)
  --device BDF                  PCI name of the device (default 0000:00:01.0)
  --iommufd                     a 6.18 kernel built with iommufd: /dev/iommu, the VFIO cdev and
                                the probe's iommufd ops (--config 6.18-iommufd is the recorded host)`;

export interface HostArgs {
  kernel?: string;
  iommu?: string;
  smmu?: string;
  param?: string[];
  config?: string;
  group?: string;
  device?: string;
  iommufd?: boolean;
}

export function hostOptionsFrom(v: HostArgs): { host: HostOptions; probe: ProbeOptions } {
  let host: HostOptions = {};
  let probe: ProbeOptions = {};
  if (v.config !== undefined) {
    const cfg = configFromName(v.config);
    if (cfg === undefined)
      throw new UsageError(
        `--config: '${v.config}' is not a configuration name like 6.12-intel or 6.1-smmuv3-s1`,
      );
    host = { ...cfg.host };
    probe = { ...cfg.probe };
  }
  if (v.kernel !== undefined) {
    if (!KERNEL_VERSIONS.includes(v.kernel as KernelVersion))
      throw new UsageError(`--kernel: '${v.kernel}' is not one of ${KERNEL_VERSIONS.join(', ')}`);
    host.kernel = v.kernel as KernelVersion;
  }
  if (v.iommu !== undefined) {
    if (!['intel', 'virtio', 'smmuv3'].includes(v.iommu))
      throw new UsageError(`--iommu: '${v.iommu}' is not one of intel, virtio, smmuv3`);
    host.iommu = v.iommu as HostOptions['iommu'];
  }
  if (v.smmu !== undefined) {
    if (!['s1', 's2', 's1s2'].includes(v.smmu))
      throw new UsageError(`--smmu: '${v.smmu}' is not one of s1, s2, s1s2`);
    host.smmu = v.smmu as HostOptions['smmu'];
  }
  for (const p of v.param ?? []) {
    const m = /^([a-z0-9_]+\.[a-z0-9_]+)=(.*)$/.exec(p);
    if (m === null) throw new UsageError(`--param: '${p}' is not module.name=value`);
    host.params = { ...host.params, [m[1]]: m[2] };
  }
  if (v.group !== undefined) {
    if (!/^\d+$/.test(v.group)) throw new UsageError(`--group: '${v.group}' is not a group number`);
    host.group = Number(v.group);
    probe.group = Number(v.group);
  }
  if (v.device !== undefined) {
    host.device = v.device;
    probe.device = v.device;
  }
  if (v.iommufd) {
    host.iommufd = true;
    probe.iommufd = true;
  }
  if (host.smmu !== undefined && host.iommu !== 'smmuv3')
    throw new UsageError(
      `--smmu: the host's IOMMU is ${host.iommu ?? 'intel'}, not smmuv3 (add --iommu smmuv3)`,
    );
  return { host, probe };
}

/** A host the model cannot build, worded with the command-line option at fault (--param NAME, --device, ...). */
export function hostConfigMessage(e: HostConfigError): string {
  const flag = e.option.startsWith('params.')
    ? `--param ${e.option.slice('params.'.length)}`
    : `--${e.option}`;
  return `${flag}: ${e.message}`;
}
