/**
 * A VMM over iommufd, the path that replaced type 6 (what QEMU's iommufd-backed "accel" vSMMU does;
 * reference §7.1 recipe, docs/iommufd.md): the device through its VFIO cdev bound to /dev/iommu, guest
 * RAM in an IOAS (IOVA = guest-physical address) under a nest-parent HWPT (stage 2), a vIOMMU with a
 * vDEVICE for the device's virtual StreamID, and a vEVENTQ. It presents the same VirtualSmmu as the
 * type-6 VMM to the same guest driver, and turns what the guest does to it into iommufd calls:
 *
 * | guest | host |
 * |---|---|
 * | writes an STE, CFGI_STE | IOMMU_HWPT_ALLOC of a nested HWPT from vSTE words 0-1 on the vIOMMU, VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace), IOMMU_DESTROY of the old one |
 * | TLBI_NH_*, TLBI_NSNH_ALL, CFGI_CD(_ALL), ATC_INV | the raw command, batched until CMD_SYNC, IOMMU_HWPT_INVALIDATE on the vIOMMU |
 * | reads its event queue | records read from the vEVENTQ fd, written into the guest's queue |
 */

import { GuestRam } from '../guest/ram.ts';
import type { Host } from '../host/host.ts';
import {
  CMD_ATC_INV,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_SYNC,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  type decodeCommand,
} from '../smmu/index.ts';
import { IOMMU_HWPT_ALLOC_NEST_PARENT } from '../uapi/iommufd.ts';
import { EduDma } from './edu-dma.ts';
import { IommufdHandle, readVeventq, VfioCdevHandle } from './iommufd-api.ts';
import { check, type GuestOptions, VmmBase, VmmError } from './vmm-base.ts';
import { VirtualSmmu } from './vsmmu.ts';

export interface IommufdVmmOptions extends GuestOptions {
  /** The vEVENTQ's depth (default 64). */
  eventqDepth?: number;
}

/** Guest commands the kernel takes through IOMMU_HWPT_INVALIDATE on a vIOMMU (reference §7.4). */
const FORWARDED = new Set([
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_ATC_INV,
]);

export class IommufdVmm extends VmmBase {
  readonly iommufd: IommufdHandle;
  readonly cdev: VfioCdevHandle;
  protected readonly edu: EduDma;
  readonly devId: number;
  readonly ioasId: number;
  /** The nest-parent (stage-2) HWPT. */
  readonly parentId: number;
  readonly viommuId: number;
  readonly vdeviceId: number;
  readonly veventqFd: number;
  readonly ram: GuestRam;
  readonly vsmmu: VirtualSmmu;
  /** The nested HWPT built from the guest's current vSTE (null: the device is on the parent). */
  nestedId: number | null = null;
  /** Guest commands waiting for the guest's CMD_SYNC. */
  private pending: Uint32Array[] = [];
  /** Events the vEVENTQ dropped (lost-events headers read). */
  lostEvents = 0;

