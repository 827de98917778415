/**
 * A small VMM: it assigns the host's device to a guest with VFIO type 6 (nesting), maps guest RAM
 * at stage 2 with MAP_DMA (IOVA = guest-physical address), presents a virtual SMMUv3 to the guest
 * and turns what the guest does to it into vfio-nest's binding extension: a vSTE into
 * VFIO_IOMMU_SET_PASID_TABLE, TLBI and CFGI commands into VFIO_IOMMU_CACHE_INVALIDATE, and the
 * stage-1 faults VFIO_IOMMU_GET_FAULTS returns into records in the guest's event queue.
 */

import { GuestRam } from '../guest/ram.ts';
import type { Host } from '../host/host.ts';
import {
  openContainer,
  openGroup,
  type VfioContainerHandle,
  type VfioGroupHandle,
} from '../host/vfio-api.ts';
import { decodeSte } from '../smmu/index.ts';
import { VFIO_TYPE1_NESTING_IOMMU } from '../uapi/vfio.ts';
import {
  CACHE_INV_VERSION_1,
  decodeFaultRecords,
  encodeCacheInvalidate,
  encodeSetPasidTable,
  FAULT_RECORD_SIZE,
  GET_FAULTS_HEADER_SIZE,
  IOMMU_CACHE_INV_TYPE_IOTLB,
  IOMMU_CACHE_INV_TYPE_PASID,
  IOMMU_INV_FLAG_ARCHID,
  IOMMU_INV_FLAG_LEAF,
  IOMMU_INV_FLAG_PASID,
  IOMMU_INV_GRANU_ADDR,
  IOMMU_INV_GRANU_DOMAIN,
  IOMMU_INV_GRANU_PASID,
  IOMMU_PASID_CONFIG_ABORT,
  IOMMU_PASID_CONFIG_BYPASS,
  IOMMU_PASID_CONFIG_TRANSLATE,
  IOMMU_PASID_FORMAT_SMMUV3,
  VFIO_IOMMU_CACHE_INVALIDATE,
  VFIO_IOMMU_GET_FAULTS,
  VFIO_IOMMU_SET_PASID_TABLE,
  VFIO_PASID_TABLE_FLAG_SET,
} from '../uapi/vfio-nest-ext.ts';
import { EduDma } from './edu-dma.ts';
import { check, type GuestOptions, VmmBase, VmmError } from './vmm-base.ts';
import { VirtualSmmu } from './vsmmu.ts';

export { VmmError } from './vmm-base.ts';

export interface VmmOptions extends GuestOptions {
  /** The IOMMU type to ask for (default 6). */
  type?: number;
}

export class Vmm extends VmmBase {
  readonly container: VfioContainerHandle;
  readonly group: VfioGroupHandle;
  readonly deviceFd: number;
  protected readonly edu: EduDma;
  readonly ram: GuestRam;
  readonly vsmmu: VirtualSmmu;

  constructor(host: Host, options: VmmOptions = {}) {
    super(host, options);
    const ramSize = options.ramSize ?? 64 << 20;
    const ipaBase = options.ipaBase ?? 0x4000_0000;
    const c = openContainer(this.proc);
    if (typeof c === 'number') throw new VmmError('open /dev/vfio/vfio', -c);
    const g = openGroup(this.proc, host.groups[0].id);
    if (typeof g === 'number') throw new VmmError(`open /dev/vfio/${host.groups[0].id}`, -g);
    this.container = c;
    this.group = g;
    check('VFIO_GROUP_SET_CONTAINER', g.setContainer(c));
    check(
      `VFIO_SET_IOMMU(${options.type ?? VFIO_TYPE1_NESTING_IOMMU})`,
      c.setIommu(options.type ?? VFIO_TYPE1_NESTING_IOMMU),
    );
    const va = this.mmapRam(ramSize, options.hugeLg2);
    check('VFIO_IOMMU_MAP_DMA guest RAM', c.mapDma({ vaddr: va, iova: ipaBase, size: ramSize }));
    this.ram = new GuestRam(this.proc, ipaBase, va, ramSize);
    this.deviceFd = check('VFIO_GROUP_GET_DEVICE_FD', g.getDeviceFd(host.devices[0].name));
    this.edu = new EduDma(this.proc, this.deviceFd);
    this.edu.enableBusMaster();
    const id = host.smmu?.id ?? { idr0: 0, idr1: 0, idr3: 0, idr5: 0 };
    this.vsmmu = new VirtualSmmu(this.ram, this, id);
  }

