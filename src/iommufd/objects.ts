/**
 * The object types of an iommufd context and their destroy ops (drivers/iommu/iommufd: device.c,
 * ioas.c, hw_pagetable.c, viommu.c, eventq.c). Each holds a `users` reference on what it uses:
 *
 * | object | holds a user of |
 * |---|---|
 * | HWPT paging | its IOAS |
 * | HWPT nested | its vIOMMU (or its parent HWPT without one) |
 * | vIOMMU | its nest-parent HWPT |
 * | vDEVICE | its vIOMMU and its device |
 * | vEVENTQ | its vIOMMU (and its fd holds the vEVENTQ) |
 * | an attachment | the HWPT (one per device) and the device |
 *
 * so IOMMU_DESTROY answers EBUSY while anything uses an object (oracle a-nested-happy seq 43-44).
 */

import type { ArmVsmmu, VsmmuCore } from '../iommu/arm-smmu-v3-iommufd.ts';
import type { IommuDomain } from '../iommu/domain.ts';
import type { IommuDriver } from '../iommu/driver.ts';
import type { Device, IommuGroup } from '../iommu/group.ts';
import type { Current, KernelFile } from '../mm/file.ts';
import { EFAULT, ENOENT, EOPNOTSUPP } from '../uapi/errno.ts';
import type { IommufdCtx } from './ctx.ts';
import { IoPagetable } from './io-pagetable.ts';
import { IommufdObject } from './object.ts';

/** What iommufd keeps per IOMMU group of a context (struct iommufd_group): the no-PASID attachment. */
export class IommufdGroup {
  attach: { hwpt: Hwpt; devices: Set<IommufdDevice> } | null = null;

  constructor(readonly group: IommuGroup) {}
}

/** IOMMUFD_OBJ_DEVICE: a device bound to the context (iommufd_device_bind). */
export class IommufdDevice extends IommufdObject {
  readonly type = 'device';
  /** The vDEVICE representing it on a vIOMMU (one at most). */
  vdev: Vdevice | null = null;
  /** Set while the device is being unbound: no new vDEVICE (ENOENT). */
  destroying = false;

  constructor(
    readonly ctx: IommufdCtx,
    readonly dev: Device,
    readonly igroup: IommufdGroup,
  ) {
    super();
  }

  /** iommufd_device_destroy: DMA ownership released, the context reference dropped. */
  destroy(): void {
    const g = this.dev.group;
    if (g.owner === this.ctx && --g.ownerCount === 0) g.owner = null;
    this.ctx.dropGroup(this.igroup);
    this.ctx.put();
  }
}

/** IOMMUFD_OBJ_IOAS: an I/O address space. */
export class Ioas extends IommufdObject {
  readonly type = 'ioas';
  readonly iopt = new IoPagetable();
  /** The paging HWPTs on it (ioas->hwpt_list), oldest first. */
  readonly hwptList: HwptPaging[] = [];

  destroy(): void {
    this.iopt.unmapAll();
  }
}

/** What both HWPT kinds share (struct iommufd_hw_pagetable). */
export interface Hwpt extends IommufdObject {
  readonly type: 'hwpt_paging' | 'hwpt_nested';
  domain: IommuDomain | null;
  fault: Fault | null;
}

/** IOMMUFD_OBJ_HWPT_PAGING: a kernel-managed paging domain filled from an IOAS. */
export class HwptPaging extends IommufdObject implements Hwpt {
  readonly type = 'hwpt_paging';
  domain: IommuDomain | null = null;
  fault: Fault | null = null;
  /** Allocated by an attach to an IOAS, destroyed with its last device. */
  autoDomain = false;
  nestParent = false;
  /** On ioas.hwptList (and its domain on the IOAS). */
  inList = false;

  constructor(readonly ioas: Ioas) {
    super();
  }

  destroy(): void {
    if (this.inList) {
      this.ioas.hwptList.splice(this.ioas.hwptList.indexOf(this), 1);
      this.inList = false;
      if (this.domain !== null) this.ioas.iopt.removeDomain(this.domain);
    }
    this.domain?.free();
    this.domain = null;
    if (this.fault !== null) this.fault.users--;
    this.ioas.users--;
  }
}

/** IOMMUFD_OBJ_HWPT_NESTED: a user-managed (stage-1) domain over a nest parent. */
export class HwptNested extends IommufdObject implements Hwpt {
  readonly type = 'hwpt_nested';
  domain: IommuDomain | null = null;
  fault: Fault | null = null;

  constructor(
    readonly parent: HwptPaging,
    readonly viommu: Viommu | null,
  ) {
    super();
  }

  destroy(): void {
    this.domain?.free();
    this.domain = null;
    if (this.fault !== null) this.fault.users--;
    if (this.viommu !== null) this.viommu.users--;
    else this.parent.users--;
  }
}

/** IOMMUFD_OBJ_VIOMMU: a virtual IOMMU over a nest parent (struct iommufd_viommu). */
export class Viommu extends IommufdObject implements VsmmuCore {
  readonly type = 'viommu';
  /** The driver's vIOMMU (struct arm_vsmmu). */
  ops: ArmVsmmu | null = null;
  /** vDEVICEs by virtual ID. */
  readonly vdevs = new Map<bigint, Vdevice>();
  readonly veventqs: Veventq[] = [];

  constructor(
    readonly hwpt: HwptPaging,
    readonly viommuType: number,
    /** The physical IOMMU instance (viommu->iommu_dev). */
    readonly iommuDev: IommuDriver,
  ) {
    super();
  }

  destroy(): void {
    this.hwpt.users--;
    this.vdevs.clear();
  }

  vdevIdOf(dev: Device): number {
    for (const v of this.vdevs.values()) if (v.idev.dev === dev) return Number(v.virtId);
    return -ENOENT;
  }

