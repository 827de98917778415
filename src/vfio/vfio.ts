/**
 * The VFIO core of one host: its kernel profile and module parameters, the groups that have
 * devices bound to vfio-pci (each a /dev/vfio/N node), containers, and device fds.
 */

import type { Device, IommuGroup } from '../iommu/group.ts';
import type { Current, KernelFile } from '../mm/file.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EBUSY, EINVAL, ENODEV, ENOENT } from '../uapi/errno.ts';
import type { KernelProfile } from '../uapi/profile.ts';
import { VfioContainer } from './container.ts';
import { VfioGroup, VfioGroupFile } from './group.ts';
import type { VfioParams } from './params.ts';

/**
 * Opens the device file of a device whose group is in a container with an IOMMU (set by the host, which
 * knows the bus driver); `release` is for the file's last close.
 */
export type DeviceFileFactory = (device: Device, release: () => void) => KernelFile | number;

export class VfioCore {
  readonly groups = new Map<number, VfioGroup>();
  deviceFileFactory: DeviceFileFactory | null = null;
  /** Per group ID: devices bound through their cdev (group->cdev_device_open_cnt). */
  private readonly cdevOpen = new Map<number, number>();

  constructor(
    readonly profile: KernelProfile,
    readonly params: VfioParams,
  ) {}

  /** Registers a group whose devices are bound to vfio-pci: /dev/vfio/<id> appears. */
  addGroup(group: IommuGroup): VfioGroup {
    const g = new VfioGroup(this, group);
    this.groups.set(group.id, g);
    return g;
  }

  /** open("/dev/vfio/vfio"). */
  openContainer(): VfioContainer {
    return new VfioContainer(this);
  }

  /** open("/dev/vfio/N"): ENOENT without such a node, EBUSY if already open or a device of it is bound through its cdev. */
  openGroup(id: number): VfioGroupFile | number {
    const g = this.groups.get(id);
    if (g === undefined) return -ENOENT;
    if ((this.cdevOpen.get(id) ?? 0) > 0) return -EBUSY;
    if (g.openedFile !== null) return -EBUSY;
    const f = new VfioGroupFile(g);
    g.openedFile = f;
    return f;
  }

  /** vfio_device_block_group: a cdev bind keeps the group from being opened; EBUSY if it is open. */
  blockGroup(id: number): number {
    const g = this.groups.get(id);
    if (g?.openedFile != null) return -EBUSY;
    this.cdevOpen.set(id, (this.cdevOpen.get(id) ?? 0) + 1);
    return 0;
  }

  unblockGroup(id: number): void {
    const n = (this.cdevOpen.get(id) ?? 0) - 1;
    if (n > 0) this.cdevOpen.set(id, n);
    else this.cdevOpen.delete(id);
  }

  /**
   * VFIO_GROUP_GET_DEVICE_FD (vfio_group_ioctl_get_device_fd): the device by name (ENODEV), a free
   * descriptor (EMFILE), then the open, which needs the group in a container whose IOMMU type is set
   * (EINVAL). 3.19 tests the container first and takes the descriptor after the open. An open device
   * holds the group file and counts against UNSET_CONTAINER (EBUSY).
   */
  getDeviceFd(current: Current, groupFile: VfioGroupFile, arg: UserArg): number {
    const name = arg.copyString(4096);
    if (typeof name === 'number') return name;
    const g = groupFile.group;
    const noIommu = g.container === null || g.container.iommu === null;
    const containerFirst = this.profile.deviceFdContainerFirst;
    if (containerFirst && noIommu) return -EINVAL;
    const device = g.iommuGroup.devices.find((d) => d.name === name);
    if (device === undefined) return -ENODEV;
    if (!containerFirst) {
      const fdno = current.unusedFd();
      if (fdno < 0) return fdno;
      if (noIommu) return -EINVAL;
    }
    if (this.deviceFileFactory === null) return -ENODEV;
    const file = this.deviceFileFactory(device, () => {
      g.openDevices--;
      groupFile.release();
    });
    if (typeof file === 'number') return file;
    g.openDevices++;
    groupFile.refs++;
    // installFd releases the file when the table is full: 3.19's EMFILE after the open.
    return current.installFd(file);
  }
}