  // ---- VirtualSmmuBackend ----

  /** The guest's vSTE for our device changed: bind its stage 1 (or bypass, or abort). */
  steChanged(vsid: number): void {
    const at = this.vsteAt(vsid);
    if (at === null) return;
    const w = new Uint32Array(16);
    // A stream table outside guest RAM reads as an invalid vSTE (the SMMU's fetch would abort).
    if (this.ram.contains(at, 64)) for (let i = 0; i < 16; i++) w[i] = this.ram.readU32(at + i * 4);
    const ste = decodeSte(w);
    const config = !ste.V
      ? IOMMU_PASID_CONFIG_ABORT
      : ste.Config === 5
        ? IOMMU_PASID_CONFIG_TRANSLATE
        : ste.Config === 4
          ? IOMMU_PASID_CONFIG_BYPASS
          : IOMMU_PASID_CONFIG_ABORT;
    const bytes = encodeSetPasidTable({
      argsz: 48,
      flags: VFIO_PASID_TABLE_FLAG_SET,
      config: {
        version: 1,
        basePtr: BigInt(ste.S1ContextPtr),
        pasidBits: ste.S1CDMax,
        format: IOMMU_PASID_FORMAT_SMMUV3,
        config,
        smmuv3: { version: 1, flags: 0, s1fmt: ste.S1Fmt, s1dss: ste.S1DSS },
      },
    });
    this.lastError = this.proc.ioctl(this.container.fd, VFIO_IOMMU_SET_PASID_TABLE, bytes);
  }

  invalidateTlb(inv: { asid: number | null; addr: number | null; pages: number; leaf: boolean }): void {
    const archid = inv.asid === null ? 0 : IOMMU_INV_FLAG_ARCHID;
    const info =
      inv.addr === null
        ? {
            granularity: inv.asid === null ? IOMMU_INV_GRANU_DOMAIN : IOMMU_INV_GRANU_PASID,
            flags: archid,
            granuleSize: 0,
            addr: 0n,
            nbGranules: 0n,
          }
        : {
            granularity: IOMMU_INV_GRANU_ADDR,
            flags: archid | (inv.leaf ? IOMMU_INV_FLAG_LEAF : 0),
            granuleSize: 0x1000,
            addr: BigInt(inv.addr),
            nbGranules: BigInt(inv.pages),
          };
    const bytes = encodeCacheInvalidate(64, {
      version: CACHE_INV_VERSION_1,
      cache: IOMMU_CACHE_INV_TYPE_IOTLB,
      pasid: 0n,
      archid: BigInt(inv.asid ?? 0),
      ...info,
    });
    this.lastError = this.proc.ioctl(this.container.fd, VFIO_IOMMU_CACHE_INVALIDATE, bytes);
  }

  invalidateCd(vsid: number, ssid: number | null): void {
    if (vsid !== this.vsid) return;
    const bytes = encodeCacheInvalidate(64, {
      version: CACHE_INV_VERSION_1,
      cache: IOMMU_CACHE_INV_TYPE_PASID,
      granularity: IOMMU_INV_GRANU_PASID,
      flags: ssid === null ? 0 : IOMMU_INV_FLAG_PASID,
      granuleSize: 0,
      pasid: BigInt(ssid ?? 0),
      archid: 0n,
      addr: 0n,
      nbGranules: 0n,
    });
    this.lastError = this.proc.ioctl(this.container.fd, VFIO_IOMMU_CACHE_INVALIDATE, bytes);
  }

  /**
   * Reads the stage-1 faults the host queued for our device and writes them into the guest's event
   * queue with the virtual StreamID. Returns how many reached the guest.
   */
  protected forwardToGuest(): number {
    let delivered = 0;
    for (;;) {
      const room = 64;
      const buf = new Uint8Array(GET_FAULTS_HEADER_SIZE + room * FAULT_RECORD_SIZE);
      const v = new DataView(buf.buffer);
      v.setUint32(0, buf.length, true);
      v.setUint32(8, room, true);
      const r = this.proc.ioctl(this.container.fd, VFIO_IOMMU_GET_FAULTS, buf);
      if (r < 0) {
        this.lastError = r;
        return delivered;
      }
      const got = decodeFaultRecords(buf);
      for (const rec of got.records) if (this.vsmmu.deliverEvent(rec.evt, this.vsid)) delivered++;
      if (got.pending === 0) return delivered;
    }
  }
}
