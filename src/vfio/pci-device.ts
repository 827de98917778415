/**
 * The vfio-pci device file (drivers/vfio/pci/vfio_pci_core.c, vfio_pci_config.c, vfio_pci_rdwr.c)
 * for a modelled PCI function: GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS (pci-intrs.ts),
 * RESET, GET_PCI_HOT_RESET_INFO, PCI_HOT_RESET, IOEVENTFD (pci-ioeventfd.ts) and FEATURE;
 * pread/pwrite at region offsets (index << 40); mmap of BARs. The command register's bus-master bit
 * gates the device's DMA; BAR access needs memory decoding on (EIO). Opening enables the device; the
 * last close disables it (bus mastering off) and drops its IRQs and ioeventfds. Every answer to the
 * edu was asked of real kernels: test/oracle/local-answers/<config>/y6-device-api.jsonl (seq cited).
 */

import type { PciFunction } from '../device/pci.ts';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_MSI,
  PCI_CAPABILITY_LIST,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
} from '../device/pci.ts';
import { eventfdCtxFdget } from '../mm/eventfd.ts';
import type { Current, FileMapping, KernelFile } from '../mm/file.ts';
import { type MmioOps, mmioPieces } from '../mm/mm.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EFAULT, EINVAL, EIO, ENODEV, ENOTTY } from '../uapi/errno.ts';
import {
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
} from '../uapi/vfio.ts';
import {
  decodeIrqSet,
  decodeRegionInfo,
  encodeRegionInfo,
  IRQ_INFO_SIZE,
  IRQ_SET_SIZE,
  REGION_INFO_SIZE,
  regionOffset,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '../uapi/vfio-device.ts';
import { VfioPciIrqs } from './pci-intrs.ts';
import { VfioPciIoeventfds } from './pci-ioeventfd.ts';

/** VFIO_PCI_INDEX_TO_OFFSET(1): each region's span of the device fd. */
const REGION_SPAN = regionOffset(1);

/** VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, _ENTRY_WITH_WAKEUP, _EXIT (runtime power management). */
const FEATURE_LOW_POWER_ENTRY = 3;
const FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
const FEATURE_LOW_POWER_EXIT = 5;

/**
 * vfio_check_feature: 1 to go on, 0 for a PROBE that passes, or -EINVAL (an op the feature lacks,
 * neither GET nor SET, or less data than the feature reads).
 */
function checkFeature(flags: number, dataSize: number, supported: number, minsz: number): number {
  if (flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & ~supported) return -EINVAL;
  if (flags & VFIO_DEVICE_FEATURE_PROBE) return 0;
  if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET))) return -EINVAL;
  return dataSize < minsz ? -EINVAL : 1;
}

/** Where the host's firmware put the function, and kernel differences the device API shows. */
export interface VfioPciDeviceOptions {
  /** The first BAR's address (BARs follow, each aligned to its size). */
  barBase: number;
  /** PCI_INTERRUPT_LINE as the host's boot wrote it (y6 seq 82: 10 and 11 on q35, 0x15 on arm64 virt). */
  interruptLine: number;
  /**
   * 6.6+ (with the device cdev): PCI_HOT_RESET takes group fds from a group-opened device and none
   * from a cdev-opened one; no group fds from a group-opened device is EINVAL (y6 seq 68).
   */
  hotResetNeedsFds: boolean;
  /** KernelProfile.ioeventfd */
  ioeventfd: 'none' | 'qword' | 'no-qword';
  /** KernelProfile.ctxTriggerBadFdEinval */
  ctxTriggerBadFdEinval: boolean;
  /** KernelProfile.barQwordAccess */
  barQwordAccess: boolean;
}

/** What vfio-pci keeps per device across opens (struct vfio_pci_core_device). */
export class VfioPciDevice {
  openCount = 0;
  /** vdev->pm_runtime_engaged: user space asked for low power (a second entry is EINVAL). */
  pmEngaged = false;
  readonly irqs: VfioPciIrqs;
  readonly ioeventfds: VfioPciIoeventfds;
  /** Physical address of each BAR (where the host placed it). */
  readonly barPa: number[];

