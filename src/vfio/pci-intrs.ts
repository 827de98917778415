/**
 * vfio-pci's interrupts (drivers/vfio/pci/vfio_pci_intrs.c): the device's one interrupt type at a
 * time (none, INTx, MSI; the edu has no MSI-X), its eventfds, INTx masking, and the REQ
 * single trigger. SET_IRQS arrives here validated (vfio_set_irqs_validate_and_prepare); each index
 * and action goes to its handler as vfio_pci_set_irqs_ioctl dispatches it, ENOTTY where none.
 * Answers: test/oracle/local-answers/<config>/y6-device-api.jsonl seq 31-48, 100-114, 138-151 (SET_IRQS),
 * 158-190 (INTx: level, unmask re-sends, INTx disable masks), 191-221 (MSI: needs bus mastering).
 */

import { type EventFd, eventfdCtxFdget } from '../mm/eventfd.ts';
import type { Current } from '../mm/file.ts';
import { EBUSY, EINVAL, ENOTTY } from '../uapi/errno.ts';
import {
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_REQ_IRQ_INDEX,
} from '../uapi/vfio-device.ts';

/** vdev->irq_type when no interrupt type is enabled (the kernel's VFIO_PCI_NUM_IRQS). */
const IRQ_NONE = -1;

/** One SET_IRQS after validation: the data already copied in (bools or eventfd numbers). */
export interface IrqSet {
  flags: number;
  index: number;
  start: number;
  count: number;
  data: Uint8Array;
}

export class VfioPciIrqs {
  /** vdev->irq_type. */
  private irqType = IRQ_NONE;
  private intxTrigger: EventFd | null = null;
  private intxMasked = false;
  /** vdev->virq_disabled: the user's INTx-disable bit in PCI_COMMAND, which vfio-pci turns into a mask. */
  private virqDisabled = false;
  /** The unmask virqfd: an eventfd whose signal unmasks INTx, and the waiter on it. */
  private unmask: { eventfd: EventFd; waiter: () => boolean } | null = null;
  /** MSI vectors enabled (num_ctx) and their triggers. */
  private msi: (EventFd | null)[] = [];
  private reqTrigger: EventFd | null = null;

  constructor(
    /** KernelProfile.ctxTriggerBadFdEinval */
    private readonly singleBadFdEinval: boolean,
    /** The function still asserts INTx (its Interrupt Status bit): an unmask then re-sends it. */
    private readonly intxAsserted: () => boolean,
    /**
     * The host kernel turned the function's MSI on or off (vfio_msi_enable / _disable program the
     * capability; the user's view of it stays vfio-pci's virtual copy).
     */
    private readonly setMsi: (on: boolean) => void,
  ) {}

  /** MSI off: no vectors, the function back on INTx. */
  private msiOff(): void {
    if (this.irqType === VFIO_PCI_MSI_IRQ_INDEX) this.setMsi(false);
    this.irqType = IRQ_NONE;
    this.msi = [];
  }

