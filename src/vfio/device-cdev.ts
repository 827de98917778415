/**
 * The VFIO device cdev, /dev/vfio/devices/vfioN (drivers/vfio/device_cdev.c, iommufd.c, vfio_main.c;
 * 6.18): a device file that does nothing (EINVAL) until VFIO_DEVICE_BIND_IOMMUFD binds it to an iommufd
 * context; then it is the vfio-pci device file, plus VFIO_DEVICE_ATTACH_IOMMUFD_PT (attach, or replace
 * once attached) and VFIO_DEVICE_DETACH_IOMMUFD_PT. While bound, the group cannot be opened (EBUSY), and
 * a bind while the group is open is EBUSY. The last close disables the device, detaches and unbinds.
 *
 * iommufd sits beside vfio: the host hands this file the iommufd calls (CdevIommufd).
 */

import type { Device } from '../iommu/group.ts';
import type { Current, FileMapping, KernelFile } from '../mm/file.ts';
import { copyStructFromUser, type UserArg, userPointer } from '../mm/uaccess.ts';
import { EFAULT, EINVAL } from '../uapi/errno.ts';
import {
  VFIO_DEVICE_ATTACH_PASID,
  VFIO_DEVICE_BIND_FLAG_TOKEN,
  VFIO_DEVICE_DETACH_PASID,
  vfioDeviceAttachIommufdPt,
  vfioDeviceBindIommufd,
  vfioDeviceDetachIommufdPt,
} from '../uapi/iommufd.ts';
import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
} from '../uapi/vfio.ts';
import type { VfioPciDevice } from './pci-device.ts';
import { VfioPciDeviceFile } from './pci-device.ts';
import type { VfioCore } from './vfio.ts';

/** A context reference taken from an iommufd fd (iommufd_ctx_from_fd). */
export interface CdevIommufdCtx {
  put(): void;
}

/** What the cdev asks of iommufd; the host wires it to its iommufd. */
export interface CdevIommufd<C extends CdevIommufdCtx = CdevIommufdCtx, D = unknown> {
  /** iommufd_ctx_from_fd: EBADF for a bad fd, EBADFD for a file that is not an iommufd. */
  ctxFromFd(current: Current, fd: number): C | number;
  /** iommufd_device_bind: the device object and its ID, or -errno. */
  bind(ctx: C, dev: Device): (D & { id: number }) | number;
  /** iommufd_device_attach / _replace: 0 or -errno, and the page table's ID (an IOAS's: the HWPT's). */
  attach(idev: D, ptId: number, replace: boolean): { ret: number; ptId: number };
  detach(idev: D): void;
  unbind(idev: D): void;
}

export class VfioCdevFile<C extends CdevIommufdCtx = CdevIommufdCtx, D = unknown> implements KernelFile {
  readonly kind = 'vfio-device-cdev';
  /** The vfio-pci device file once bound (df->access_granted). */
  private inner: VfioPciDeviceFile | null = null;
  private ctx: C | null = null;
  private idev: (D & { id: number }) | null = null;
  /** vdev->iommufd_attached */
  private attached = false;

  constructor(
    private readonly vfio: VfioCore,
    readonly device: Device,
    private readonly vdev: VfioPciDevice,
    private readonly iommufd: CdevIommufd<C, D>,
  ) {}

  ioctl(current: Current, request: number, arg: UserArg): number {
    if (request === VFIO_DEVICE_BIND_IOMMUFD) return this.bind(current, arg);
    if (this.inner === null) return -EINVAL;
    if (request === VFIO_DEVICE_ATTACH_IOMMUFD_PT) return this.attachPt(arg);
    if (request === VFIO_DEVICE_DETACH_IOMMUFD_PT) return this.detachPt(arg);
    return this.inner.ioctl(current, request, arg);
  }