  constructor(
    readonly fn: PciFunction,
    readonly options: VfioPciDeviceOptions,
  ) {
    let pa = options.barBase;
    this.barPa = fn.bars.map((b, i) => {
      if (b === null) return 0;
      pa = Math.ceil(pa / b.size) * b.size;
      const at = pa;
      pa += b.size;
      // The firmware programmed the BAR; vfio-pci's virtual config space reads it back.
      fn.writeConfig(PCI_BASE_ADDRESS_0 + 4 * i, 4, at);
      return at;
    });
    fn.writeConfig(PCI_INTERRUPT_LINE, 1, options.interruptLine);
    // A conventional PCI function: no AER, so no ERR interrupt (pci_is_pcie is false).
    this.irqs = new VfioPciIrqs(
      options.ctxTriggerBadFdEinval,
      () => (fn.config[PCI_STATUS] & PCI_STATUS_INTERRUPT) !== 0,
      (on) => {
        fn.msiEnabled = on;
      },
    );
    this.ioeventfds = new VfioPciIoeventfds(fn, options.ioeventfd === 'no-qword');
    fn.onInterrupt = () => this.irqs.interrupt();
  }

  /** vfio_pci_get_irq_count */
  irqCount(index: number): number {
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        return this.fn.config[PCI_INTERRUPT_PIN] ? 1 : 0;
      case VFIO_PCI_MSI_IRQ_INDEX:
        return this.msiVectors();
      case VFIO_PCI_MSIX_IRQ_INDEX:
        return 0;
      case VFIO_PCI_ERR_IRQ_INDEX:
        return 0; // conventional PCI: no AER
      case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
      default:
        return 0;
    }
  }

  private msiVectors(): number {
    for (let cap = this.fn.config[PCI_CAPABILITY_LIST]; cap !== 0; cap = this.fn.config[cap + 1])
      if (this.fn.config[cap] === PCI_CAP_ID_MSI) return 1 << ((this.fn.config[cap + 2] >> 1) & 7);
    return 0;
  }
}

export class VfioPciDeviceFile implements KernelFile {
  readonly kind = 'vfio-device';

  constructor(
    readonly vdev: VfioPciDevice,
    /** Called once when the file is released (drops the group's references). */
    private readonly onRelease: () => void,
    /** Opened through its cdev (/dev/vfio/devices/vfioN, iommufd) rather than a group. */
    private readonly cdev = false,
  ) {
    if (vdev.openCount++ === 0) {
      // vfio_pci_core_enable: pci_enable_device turns memory decoding on.
      vdev.fn.reset();
      vdev.fn.writeConfig(PCI_COMMAND, 2, vdev.fn.command | PCI_COMMAND_MEMORY);
    }
  }

  ioctl(current: Current, request: number, arg: UserArg): number {
    switch (request) {
      case VFIO_DEVICE_GET_INFO:
        return this.getInfo(arg);
      case VFIO_DEVICE_GET_REGION_INFO:
        return this.getRegionInfo(arg);
      case VFIO_DEVICE_GET_IRQ_INFO:
        return this.getIrqInfo(arg);
      case VFIO_DEVICE_SET_IRQS:
        return this.setIrqs(current, arg);
      case VFIO_DEVICE_RESET:
        return -EINVAL; // the edu has no FLR or PM reset: reset_works is false
      case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
        return this.hotReset(arg, false);
      case VFIO_DEVICE_PCI_HOT_RESET:
        return this.hotReset(arg, true);
      case VFIO_DEVICE_IOEVENTFD:
        return this.vdev.options.ioeventfd === 'none' ? -ENOTTY : this.vdev.ioeventfds.ioctl(current, arg);
      case VFIO_DEVICE_FEATURE:
        return this.feature(current, arg);
      default:
        // Also the cdev-only BIND/ATTACH/DETACH_IOMMUFD_PT on a group-opened fd, whatever their
        // argument (y8-group-fd-cdev-ioctls, every configuration: ENOTTY, even for a bad pointer).
        return -ENOTTY;
    }
  }