  /**
   * The user wrote PCI_COMMAND: vfio_basic_config_write virtualises INTx disable, masking INTx when it
   * is set and unmasking when it is cleared (y6 seq 178-188).
   */
  setVirqDisabled(disabled: boolean): void {
    if (disabled === this.virqDisabled) return;
    this.virqDisabled = disabled;
    if (disabled) {
      if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX) this.intxMasked = true;
    } else this.unmaskIntx();
  }

  /**
   * vfio_pci_intx_unmask: unless the user disabled INTx, unmask; an interrupt the function still
   * asserts is sent again at once and INTx stays masked (it would fire immediately; y6 seq 165-167).
   */
  private unmaskIntx(): void {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX || !this.intxMasked || this.virqDisabled) return;
    if (this.intxAsserted()) this.intxTrigger?.signal();
    else this.intxMasked = false;
  }

  /**
   * vfio_pci_set_irqs_ioctl: the handler for the index and action, or ENOTTY. ERR and MSI-X have no
   * vectors on the edu (conventional PCI, no MSI-X capability), so the count check refused them first.
   */
  set(current: Current, s: IrqSet): number {
    const action = s.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    switch (s.index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_MASK) return this.intxMask(s);
        if (action === VFIO_IRQ_SET_ACTION_UNMASK) return this.intxUnmask(current, s);
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return this.intxTriggerSet(current, s);
        return -ENOTTY;
      case VFIO_PCI_MSI_IRQ_INDEX:
        // MASK/UNMASK: "Need masking support exported" (none).
        return action === VFIO_IRQ_SET_ACTION_TRIGGER ? this.msiTrigger(current, s) : -ENOTTY;
      case VFIO_PCI_REQ_IRQ_INDEX:
        if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) return -ENOTTY;
        if (s.start !== 0 || s.count > 1) return -EINVAL;
        return this.single(
          current,
          s,
          (t) => {
            this.reqTrigger = t;
          },
          this.reqTrigger,
        );
      default:
        return -ENOTTY;
    }
  }

  /** The device raised its interrupt: the enabled type's vector 0, INTx masked automatically. */
  interrupt(): void {
    if (this.irqType === VFIO_PCI_MSI_IRQ_INDEX) {
      this.msi[0]?.signal();
      return;
    }
    if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX && !this.intxMasked) {
      this.intxMasked = true;
      this.intxTrigger?.signal();
    }
  }

  /** vfio_pci_core_disable: every interrupt off, every trigger dropped. */
  disable(): void {
    this.dropUnmask();
    this.virqDisabled = false;
    this.msiOff();
    this.intxTrigger = null;
    this.intxMasked = false;
    this.reqTrigger = null;
  }

  private intxMask(s: IrqSet): number {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX || s.start !== 0 || s.count !== 1) return -EINVAL;
    if (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) return -ENOTTY; // no mask by eventfd in the kernel (y6 seq 143)
    if (s.flags & VFIO_IRQ_SET_DATA_NONE || s.data[0]) this.intxMasked = true;
    return 0;
  }

  private intxUnmask(current: Current, s: IrqSet): number {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX || s.start !== 0 || s.count !== 1) return -EINVAL;
    if (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      // vfio_virqfd_enable / _disable: a signal on the eventfd unmasks INTx; the eventfd is looked up
      // first (y11 seq 30: EBADF), then a second while one is set is EBUSY (y6 seq 139-142, y11 seq 31).
      if (fdAt(s.data, 0) < 0) {
        this.dropUnmask();
        return 0;
      }
      const eventfd = eventfdCtxFdget(current, fdAt(s.data, 0));
      if (typeof eventfd === 'number') return eventfd;
      if (this.unmask !== null) return -EBUSY;
      const waiter = (): boolean => {
        this.unmaskIntx();
        return true;
      };
      eventfd.waiters.add(waiter);
      this.unmask = { eventfd, waiter };
      return 0;
    }
    if (s.flags & VFIO_IRQ_SET_DATA_NONE || s.data[0]) this.unmaskIntx();
    return 0;
  }

  private dropUnmask(): void {
    if (this.unmask === null) return;
    this.unmask.eventfd.waiters.delete(this.unmask.waiter);
    this.unmask = null;
  }

  private intxTriggerSet(current: Current, s: IrqSet): number {
    const intx = this.irqType === VFIO_PCI_INTX_IRQ_INDEX;
    if (intx && s.count === 0 && s.flags & VFIO_IRQ_SET_DATA_NONE) {
      // vfio_intx_disable: the unmask virqfd goes too.
      this.irqType = IRQ_NONE;
      this.intxTrigger = null;
      this.intxMasked = false;
      this.dropUnmask();
      return 0;
    }
    if (!(intx || this.irqType === IRQ_NONE) || s.start !== 0 || s.count !== 1) return -EINVAL;
    if (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      const t = eventfdAt(current, s.data, 0);
      if (typeof t === 'number') return t;
      if (!intx) {
        // vfio_intx_enable: masked from the start if the user disabled INTx.
        this.irqType = VFIO_PCI_INTX_IRQ_INDEX;
        this.intxMasked = this.virqDisabled;
      }
      this.intxTrigger = t;
      return 0;
    }
    if (!intx) return -EINVAL;
    if (s.flags & VFIO_IRQ_SET_DATA_NONE || s.data[0]) this.intxTrigger?.signal();
    return 0;
  }

  private msiTrigger(current: Current, s: IrqSet): number {
    const mine = this.irqType === s.index;
    if (mine && s.count === 0 && s.flags & VFIO_IRQ_SET_DATA_NONE) {
      this.msiOff();
      return 0;
    }
    if (!(mine || this.irqType === IRQ_NONE)) return -EINVAL;
    if (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (!mine) {
        // vfio_msi_enable: start + count vectors (the validation kept them within the capability).
        this.irqType = s.index;
        this.msi = new Array(s.start + s.count).fill(null);
        this.setMsi(true);
      }
      const r = this.msiSetBlock(current, s);
      if (r !== 0 && !mine) this.msiOff();
      return r;
    }
    if (!mine) return -EINVAL;
    for (let i = s.start; i < s.start + s.count; i++)
      if (s.flags & VFIO_IRQ_SET_DATA_NONE || s.data[i - s.start]) this.msi[i]?.signal();
    return 0;
  }

  /** vfio_msi_set_block: each vector's eventfd, or none for -1; stops at the first bad one. */
  private msiSetBlock(current: Current, s: IrqSet): number {
    if (s.start >= this.msi.length || s.start + s.count > this.msi.length) return -EINVAL;
    for (let i = 0; i < s.count; i++) {
      const t = eventfdAt(current, s.data, i);
      if (typeof t === 'number') return t;
      this.msi[s.start + i] = t;
    }
    return 0;
  }

  /**
   * vfio_pci_set_ctx_trigger_single (REQ, ERR): DATA_NONE and BOOL signal it (loopback testing), an
   * eventfd replaces it, -1 drops it, any other negative number leaves it (6.1) or is EINVAL (6.12+).
   */
  private single(current: Current, s: IrqSet, set: (t: EventFd | null) => void, now: EventFd | null): number {
    if (s.flags & VFIO_IRQ_SET_DATA_NONE) {
      if (now === null) return -EINVAL;
      if (s.count) now.signal();
      else set(null);
      return 0;
    }
    if (s.count === 0) return -EINVAL;
    if (s.flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (s.data[0]) now?.signal();
      return 0;
    }
    if (fdAt(s.data, 0) < -1) return this.singleBadFdEinval ? -EINVAL : 0;
    const t = eventfdAt(current, s.data, 0);
    if (typeof t === 'number') return t;
    set(t);
    return 0;
  }
}

function fdAt(data: Uint8Array, i: number): number {
  return new DataView(data.buffer, data.byteOffset).getInt32(4 * i, true);
}

/**
 * The eventfd the i-th s32 of `data` names: null for a negative number (no eventfd), the file, or
 * -errno as eventfd_ctx_fdget fails (EBADF: no such fd, EINVAL: not an eventfd).
 */
function eventfdAt(current: Current, data: Uint8Array, i: number): EventFd | null | number {
  const fd = fdAt(data, i);
  return fd < 0 ? null : eventfdCtxFdget(current, fd);
}
