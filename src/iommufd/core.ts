/**
 * iommufd on one host: the /dev/iommu node, the iommufd module parameter, per-user locked_vm
 * (struct user_struct, what iommufd charges a task without CAP_IPC_LOCK), and the calls the VFIO
 * device cdev makes (iommufd_ctx_from_fd, bind, attach, replace, detach, unbind).
 */

import type { Device } from '../iommu/group.ts';
import type { Current } from '../mm/file.ts';
import { EACCES, EBADF, EBADFD } from '../uapi/errno.ts';
import type { KernelProfile } from '../uapi/profile.ts';
import { IommufdCtx } from './ctx.ts';
import { deviceAttach, deviceBind, deviceDetach, deviceReplace, deviceUnbind } from './device.ts';
import type { UserAccounts } from './io-pagetable.ts';
import { IommufdFile } from './main.ts';
import type { IommufdDevice } from './objects.ts';

/** CAP_DAC_OVERRIDE (capability.h). */
const CAP_DAC_OVERRIDE = 1;

export interface IommufdParams {
  /** iommufd.allow_unsafe_interrupts: bind devices whose MSIs are not isolated. */
  allowUnsafeInterrupts: boolean;
}

export class IommufdCore implements UserAccounts {
  readonly params: IommufdParams = { allowUnsafeInterrupts: false };
  private readonly userLocked = new Map<number, number>();

  constructor(readonly profile: KernelProfile) {}

  /**
   * open("/dev/iommu"): root:root 0660 (EACCES for others without CAP_DAC_OVERRIDE), a new context.
   * From the misc device's mode, not a recording: the oracle machines' init chmods /dev/iommu 666
   * (asked 2026-11-25: uid 1000 opened it there), so no recording can show the kernel's own mode.
   */
  open(current: Current): IommufdFile | number {
    if (current.task.euid !== 0 && !current.task.capable(CAP_DAC_OVERRIDE)) return -EACCES;
    return new IommufdFile(new IommufdCtx(this));
  }

  lockedVm(uid: number): number {
    return this.userLocked.get(uid) ?? 0;
  }

  addLockedVm(uid: number, pages: number): void {
    const n = this.lockedVm(uid) + pages;
    if (n === 0) this.userLocked.delete(uid);
    else this.userLocked.set(uid, n);
  }

  /** iommufd_ctx_from_fd: the context behind an iommufd fd, with a reference (EBADF, EBADFD). */
  ctxFromFd(current: Current, fd: number): IommufdCtx | number {
    const f = fd < 0 ? undefined : current.fdget(fd);
    if (f === undefined) return -EBADF;
    if (!(f instanceof IommufdFile)) return -EBADFD;
    f.ctx.ref();
    return f.ctx;
  }

  bind(ctx: IommufdCtx, dev: Device): IommufdDevice | number {
    return deviceBind(ctx, dev);
  }

  /** attach (or replace when already attached): 0 or -errno, and the page table's ID. */
  attach(idev: IommufdDevice, ptId: number, replace: boolean): { ret: number; ptId: number } {
    const out = { ptId };
    const ret = replace ? deviceReplace(idev, out) : deviceAttach(idev, out);
    return { ret, ptId: out.ptId };
  }

  detach(idev: IommufdDevice): void {
    deviceDetach(idev);
  }

  unbind(idev: IommufdDevice): void {
    deviceUnbind(idev);
  }
}