  /**
   * GET_PCI_HOT_RESET_INFO and PCI_HOT_RESET (argsz, flags, count): the edu's slot and bus cannot be
   * reset, so both end in ENODEV once their header passes, before any group fd is read (y6 seq 50,
   * 67-71, 134-137).
   */
  private hotReset(arg: UserArg, reset: boolean): number {
    const b = arg.copyFrom(12);
    if (typeof b === 'number') return b;
    const v = new DataView(b.buffer, b.byteOffset, 12);
    if (v.getUint32(0, true) < 12) return -EINVAL;
    if (reset) {
      if (v.getUint32(4, true) !== 0) return -EINVAL;
      // 6.6+: group fds are for group-opened devices, an empty list for cdev-opened ones.
      const count = v.getUint32(8, true);
      if (this.vdev.options.hotResetNeedsFds && (count === 0) !== this.cdev) return -EINVAL;
    }
    return -ENODEV;
  }

  /**
   * VFIO_DEVICE_FEATURE (vfio_ioctl_device_feature): argsz, flags, then the feature. The edu has no
   * migration, dirty logging or VF token (ENOTTY); what it has are the runtime power-management
   * features, SET only (y6 seq 52-58, 115-133).
   */
  private feature(current: Current, arg: UserArg): number {
    const head = arg.copyFrom(8);
    if (typeof head === 'number') return head;
    const v = new DataView(head.buffer, head.byteOffset);
    const argsz = v.getUint32(0, true);
    const flags = v.getUint32(4, true);
    if (argsz < 8) return -EINVAL;
    if (
      flags &
      ~(
        VFIO_DEVICE_FEATURE_MASK |
        VFIO_DEVICE_FEATURE_GET |
        VFIO_DEVICE_FEATURE_SET |
        VFIO_DEVICE_FEATURE_PROBE
      )
    )
      return -EINVAL;
    if (
      !(flags & VFIO_DEVICE_FEATURE_PROBE) &&
      flags & VFIO_DEVICE_FEATURE_SET &&
      flags & VFIO_DEVICE_FEATURE_GET
    )
      return -EINVAL;
    const vd = this.vdev;
    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
      case FEATURE_LOW_POWER_ENTRY: {
        const r = checkFeature(flags, argsz - 8, VFIO_DEVICE_FEATURE_SET, 0);
        if (r !== 1) return r;
        if (vd.pmEngaged) return -EINVAL;
        vd.pmEngaged = true;
        return 0;
      }
      case FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: {
        const r = checkFeature(flags, argsz - 8, VFIO_DEVICE_FEATURE_SET, 8);
        if (r !== 1) return r;
        const e = arg.copyFrom(8, 8);
        if (typeof e === 'number') return e;
        const fd = new DataView(e.buffer, e.byteOffset).getInt32(0, true);
        if (fd < 0) return -EINVAL;
        const f = eventfdCtxFdget(current, fd);
        if (typeof f === 'number') return f;
        if (vd.pmEngaged) return -EINVAL;
        vd.pmEngaged = true;
        return 0;
      }
      case FEATURE_LOW_POWER_EXIT: {
        const r = checkFeature(flags, argsz - 8, VFIO_DEVICE_FEATURE_SET, 0);
        if (r !== 1) return r;
        vd.pmEngaged = false;
        return 0;
      }
      default:
        return -ENOTTY;
    }
  }

  private getInfo(arg: UserArg): number {
    const b = arg.copyFrom(16);
    if (typeof b === 'number') return b;
    const v = new DataView(b.buffer);
    const argsz = v.getUint32(0, true);
    if (argsz < 16) return -EINVAL;
    // minsz (offsetofend num_irqs): no capability chain, so only that much is copied back.
    const out = new Uint8Array(16);
    const o = new DataView(out.buffer);
    o.setUint32(0, argsz, true);
    // No VFIO_DEVICE_FLAGS_RESET: the edu has no FLR or PM reset (reset_works is false).
    o.setUint32(4, VFIO_DEVICE_FLAGS_PCI, true);
    o.setUint32(8, VFIO_PCI_NUM_REGIONS, true);
    o.setUint32(12, VFIO_PCI_NUM_IRQS, true);
    return arg.copyTo(out) < 0 ? -EFAULT : 0;
  }

  private getRegionInfo(arg: UserArg): number {
    const b = arg.copyFrom(REGION_INFO_SIZE);
    if (typeof b === 'number') return b;
    const info = decodeRegionInfo(b);
    if (info.argsz < REGION_INFO_SIZE) return -EINVAL;
    const fn = this.vdev.fn;
    let size = 0n;
    let flags = 0;
    switch (info.index) {
      case VFIO_PCI_CONFIG_REGION_INDEX:
        size = 256n;
        flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        break;
      case VFIO_PCI_ROM_REGION_INDEX:
        break; // no ROM: size 0
      case VFIO_PCI_VGA_REGION_INDEX:
        return -EINVAL; // not a VGA device (y6 seq 16)
      default: {
        if (info.index >= VFIO_PCI_NUM_REGIONS) return -EINVAL;
        const bar = fn.bars[info.index];
        if (bar) {
          size = BigInt(bar.size);
          flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
          if (bar.size >= 4096) flags |= VFIO_REGION_INFO_FLAG_MMAP;
        }
      }
    }
    const out = encodeRegionInfo({
      argsz: info.argsz,
      flags,
      index: info.index,
      capOffset: 0,
      size,
      offset: BigInt(regionOffset(info.index)),
    });
    return arg.copyTo(out) < 0 ? -EFAULT : 0;
  }

  private getIrqInfo(arg: UserArg): number {
    const b = arg.copyFrom(IRQ_INFO_SIZE);
    if (typeof b === 'number') return b;
    const v = new DataView(b.buffer);
    const argsz = v.getUint32(0, true);
    const index = v.getUint32(8, true);
    // ERR only on PCI Express (y6 seq 26: EINVAL for the conventional edu).
    if (argsz < IRQ_INFO_SIZE || index >= VFIO_PCI_NUM_IRQS || index === VFIO_PCI_ERR_IRQ_INDEX)
      return -EINVAL;
    let flags = VFIO_IRQ_INFO_EVENTFD;
    // Every other index cannot be resized: MSI-X could (has_dyn_msix), but the edu has none (y6 seq 25).
    if (index === VFIO_PCI_INTX_IRQ_INDEX) flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    else flags |= VFIO_IRQ_INFO_NORESIZE;
    v.setUint32(4, flags, true);
    v.setUint32(12, this.vdev.irqCount(index), true);
    return arg.copyTo(b) < 0 ? -EFAULT : 0;
  }

  /**
   * vfio_set_irqs_validate_and_prepare (header, range within the index's vectors, one data type,
   * enough data), then the index's handler (pci-intrs.ts). Answers: y6 seq 31-48.
   */
  private setIrqs(current: Current, arg: UserArg): number {
    const b = arg.copyFrom(IRQ_SET_SIZE);
    if (typeof b === 'number') return b;
    const { argsz, flags, index, start, count } = decodeIrqSet(b);
    if (
      argsz < IRQ_SET_SIZE ||
      index >= VFIO_PCI_NUM_IRQS ||
      count >= 0xffff_ffff - start ||
      flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)
    )
      return -EINVAL;
    const max = this.vdev.irqCount(index);
    if (start >= max || start + count > max) return -EINVAL;
    let size: number;
    switch (flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
      case VFIO_IRQ_SET_DATA_NONE:
        size = 0;
        break;
      case VFIO_IRQ_SET_DATA_BOOL:
        size = 1;
        break;
      case VFIO_IRQ_SET_DATA_EVENTFD:
        size = 4;
        break;
      default:
        return -EINVAL;
    }
    let data: Uint8Array = new Uint8Array(0);
    if (size > 0) {
      if (argsz - IRQ_SET_SIZE < count * size) return -EINVAL;
      const d = arg.copyFrom(count * size, IRQ_SET_SIZE);
      if (typeof d === 'number') return d;
      data = d;
    }
    return this.vdev.irqs.set(current, { flags, index, start, count, data });
  }

  read(_current: Current, dst: Uint8Array, offset: number): number {
    return this.rw(dst, offset, false);
  }

  write(_current: Current, src: Uint8Array, offset: number): number {
    return this.rw(src, offset, true);
  }

  /** vfio_pci_rw: the region from the offset's top bits; config and BAR accesses in natural pieces. */
  private rw(buf: Uint8Array, offset: number, write: boolean): number {
    const index = Math.floor(offset / REGION_SPAN);
    const off = offset % REGION_SPAN;
    const fn = this.vdev.fn;
    let len = buf.byteLength;
    let regs: MmioOps;
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) {
      // vfio_pci_config_rw: the whole access inside cfg_size (256 here), else EFAULT (y6 seq 88-90).
      if (off + len > 256) return -EFAULT;
      regs = { read: (o, n) => fn.readConfig(o, n), write: (o, n, v) => fn.writeConfig(o, n, v) };
    } else if (index < 6 && fn.bars[index]) {
      const bar = fn.bars[index]!;
      if (off >= bar.size) return -EINVAL;
      if (!(fn.command & PCI_COMMAND_MEMORY)) return -EIO;
      len = Math.min(len, bar.size - off);
      regs = bar;
    } else {
      return -EINVAL;
    }
    // Config space in pieces of up to 4 bytes, BARs up to 8 (4 before vfio-pci's 8-byte accesses).
    const piece = index === VFIO_PCI_CONFIG_REGION_INDEX || !this.vdev.options.barQwordAccess ? 4 : 8;
    mmioPieces(regs, off, buf, 0, len, piece, write);
    // A write of PCI_COMMAND's upper byte: INTx disable is vfio-pci's mask (vfio_basic_config_write).
    if (
      write &&
      index === VFIO_PCI_CONFIG_REGION_INDEX &&
      off <= PCI_COMMAND + 1 &&
      off + len > PCI_COMMAND + 1
    )
      this.vdev.irqs.setVirqDisabled((fn.command & PCI_COMMAND_INTX_DISABLE) !== 0);
    return len;
  }

  /** vfio_pci_core_mmap: BARs only, within the BAR, page aligned. */
  /**
   * vfio_pci_core_mmap: a shared mapping of a BAR, page-aligned, inside its size; everything else is
   * EINVAL (y12-device-mmap: a private map, ROM, config, VGA, an absent BAR, past the end).
   */
  mmap(_current: Current, offset: number, len: number, shared: boolean): FileMapping | number {
    const index = Math.floor(offset / REGION_SPAN);
    const off = offset % REGION_SPAN;
    if (!shared || index >= VFIO_PCI_ROM_REGION_INDEX) return -EINVAL;
    const bar = this.vdev.fn.bars[index];
    if (!bar || bar.size < 4096 || off % 4096 !== 0 || off + len > bar.size) return -EINVAL;
    return { pa: this.vdev.barPa[index] + off, mmio: bar, mmioOffset: off };
  }

  release(): void {
    const vd = this.vdev;
    if (--vd.openCount === 0) {
      // vfio_pci_core_disable: bus mastering off, interrupts torn down.
      vd.fn.writeConfig(PCI_COMMAND, 2, vd.fn.command & ~PCI_COMMAND_MASTER);
      vd.irqs.disable();
      vd.ioeventfds.clear();
      vd.pmEngaged = false;
    }
    this.onRelease();
  }
}