  constructor(host: Host, options: IommufdVmmOptions = {}) {
    super(host, options);
    const ramSize = options.ramSize ?? 64 << 20;
    const ipaBase = options.ipaBase ?? 0x4000_0000;
    const ifd = IommufdHandle.open(this.proc);
    if (typeof ifd === 'number') throw new VmmError('open /dev/iommu', -ifd);
    this.iommufd = ifd;
    const dev = host.devices[0];
    const path = `/dev/vfio/devices/${host.cdevName(dev) ?? ''}`;
    const cdev = VfioCdevHandle.open(this.proc, path);
    if (typeof cdev === 'number') throw new VmmError(`open ${path}`, -cdev);
    this.cdev = cdev;
    const bind = cdev.bind(ifd);
    check('VFIO_DEVICE_BIND_IOMMUFD', bind.ret);
    this.devId = bind.devId;
    this.edu = new EduDma(this.proc, cdev.fd);
    this.edu.enableBusMaster();

    const ioas = ifd.ioasAlloc();
    check('IOMMU_IOAS_ALLOC', ioas.ret);
    this.ioasId = ioas.id;
    const va = this.mmapRam(ramSize, options.hugeLg2);
    check(
      'IOMMU_IOAS_MAP guest RAM',
      ifd.ioasMap({ ioasId: this.ioasId, userVa: va, length: ramSize, iova: ipaBase }).ret,
    );
    this.ram = new GuestRam(this.proc, ipaBase, va, ramSize);
    const parent = ifd.hwptAlloc({
      devId: this.devId,
      ptId: this.ioasId,
      flags: IOMMU_HWPT_ALLOC_NEST_PARENT,
    });
    check('IOMMU_HWPT_ALLOC(NEST_PARENT)', parent.ret);
    this.parentId = parent.id;
    check('VFIO_DEVICE_ATTACH_IOMMUFD_PT(parent)', cdev.attach(this.parentId).ret);
    const viommu = ifd.viommuAlloc({ devId: this.devId, hwptId: this.parentId });
    check('IOMMU_VIOMMU_ALLOC', viommu.ret);
    this.viommuId = viommu.id;
    const vdev = ifd.vdeviceAlloc({ viommuId: this.viommuId, devId: this.devId, virtId: this.vsid });
    check('IOMMU_VDEVICE_ALLOC', vdev.ret);
    this.vdeviceId = vdev.id;
    const q = ifd.veventqAlloc({ viommuId: this.viommuId, depth: options.eventqDepth ?? 64 });
    check('IOMMU_VEVENTQ_ALLOC', q.ret);
    this.veventqFd = q.fd;
    // The vSMMU's ID registers come from IOMMU_GET_HW_INFO (iommu_hw_info_arm_smmuv3).
    const info = ifd.getHwInfo(this.devId);
    check('IOMMU_GET_HW_INFO', info.ret);
    const iv = new DataView(info.data.buffer, info.data.byteOffset, info.data.byteLength);
    const idr = (i: number): number => iv.getUint32(8 + 4 * i, true);
    this.vsmmu = new VirtualSmmu(this.ram, this, { idr0: idr(0), idr1: idr(1), idr3: idr(3), idr5: idr(5) });
  }

  // ---- VirtualSmmuBackend ----

  /** The guest's vSTE changed: a nested HWPT from its words 0-1, the device moved onto it. */
  steChanged(vsid: number): void {
    const at = this.vsteAt(vsid);
    if (at === null) return;
    // A stream table outside guest RAM reads as an invalid vSTE (the SMMU's fetch would abort).
    const inRam = this.ram.contains(at, 64);
    const q = (i: number): bigint =>
      inRam ? (BigInt(this.ram.readU32(at + 8 * i + 4)) << 32n) | BigInt(this.ram.readU32(at + 8 * i)) : 0n;
    const h = this.iommufd.hwptAllocNestedSmmuv3(this.devId, this.viommuId, q(0), q(1));
    if (h.ret < 0) {
      this.lastError = h.ret;
      return;
    }
    const a = this.cdev.attach(h.id);
    if (a.ret < 0) {
      this.lastError = a.ret;
      this.iommufd.destroy(h.id);
      return;
    }
    if (this.nestedId !== null) this.iommufd.destroy(this.nestedId);
    this.nestedId = h.id;
    this.lastError = 0;
  }

  /** Guest TLB and CD invalidations go to the kernel as raw commands; these are not used. */
  invalidateTlb(): void {}

  invalidateCd(): void {}

  /** TLBI and CFGI_CD commands are queued as they are and sent at the guest's CMD_SYNC. */
  command(c: ReturnType<typeof decodeCommand>, words: Uint32Array): boolean {
    if (FORWARDED.has(c.opcode)) {
      this.pending.push(words.slice());
      return true;
    }
    if (c.opcode === CMD_SYNC) {
      this.flush();
      return true;
    }
    this.flush();
    return false;
  }

  /** IOMMU_HWPT_INVALIDATE on the vIOMMU with the queued commands. */
  private flush(): void {
    if (this.pending.length === 0) return;
    const r = this.iommufd.invalidate(this.viommuId, this.pending);
    this.lastError = r.ret;
    this.pending = [];
  }

  /** Reads the vEVENTQ and writes its records into the guest's event queue. Returns how many arrived. */
  protected forwardToGuest(): number {
    let delivered = 0;
    for (;;) {
      const r = readVeventq(this.proc, this.veventqFd);
      if (r.ret <= 0) return delivered;
      for (const e of r.events) {
        if (e.lost) this.lostEvents++;
        else if (this.vsmmu.deliverEvent(e.evt!, this.vsid)) delivered++;
      }
    }
  }
}
