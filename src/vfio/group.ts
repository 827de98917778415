/**
 * /dev/vfio/$GROUP: the VFIO group file (drivers/vfio/group.c). One open at a time (EBUSY);
 * GET_STATUS, SET_CONTAINER (DMA ownership claimed 5.19+), UNSET_CONTAINER, GET_DEVICE_FD
 * (vfio-type1.md §3.4-3.6). Device fds hold a reference on the group file, so closing the group
 * fd with a device open releases nothing until the device is closed too.
 */

import { iommuGroupClaimDmaOwner, iommuGroupReleaseDmaOwner } from '../iommu/core.ts';
import type { IommuGroup } from '../iommu/group.ts';
import type { Current, KernelFile } from '../mm/file.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EBADF, EBUSY, EFAULT, EINVAL, ENOTTY } from '../uapi/errno.ts';
import {
  decodeGroupStatus,
  encodeGroupStatus,
  GROUP_STATUS_SIZE,
  VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
} from '../uapi/vfio.ts';
import { VfioContainer } from './container.ts';
import type { VfioCore } from './vfio.ts';

/** The kernel object behind /dev/vfio/N (struct vfio_group). */
export class VfioGroup {
  container: VfioContainer | null = null;
  /** The open group file, if any (group->opened_file). */
  openedFile: VfioGroupFile | null = null;
  /** Open device fds of this group (container_users - 1). */
  openDevices = 0;

  constructor(
    readonly core: VfioCore,
    readonly iommuGroup: IommuGroup,
  ) {}

  get id(): number {
    return this.iommuGroup.id;
  }

  /** Viable when nobody else claimed DMA ownership (no kernel driver bound in the group). */
  get viable(): boolean {
    return this.iommuGroup.devices.every((d) => d.boundDriver === 'vfio-pci' || d.boundDriver === null);
  }

  detachContainer(): void {
    const c = this.container;
    if (c === null) return;
    c.detachGroup(this);
    if (this.core.profile.dmaOwnership) iommuGroupReleaseDmaOwner(this.iommuGroup);
    this.container = null;
  }
}

export class VfioGroupFile implements KernelFile {
  readonly kind = 'vfio-group';
  /** References: the fd table's and one per open device fd. */
  refs = 1;

  constructor(readonly group: VfioGroup) {}

  ioctl(current: Current, request: number, arg: UserArg): number {
    switch (request) {
      case VFIO_GROUP_GET_STATUS:
        return this.getStatus(arg);
      case VFIO_GROUP_SET_CONTAINER:
        return this.setContainer(current, arg);
      case VFIO_GROUP_UNSET_CONTAINER:
        return this.unsetContainer();
      case VFIO_GROUP_GET_DEVICE_FD:
        return this.group.core.getDeviceFd(current, this, arg);
      default:
        return -ENOTTY;
    }
  }

  private getStatus(arg: UserArg): number {
    const b = arg.copyFrom(GROUP_STATUS_SIZE);
    if (typeof b === 'number') return b;
    const status = decodeGroupStatus(b);
    if (status.argsz < GROUP_STATUS_SIZE) return -EINVAL;
    let flags = 0;
    if (this.group.container !== null) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (this.group.viable) flags = VFIO_GROUP_FLAGS_VIABLE;
    return arg.copyTo(encodeGroupStatus({ argsz: status.argsz, flags })) < 0 ? -EFAULT : 0;
  }

  /** vfio_group_ioctl_set_container, in the profile's order (vfio-type1.md §3.5). */
  private setContainer(current: Current, arg: UserArg): number {
    const g = this.group;
    const p = g.core.profile;
    const b = arg.copyFrom(4);
    if (typeof b === 'number') return -EFAULT;
    const fd = new DataView(b.buffer).getInt32(0, true);
    if (fd < 0) return -p.setContainerNegativeFd;
    let file: KernelFile | undefined;
    if (p.setContainerFdFirst) {
      file = current.fdget(fd);
      if (file === undefined) return -EBADF;
      if (g.container !== null) return -EINVAL;
    } else {
      if (g.container !== null) return -EINVAL;
      file = current.fdget(fd);
      if (file === undefined) return -EBADF;
    }
    if (!(file instanceof VfioContainer)) return -p.setContainerNotContainer;
    if (p.dmaOwnership) {
      const r = iommuGroupClaimDmaOwner(g.iommuGroup, g);
      if (r < 0) return r;
    }
    const r = file.attachGroup(g, current);
    if (r < 0) {
      if (p.dmaOwnership) iommuGroupReleaseDmaOwner(g.iommuGroup);
      return r;
    }
    g.container = file;
    return 0;
  }

  private unsetContainer(): number {
    const g = this.group;
    if (g.container === null) return -EINVAL;
    if (g.openDevices > 0) return -EBUSY;
    g.detachContainer();
    return 0;
  }

  /** vfio_group_fops_release, once the fd and every device fd are closed. */
  release(): void {
    if (--this.refs > 0) return;
    this.group.detachContainer();
    this.group.openedFile = null;
  }
}
