/**
 * VFIO_DEVICE_IOEVENTFD (vfio_pci_ioctl_ioeventfd, vfio_pci_ioeventfd in vfio_pci_rdwr.c): an eventfd
 * whose signal makes the kernel write `data` (1, 2, 4 or 8 bytes) at an offset of a BAR, so a VMM
 * can hand a guest's doorbell write to the kernel. The same (BAR, offset, data, size) with fd -1
 * removes it. Answers: test/oracle/local-answers/<config>/y6-device-api.jsonl seq 59-66, 152-155.
 */

import type { PciFunction } from '../device/pci.ts';
import { type EventFd, eventfdCtxFdget } from '../mm/eventfd.ts';
import type { Current } from '../mm/file.ts';
import { mmioPieces } from '../mm/mm.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EEXIST, EINVAL, ENODEV, ENOSPC } from '../uapi/errno.ts';
import { IOEVENTFD_FD_AT, VFIO_PCI_OFFSET_SHIFT } from '../uapi/vfio-device.ts';

/** offsetofend(struct vfio_device_ioeventfd, fd). */
const MINSZ = 28;
/** VFIO_DEVICE_IOEVENTFD_SIZE_MASK: 8, 16, 32 or 64 bits. */
const SIZE_MASK = 0xf;
/** VFIO_PCI_IOEVENTFD_MAX */
const MAX = 1000;

interface IoEventFd {
  bar: number;
  pos: number;
  data: bigint;
  count: number;
  eventfd: EventFd;
  waiter: () => boolean;
}

export class VfioPciIoeventfds {
  private readonly list: IoEventFd[] = [];

  constructor(
    private readonly fn: PciFunction,
    /** An 8-byte ioeventfd is refused (6.18: EINVAL where 6.1 and 6.12 go on; y6 seq 65). */
    private readonly noQword: boolean,
  ) {}

  ioctl(current: Current, arg: UserArg): number {
    const b = arg.copyFrom(MINSZ);
    if (typeof b === 'number') return b;
    const v = new DataView(b.buffer, b.byteOffset, MINSZ);
    const argsz = v.getUint32(0, true);
    const flags = v.getUint32(4, true);
    const offset = v.getBigUint64(8, true);
    const data = v.getBigUint64(16, true);
    const fd = v.getInt32(IOEVENTFD_FD_AT, true);
    if (argsz < MINSZ || flags & ~SIZE_MASK) return -EINVAL;
    const count = flags & SIZE_MASK;
    if ((count & (count - 1)) !== 0 || count === 0 || fd < -1) return -EINVAL;
    const bar = Number(offset >> BigInt(VFIO_PCI_OFFSET_SHIFT));
    const pos = Number(offset & ((1n << BigInt(VFIO_PCI_OFFSET_SHIFT)) - 1n));
    if (bar > 5) return -EINVAL;
    const len = this.fn.bars[bar]?.size ?? 0;
    if (pos + count > len) return -EINVAL;
    if (count === 8 && this.noQword) return -EINVAL;
    const at = this.list.findIndex(
      (e) => e.bar === bar && e.pos === pos && e.data === data && e.count === count,
    );
    if (at >= 0) {
      if (fd !== -1) return -EEXIST;
      const [gone] = this.list.splice(at, 1);
      gone.eventfd.waiters.delete(gone.waiter);
      return 0;
    }
    if (fd < 0) return -ENODEV;
    if (this.list.length >= MAX) return -ENOSPC;
    const f = eventfdCtxFdget(current, fd);
    if (typeof f === 'number') return f;
    const regs = this.fn.bars[bar]!;
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, data, true);
    const e: IoEventFd = {
      bar,
      pos,
      data,
      count,
      eventfd: f,
      // vfio_pci_ioeventfd_handler: the write, as if the VMM had made it through the BAR.
      waiter: () => {
        mmioPieces(regs, pos, bytes, 0, count, 8, true);
        return true;
      },
    };
    f.waiters.add(e.waiter);
    this.list.push(e);
    return 0;
  }

  /** The device is disabled (last close): every ioeventfd goes. */
  clear(): void {
    for (const e of this.list) e.eventfd.waiters.delete(e.waiter);
    this.list.length = 0;
  }
}
