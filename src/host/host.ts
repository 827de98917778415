/**
 * The modelled host: a kernel profile, physical memory, one IOMMU with its driver, the PCI devices
 * behind it and their groups, VFIO, and module parameters. Processes are spawned on it and talk to
 * it only through system calls.
 *
 * Topologies (what the recordings' machines had, kernel-answers/README.md):
 * - intel:  q35 with VT-d (aw-bits 39); the edu device at 0000:00:01.0 in IOMMU group 1.
 * - virtio: q35 with virtio-iommu at 0000:00:01.0; the edu at 0000:00:02.0 in group 1.
 * - smmuv3: arm64 `virt` with an SMMUv3; the edu at 0000:00:01.0 (StreamID 8), group 0 (1 on 6.18).
 */

import { EduDevice } from '../device/edu.ts';
import { ArmSmmuV3 } from '../iommu/arm-smmu-v3.ts';
import type { IommuDriver } from '../iommu/driver.ts';
import { Device, IommuGroup, type IommuHw } from '../iommu/group.ts';
import { IntelIommu } from '../iommu/intel.ts';
import { VirtioIommu } from '../iommu/virtio.ts';
import { IommufdCore } from '../iommufd/index.ts';
import type { KernelFile } from '../mm/file.ts';
import { PhysMem } from '../mm/physmem.ts';
import { CAP_DAC_OVERRIDE } from '../mm/task.ts';
import { Smmu } from '../smmu/device.ts';
import { QEMU_QUIRKS } from '../smmu/registers.ts';
import { EACCES, ENOENT } from '../uapi/errno.ts';
import { type KernelProfile, type KernelVersion, kernelProfile } from '../uapi/profile.ts';
import { VFIO_CDEV_MAJOR } from '../uapi/vfio.ts';
import { VfioCdevFile } from '../vfio/device-cdev.ts';
import { defaultVfioParams, type VfioParams } from '../vfio/params.ts';
import { VfioPciDevice, VfioPciDeviceFile } from '../vfio/pci-device.ts';
import { VfioCore } from '../vfio/vfio.ts';
import { DevNullFile } from './dev-null.ts';
import { Process, type ProcessOptions } from './process.ts';
import { type ModuleParam, parseParam, SysfsAttrFile, SysfsParamFile } from './sysfs.ts';

export type HostIommuKind = 'intel' | 'virtio' | 'smmuv3';

export interface HostOptions {
  /** Kernel profile: '3.19', '6.1', '6.12' (default) or '6.18'. */
  kernel?: KernelVersion;
  /** Host IOMMU: 'intel' (default), 'virtio' or 'smmuv3'. */
  iommu?: HostIommuKind;
  /** SMMUv3 stages: 's1s2' (default, QEMU 10 `virt`), 's1' or 's2'. */
  smmu?: 's1' | 's2' | 's1s2';
  /** Module parameters, as on the kernel command line: { 'vfio_iommu_type1.dma_entry_limit': '100' }. */
  params?: Record<string, string>;
  /** RAM size in bytes (default 64 GiB; untouched memory costs nothing). */
  memory?: number;
  /** IOMMU group number of the assigned device (the machine's enumeration decides it). */
  group?: number;
  /** PCI name of the assigned device. */
  device?: string;
  /** vfio-nest's stage-1 binding extension for type-6 containers (docs/nesting-uapi.md); off = the kernel exactly. */
  nestBind?: boolean;
  /**
   * The kernel is built with IOMMUFD (and VFIO_DEVICE_CDEV): /dev/iommu and /dev/vfio/devices/vfioN
   * exist (docs/iommufd.md). 6.18 only. Default off: Debian's kernels the 6.18 recordings were made on
   * have it off; the `6.18-iommufd` recording configuration turns it on.
   */
  iommufd?: boolean;
  /**
   * The SMMUv3 follows the architecture ('arch', default) or reproduces QEMU 10's deviations ('qemu':
   * QEMU_QUIRKS, what the 6.18-iommufd recordings were made on; docs/smmu.md).
   */
  smmuCompat?: 'arch' | 'qemu';
}

/** A host configuration that cannot be built; the message names the option. */
export class HostConfigError extends Error {
  constructor(
    /** The option at fault: `kernel`, `iommu`, `smmu`, `device`, or `params.<module.name>`. */
    readonly option: string,
    message: string,
  ) {
    super(message);
    this.name = 'HostConfigError';
  }
}