  findDev(vsid: number): Device | undefined {
    return this.vdevs.get(BigInt(vsid))?.idev.dev;
  }

  /** iommufd_viommu_report_event: into the vEVENTQ of `type`, or EOPNOTSUPP without one. */
  reportEvent(type: number, data: Uint8Array): number {
    const q = this.veventqs.find((e) => e.veventqType === type);
    if (q === undefined) return -EOPNOTSUPP;
    q.report(data);
    return 0;
  }
}

/** IOMMUFD_OBJ_VDEVICE: a device as a vIOMMU sees it, with its virtual ID (the vSID on SMMUv3). */
export class Vdevice extends IommufdObject {
  readonly type = 'vdevice';

  constructor(
    readonly viommu: Viommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {
    super();
  }

  /** iommufd_vdevice_abort: out of the vIOMMU's table, its user dropped, the device forgets it. */
  override abort(): void {
    if (this.viommu.vdevs.get(this.virtId) === this) this.viommu.vdevs.delete(this.virtId);
    this.viommu.users--;
    if (this.idev.vdev === this) this.idev.vdev = null;
  }

  /** iommufd_vdevice_destroy: abort, and the reference on the device put. */
  destroy(): void {
    this.abort();
    this.idev.users--;
  }
}

/** A vEVENTQ entry: an event (32 bytes on SMMUv3) or the lost-events header. */
interface Vevent {
  lost: boolean;
  sequence: number;
  data: Uint8Array | null;
}

/**
 * IOMMUFD_OBJ_VEVENTQ (eventq.c): a queue of at most `depth` events. A report into a full queue moves
 * the one lost-events header (flags LOST_EVENTS) to the tail with the next sequence number; every
 * report takes a sequence number (0..INT_MAX, wrapping to 0), lost or not (oracle a-nested-happy seq 42:
 * depth 64, 512 reports: 64 events and one header; x11 seq 20: depth 3, 4 reports, header sequence 3).
 */
export class Veventq extends IommufdObject {
  readonly type = 'veventq';
  readonly deliver: Vevent[] = [];
  private readonly lostHeader: Vevent = { lost: true, sequence: 0, data: null };
  numEvents = 0;
  sequence = 0;

  constructor(
    readonly viommu: Viommu,
    readonly veventqType: number,
    readonly depth: number,
  ) {
    super();
  }

  /** iommufd_viommu_report_event + iommufd_vevent_handler. */
  report(data: Uint8Array): void {
    let ev: Vevent;
    if (this.numEvents === this.depth) {
      ev = this.lostHeader;
    } else {
      ev = { lost: false, sequence: 0, data: data.slice() };
      this.numEvents++;
    }
    // The one header only ever sits last: whatever is queued next replaces it there (a new event after
    // a partial read drops it; another lost event moves it on with the new sequence number).
    if (this.deliver[this.deliver.length - 1] === this.lostHeader) this.deliver.pop();
    this.deliver.push(ev);
    ev.sequence = this.sequence;
    this.sequence = (this.sequence + 1) & 0x7fff_ffff;
  }

  /**
   * read(): whole records while they fit (8-byte header + data; a lost-events header alone); nothing
   * that does not fit is split. Returns the bytes, or 0 when none fit or nothing is queued.
   */
  read(dst: Uint8Array): number {
    let done = 0;
    const v = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    while (this.deliver.length > 0) {
      const cur = this.deliver[0];
      const len = 8 + (cur.data?.length ?? 0);
      if (done + len > dst.byteLength) break;
      v.setUint32(done, cur.lost ? 1 : 0, true);
      v.setUint32(done + 4, cur.sequence >>> 0, true);
      if (cur.data !== null) dst.set(cur.data, done + 8);
      done += len;
      this.deliver.shift();
      if (!cur.lost) this.numEvents--;
    }
    return done;
  }

  override abort(): void {
    this.deliver.length = 0;
    this.numEvents = 0;
    this.viommu.users--;
    const i = this.viommu.veventqs.indexOf(this);
    if (i >= 0) this.viommu.veventqs.splice(i, 1);
  }

  destroy(): void {
    this.abort();
  }
}

/** The vEVENTQ's anonymous file ("[iommufd-viommu-event]"): read(), no seeking; it holds the vEVENTQ. */
export class VeventqFile implements KernelFile {
  readonly kind = 'iommufd-veventq';
  /** nonseekable_open: no position; pread and pwrite are ESPIPE (y10 seq 28-31). */
  readonly stream = true;

  constructor(
    readonly veventq: Veventq,
    private readonly ctx: IommufdCtx,
  ) {}

  read(_current: Current, dst: Uint8Array): number {
    return this.veventq.read(dst);
  }

  release(): void {
    this.veventq.users--;
    this.ctx.put();
  }
}

/** IOMMUFD_OBJ_FAULT: an I/O page fault queue. No PRI or stall in this model: it stays empty. */
export class Fault extends IommufdObject {
  readonly type = 'fault';

  destroy(): void {}
}

/** The fault queue's file ("[iommufd-pgfault]"): empty reads, no responses to take. */
export class FaultFile implements KernelFile {
  readonly kind = 'iommufd-pgfault';
  readonly stream = true;

  constructor(
    readonly fault: Fault,
    private readonly ctx: IommufdCtx,
  ) {}

  read(): number {
    return 0;
  }

  write(_current: Current, src: Uint8Array): number {
    // iommu_hwpt_page_response records answer groups that do not exist: nothing to respond to.
    return src.byteLength === 0 ? 0 : -EFAULT;
  }

  release(): void {
    this.fault.users--;
    this.ctx.put();
  }
}