  /**
   * vfio_df_ioctl_bind_iommufd: argsz below out_devid EINVAL, a negative fd or unknown flags EINVAL,
   * the group open EBUSY, bound already EINVAL, a VF token for a device that is neither PF nor VF
   * EINVAL, the iommufd fd (EBADF, EBADFD), the device opened through its group EINVAL, then
   * iommufd_device_bind and vfio-pci's open_device (the device is enabled here, not at open()).
   */
  private bind(current: Current, arg: UserArg): number {
    const hdr = arg.copyFrom(4);
    if (typeof hdr === 'number') return -EFAULT;
    const argsz = new DataView(hdr.buffer).getUint32(0, true);
    if (argsz < vfioDeviceBindIommufd.min) return -EINVAL;
    const raw = copyStructFromUser(arg, vfioDeviceBindIommufd.size, argsz);
    if (typeof raw === 'number') return raw;
    const b = vfioDeviceBindIommufd.decode(raw);
    if (b.iommufd < 0 || b.flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN) return -EINVAL;
    const groupId = this.device.group.id;
    const r = this.vfio.blockGroup(groupId);
    if (r < 0) return r;
    const fail = (e: number): number => {
      this.vfio.unblockGroup(groupId);
      return e;
    };
    if (this.inner !== null) return fail(-EINVAL);
    if (b.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
      // vfio_pci_core_match_token_uuid: the edu is neither an SR-IOV PF nor a VF.
      if (typeof userPointer(current.mm, b.token_uuid_ptr).copyFrom(16) === 'number') return fail(-EFAULT);
      return fail(-EINVAL);
    }
    const ctx = this.iommufd.ctxFromFd(current, b.iommufd);
    if (typeof ctx === 'number') return fail(ctx);
    // vfio_df_open: the cdev path cannot share a device the group path opened.
    if (this.vdev.openCount !== 0) {
      ctx.put();
      return fail(-EINVAL);
    }
    const idev = this.iommufd.bind(ctx, this.device);
    if (typeof idev === 'number') {
      ctx.put();
      return fail(idev);
    }
    this.ctx = ctx;
    this.idev = idev;
    this.inner = new VfioPciDeviceFile(this.vdev, () => {}, true);
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, idev.id, true);
    if (arg.copyTo(out, 12) < 0) {
      this.closeDevice();
      this.vfio.unblockGroup(groupId);
      return -EFAULT;
    }
    return 0;
  }

  /** vfio_df_ioctl_attach_pt: PASID attach is EINVAL here (the devices have no PASID capability). */
  private attachPt(arg: UserArg): number {
    const min = vfioDeviceAttachIommufdPt.min;
    const b = arg.copyFrom(min);
    if (typeof b === 'number') return -EFAULT;
    const a = vfioDeviceAttachIommufdPt.decode(b);
    if (a.argsz < min) return -EINVAL;
    if (a.flags & ~VFIO_DEVICE_ATTACH_PASID) return -EINVAL;
    if (a.flags & VFIO_DEVICE_ATTACH_PASID) {
      if (a.argsz < vfioDeviceAttachIommufdPt.size) return -EINVAL;
      if (typeof arg.copyFrom(4, 12) === 'number') return -EFAULT;
      return -EINVAL;
    }
    const r = this.iommufd.attach(this.idev!, a.pt_id, this.attached);
    if (r.ret < 0) return r.ret;
    this.attached = true;
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, r.ptId, true);
    if (arg.copyTo(out, 8) < 0) {
      this.iommufd.detach(this.idev!);
      this.attached = false;
      return -EFAULT;
    }
    return 0;
  }

  /** vfio_df_ioctl_detach_pt: detaching a device that is not attached does nothing. */
  private detachPt(arg: UserArg): number {
    const min = vfioDeviceDetachIommufdPt.min;
    const b = arg.copyFrom(min);
    if (typeof b === 'number') return -EFAULT;
    const d = vfioDeviceDetachIommufdPt.decode(b);
    if (d.argsz < min) return -EINVAL;
    if (d.flags & ~VFIO_DEVICE_DETACH_PASID) return -EINVAL;
    if (d.flags & VFIO_DEVICE_DETACH_PASID) {
      if (d.argsz < vfioDeviceDetachIommufdPt.size) return -EINVAL;
      if (typeof arg.copyFrom(4, 8) === 'number') return -EFAULT;
      return 0;
    }
    if (this.attached) {
      this.iommufd.detach(this.idev!);
      this.attached = false;
    }
    return 0;
  }

  read(current: Current, dst: Uint8Array, offset: number): number {
    return this.inner === null ? -EINVAL : this.inner.read(current, dst, offset);
  }

  write(current: Current, src: Uint8Array, offset: number): number {
    return this.inner === null ? -EINVAL : this.inner.write(current, src, offset);
  }

  /** EINVAL until BIND_IOMMUFD, then vfio-pci's (y10-iommufd-fd-syscalls seq 12, 14). */
  mmap(current: Current, offset: number, len: number, shared: boolean): FileMapping | number {
    return this.inner === null ? -EINVAL : this.inner.mmap(current, offset, len, shared);
  }

  /** vfio_df_device_last_close: close_device (bus mastering off), then detach and unbind. */
  private closeDevice(): void {
    this.inner?.release();
    this.inner = null;
    if (this.idev !== null) {
      if (this.attached) this.iommufd.detach(this.idev);
      this.attached = false;
      this.iommufd.unbind(this.idev);
      this.idev = null;
    }
    this.ctx?.put();
    this.ctx = null;
  }

  release(): void {
    if (this.inner === null) return;
    this.closeDevice();
    this.vfio.unblockGroup(this.device.group.id);
  }
}