/** PCI requester ID of a "0000:BB:DD.F" name. */
function pciRid(name: string): number {
  const m = /^[0-9a-f]{4}:([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(name);
  if (m === null) throw new HostConfigError('device', `'${name}' is not a PCI name like 0000:00:01.0`);
  return (Number.parseInt(m[1], 16) << 8) | (Number.parseInt(m[2], 16) << 3) | Number(m[3]);
}

export class Host {
  readonly profile: KernelProfile;
  readonly iommuKind: HostIommuKind;
  readonly phys: PhysMem;
  readonly iommu: IommuDriver & { readonly hw: IommuHw };
  readonly vfio: VfioCore;
  readonly vfioParams: VfioParams;
  readonly devices: Device[] = [];
  readonly groups: IommuGroup[] = [];
  /** The edu device model behind each device, by PCI name. */
  readonly edus = new Map<string, EduDevice>();
  private readonly vfioPci = new Map<Device, VfioPciDevice>();
  private readonly moduleParams = new Map<string, ModuleParam>();
  /** The SMMUv3 hardware, on an smmuv3 host. */
  readonly smmu: Smmu | null = null;
  /** iommufd, on a host built with it (options.iommufd). */
  readonly iommufd: IommufdCore | null = null;
  /** Called after every ioctl a process on this host makes (the CLI's strace view); null: nobody listens. */
  onIoctl: ((proc: Process, fd: number, request: number, ret: number) => void) | null = null;

  constructor(options: HostOptions = {}) {
    const version = options.kernel ?? '6.12';
    const profile = kernelProfile(version);
    if (profile === undefined)
      throw new HostConfigError('kernel', `unknown kernel '${version}' (expected 3.19, 6.1, 6.12 or 6.18)`);
    this.profile = profile;
    this.iommuKind = options.iommu ?? 'intel';
    const arm = this.iommuKind === 'smmuv3';
    this.phys = new PhysMem({ base: arm ? 0x4000_0000 : 0, size: options.memory ?? 64 * 2 ** 30 });
    this.vfioParams = defaultVfioParams();
    this.vfioParams.nestBind = options.nestBind ?? false;
    this.vfio = new VfioCore(profile, this.vfioParams);
    this.registerParams();

    switch (this.iommuKind) {
      case 'intel':
        this.iommu = new IntelIommu(profile, this.phys);
        break;
      case 'virtio':
        this.iommu = new VirtioIommu(profile, this.phys);
        break;
      case 'smmuv3': {
        const preset = { s1s2: 'qemu-virt', s1: 'qemu-virt-s1', s2: 's2' }[options.smmu ?? 's1s2'];
        if (preset === undefined) throw new HostConfigError('smmu', `unknown SMMU stages '${options.smmu}'`);
        let drv: ArmSmmuV3 | undefined;
        const compat = options.smmuCompat ?? 'arch';
        if (compat !== 'arch' && compat !== 'qemu')
          throw new HostConfigError('smmuCompat', `unknown SMMU compatibility '${compat}' (arch or qemu)`);
        this.smmu = new Smmu(this.phys, {
          preset,
          quirks: compat === 'qemu' ? QEMU_QUIRKS : undefined,
          interrupt: (line) => {
            if (line === 'eventq') drv?.drainEvents();
          },
        });
        drv = new ArmSmmuV3(profile, this.phys, this.smmu);
        this.iommu = drv;
        break;
      }
      default:
        throw new HostConfigError(
          'iommu',
          `unknown host IOMMU '${this.iommuKind}' (intel, virtio or smmuv3)`,
        );
    }
    if (options.iommufd) {
      if (version !== '6.18')
        throw new HostConfigError('iommufd', `iommufd is modelled for kernel 6.18 only, not ${version}`);
      if (this.iommuKind === 'intel')
        throw new HostConfigError('iommufd', 'iommufd on intel-iommu is not modelled (smmuv3 or virtio)');
      this.iommufd = new IommufdCore(profile);
      this.registerIommufdParams();
    }
    for (const [key, value] of Object.entries(options.params ?? {})) this.setParam(key, value);
    const defaultName = this.iommuKind === 'virtio' ? '0000:00:02.0' : '0000:00:01.0';
    const name = options.device ?? defaultName;
    const groupId = options.group ?? (arm && version !== '6.18' ? 0 : 1);
    const dev = new Device(name, pciRid(name), this.iommu, this.iommu.hw);
    const group = new IommuGroup(groupId);
    group.add(dev);
    if (this.iommu instanceof ArmSmmuV3) this.iommu.addDevice(dev);
    this.devices.push(dev);
    this.groups.push(group);
    this.vfio.addGroup(group);
    const edu = new EduDevice(dev, arm ? 0x2 : 0x103);
    this.edus.set(name, edu);
    // Where the oracle machines' firmware put the edu (y6-device-api seq 79, 82): BAR0 0xfea00000 and
    // line 10 on q35, 11 beside virtio-iommu; on arm64 virt (stage 1 or 2) BAR0 0x10000000 and line 0x15,
    // the Linux IRQ number pci_assign_irq writes there (no PC firmware).
    const virtio = this.iommu instanceof VirtioIommu;
    this.vfioPci.set(
      dev,
      new VfioPciDevice(edu, {
        barBase: arm ? 0x1000_0000 : 0xfea0_0000,
        interruptLine: arm ? 0x15 : virtio ? 11 : 10,
        hotResetNeedsFds: this.profile.cdevIommufd,
        ioeventfd: this.profile.ioeventfd,
        ctxTriggerBadFdEinval: this.profile.ctxTriggerBadFdEinval,
        barQwordAccess: this.profile.barQwordAccess,
      }),
    );
    this.vfio.deviceFileFactory = (device, release) => {
      const vdev = this.vfioPci.get(device);
      return vdev === undefined ? -ENOENT : new VfioPciDeviceFile(vdev, release);
    };
  }

  /** A new process: root with every capability unless options say otherwise. */
  spawn(options: ProcessOptions = {}): Process {
    return new Process(this, options);
  }

  /** Sets a module parameter as `module.name=value` on the command line would. */
  setParam(key: string, value: string): void {
    const p = this.moduleParams.get(key);
    if (p === undefined)
      throw new HostConfigError(
        `params.${key}`,
        `unknown module parameter '${key}' (known: ${[...this.moduleParams.keys()].join(', ')})`,
      );
    const v = parseParam(p.kind, value, this.profile.boolParam);
    if (typeof v === 'number' && v < 0)
      throw new HostConfigError(`params.${key}`, `'${value}' is not a valid ${p.kind} for ${key}`);
    p.set(v);
  }

  /** The VFIO cdev name of a device (vfio0 for the first registered), or null without iommufd. */
  cdevName(device: Device): string | null {
    if (this.iommufd === null) return null;
    const i = this.devices.indexOf(device);
    return i < 0 ? null : `vfio${i}`;
  }

  /** The file behind a path, for open(2). */
  openPath(path: string, proc: Process): KernelFile | number {
    if (path === '/dev/vfio/vfio') return this.vfio.openContainer();
    if (path === '/dev/null') return new DevNullFile();
    if (this.iommufd !== null) {
      if (path === '/dev/iommu') return this.iommufd.open(proc);
      const cdev = /^\/dev\/vfio\/devices\/vfio(\d+)$/.exec(path);
      if (cdev !== null) {
        const dev = this.devices[Number(cdev[1])];
        const vdev = dev === undefined ? undefined : this.vfioPci.get(dev);
        if (dev === undefined || vdev === undefined || String(Number(cdev[1])) !== cdev[1]) return -ENOENT;
        // devtmpfs creates vfio/devices/* 0600 root (CAP_DAC_OVERRIDE overrides).
        if (proc.task.euid !== 0 && !proc.task.capable(CAP_DAC_OVERRIDE)) return -EACCES;
        return new VfioCdevFile(this.vfio, dev, vdev, this.iommufd);
      }
    }
    const g = /^\/dev\/vfio\/(\d+)$/.exec(path);
    if (g !== null) return this.vfio.openGroup(Number(g[1]));
    const dev = this.cdevDevFile(path);
    if (dev !== undefined) return dev;
    const sp = /^\/sys\/module\/([^/]+)\/parameters\/([^/]+)$/.exec(path);
    if (sp !== null) {
      const p = this.moduleParams.get(`${sp[1]}.${sp[2]}`);
      return p === undefined ? -ENOENT : new SysfsParamFile(p, this.profile.boolParam);
    }
    return -ENOENT;
  }

  /**
   * A device cdev's `dev` attribute ("major:minor"), at /sys/class/vfio-dev/vfioN/dev and under the PCI
   * device (QEMU's iommufd backend reads it to check the cdev it opens); ENOENT without the cdev.
   */
  private cdevDevFile(path: string): KernelFile | number | undefined {
    const m =
      /^\/sys\/bus\/pci\/devices\/([^/]+)\/vfio-dev\/vfio(\d+)\/dev$/.exec(path) ??
      /^()\/sys\/class\/vfio-dev\/vfio(\d+)\/dev$/.exec(path);
    if (m === null) return undefined;
    const n = Number(m[2]);
    const dev = this.devices[n];
    if (this.iommufd === null || dev === undefined || (m[1] !== '' && m[1] !== dev.name)) return -ENOENT;
    return new SysfsAttrFile(`${VFIO_CDEV_MAJOR}:${n}\n`);
  }

  /** The names in a sysfs directory a VMM lists: a PCI device's vfio-dev (its cdev, vfioN). */
  listDir(path: string): string[] | number {
    const m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/vfio-dev$/.exec(path);
    const n = m === null ? -1 : this.devices.findIndex((d) => d.name === m[1]);
    return n < 0 || this.iommufd === null ? -ENOENT : [`vfio${n}`];
  }

  /**
   * readlink(2) of the sysfs links a VMM follows to find a device's group:
   * /sys/bus/pci/devices/<name>/iommu_group -> ../../../kernel/iommu_groups/<id> (QEMU's vfio-pci
   * realize reads it for host=<name>). ENOENT for anything else.
   */
  readlinkPath(path: string): string | number {
    const m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/iommu_group$/.exec(path);
    const dev = m === null ? undefined : this.devices.find((d) => d.name === m[1]);
    if (dev === undefined) return -ENOENT;
    const group = this.groups.find((g) => g.devices.includes(dev));
    return group === undefined ? -ENOENT : `../../../kernel/iommu_groups/${group.id}`;
  }

  /**
   * Module parameters of a kernel built with iommufd: iommufd.allow_unsafe_interrupts, and on SMMUv3
   * the oracle kernel's test switch arm_smmu_v3.nest_ignore_coherency (kernel-answers/README.md).
   */
  private registerIommufdParams(): void {
    this.addParam(
      'iommufd',
      'allow_unsafe_interrupts',
      'bool',
      this.iommufd!.params,
      'allowUnsafeInterrupts',
    );
    const drv = this.iommu;
    if (drv instanceof ArmSmmuV3)
      this.addParam('arm_smmu_v3', 'nest_ignore_coherency', 'bool', drv, 'nestIgnoreCoherency');
  }

  /** Registers module.name, backed by `obj[key]`, as /sys/module/<module>/parameters/<name> and for setParam. */
  private addParam<T extends object>(
    module: string,
    name: string,
    kind: 'bool' | 'uint',
    obj: T,
    key: { [K in keyof T]: T[K] extends boolean | number ? K : never }[keyof T],
  ): void {
    this.moduleParams.set(`${module}.${name}`, {
      kind,
      get: () => obj[key] as boolean | number,
      set: (v) => {
        obj[key] = v as T[typeof key];
      },
    });
  }

  private registerParams(): void {
    const vp = this.vfioParams;
    // Parameters exist from the version that added them: dma_entry_limit 5.1, the no-IOMMU mode 4.5.
    if (this.profile.dmaEntryLimit)
      this.addParam('vfio_iommu_type1', 'dma_entry_limit', 'uint', vp, 'dmaEntryLimit');
    this.addParam('vfio_iommu_type1', 'allow_unsafe_interrupts', 'bool', vp, 'allowUnsafeInterrupts');
    this.addParam('vfio_iommu_type1', 'disable_hugepages', 'bool', vp, 'disableHugepages');
    if (this.profile.noiommu)
      this.addParam('vfio', 'enable_unsafe_noiommu_mode', 'bool', vp, 'enableUnsafeNoiommuMode');
  }
}
