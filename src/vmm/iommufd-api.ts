/**
 * A typed iommufd API for a process (what a VMM calls): each call encodes the real struct and goes
 * through Process.ioctl, the same path raw bytes take, so validation lives once, in the kernel model.
 * Pointers inside structs (driver data, command arrays, info buffers) point into a scratch page of the
 * process's own memory, as a C program's would. Results carry the ioctl's return (0 or -errno) and
 * what the kernel wrote back.
 */

import type { Process } from '../host/process.ts';
import {
  IOMMU_DESTROY,
  IOMMU_GET_HW_INFO,
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_HWPT_INVALIDATE,
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_UNMAP,
  IOMMU_VDEVICE_ALLOC,
  IOMMU_VEVENTQ_ALLOC,
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_ALLOC,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
  iommuDestroy,
  iommuHwInfo,
  iommuHwptAlloc,
  iommuHwptInvalidate,
  iommuIoasAlloc,
  iommuIoasMap,
  iommuIoasUnmap,
  iommuVdeviceAlloc,
  iommuVeventqAlloc,
  iommuViommuAlloc,
  vfioDeviceAttachIommufdPt,
  vfioDeviceBindIommufd,
  vfioDeviceDetachIommufdPt,
} from '../uapi/iommufd.ts';
import type { U64 } from '../uapi/u64.ts';
import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
} from '../uapi/vfio.ts';

/** A page of the process's memory for the data structs point to. */
class Scratch {
  private addr = 0;

  constructor(private readonly proc: Process) {}

  /** `bytes` copied into the process; returns their address (0 when the mmap failed). */
  put(bytes: Uint8Array): number {
    if (bytes.length > 4096) throw new RangeError('iommufd-api: scratch data larger than a page');
    if (this.addr === 0) {
      const a = this.proc.mmap(4096);
      if (a < 0) return 0;
      this.addr = a;
    }
    this.proc.mm.fillUser(this.addr, 4096, 0);
    this.proc.writeMemory(this.addr, bytes);
    return this.addr;
  }

  get(len: number): Uint8Array {
    return this.proc.readMemory(this.addr, len) as Uint8Array;
  }
}

/** One vEVENTQ read: an event (with its record) or the lost-events header. */
export interface Vevent {
  flags: number;
  sequence: number;
  lost: boolean;
  /** The SMMUv3 event record, StreamID = the vSID (absent for a lost-events header). */
  evt?: [bigint, bigint, bigint, bigint];
}

/** An open /dev/iommu. */
export class IommufdHandle {
  private readonly scratch: Scratch;

  constructor(
    readonly proc: Process,
    readonly fd: number,
  ) {
    this.scratch = new Scratch(proc);
  }

  /** open("/dev/iommu") as a handle, or -errno (ENOENT on a kernel without iommufd). */
  static open(proc: Process, path = '/dev/iommu'): IommufdHandle | number {
    const fd = proc.open(path);
    return fd < 0 ? fd : new IommufdHandle(proc, fd);
  }

  ioasAlloc(): { ret: number; id: number } {
    const b = iommuIoasAlloc.encode({});
    const ret = this.proc.ioctl(this.fd, IOMMU_IOAS_ALLOC, b);
    return { ret, id: iommuIoasAlloc.decode(b).out_ioas_id };
  }

  /** IOMMU_IOAS_MAP; flags default FIXED_IOVA | WRITEABLE | READABLE. `iova` is what the kernel chose or kept. */
  ioasMap(req: { ioasId: number; userVa: U64; length: U64; iova: U64; flags?: number }): {
    ret: number;
    iova: bigint;
  } {
    const b = iommuIoasMap.encode({
      flags: req.flags ?? IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE,
      ioas_id: req.ioasId,
      user_va: BigInt(req.userVa),
      length: BigInt(req.length),
      iova: BigInt(req.iova),
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_IOAS_MAP, b);
    return { ret, iova: iommuIoasMap.decode(b).iova };
  }

  ioasUnmap(req: { ioasId: number; iova: U64; length: U64 }): { ret: number; length: bigint } {
    const b = iommuIoasUnmap.encode({
      ioas_id: req.ioasId,
      iova: BigInt(req.iova),
      length: BigInt(req.length),
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_IOAS_UNMAP, b);
    return { ret, length: iommuIoasUnmap.decode(b).length };
  }

  /** IOMMU_HWPT_ALLOC on an IOAS (paging; flags 1 = NEST_PARENT) or a vIOMMU (nested, with driver data). */
  hwptAlloc(req: { devId: number; ptId: number; flags?: number; dataType?: number; data?: Uint8Array }): {
    ret: number;
    id: number;
  } {
    const data = req.data ?? new Uint8Array(0);
    const b = iommuHwptAlloc.encode({
      flags: req.flags ?? 0,
      dev_id: req.devId,
      pt_id: req.ptId,
      data_type: req.dataType ?? 0,
      data_len: data.length,
      data_uptr: data.length > 0 ? BigInt(this.scratch.put(data)) : 0n,
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_HWPT_ALLOC, b);
    return { ret, id: iommuHwptAlloc.decode(b).out_hwpt_id };
  }

  /** A nested HWPT for an SMMUv3 vIOMMU from the guest's vSTE words 0 and 1. */
  hwptAllocNestedSmmuv3(
    devId: number,
    viommuId: number,
    ste0: bigint,
    ste1: bigint,
  ): { ret: number; id: number } {
    const data = new Uint8Array(16);
    const v = new DataView(data.buffer);
    v.setBigUint64(0, ste0, true);
    v.setBigUint64(8, ste1, true);
    return this.hwptAlloc({ devId, ptId: viommuId, dataType: IOMMU_HWPT_DATA_ARM_SMMUV3, data });
  }

  /** IOMMU_GET_HW_INFO with a 64-byte buffer: the type and the driver's info bytes (data_len long). */
  getHwInfo(devId: number): { ret: number; type: number; dataLen: number; data: Uint8Array } {
    const buf = this.scratch.put(new Uint8Array(64));
    const b = iommuHwInfo.encode({ dev_id: devId, data_len: 64, data_uptr: BigInt(buf) });
    const ret = this.proc.ioctl(this.fd, IOMMU_GET_HW_INFO, b);
    const o = iommuHwInfo.decode(b);
    return {
      ret,
      type: o.out_data_type,
      dataLen: o.data_len,
      data: this.scratch.get(Math.min(64, o.data_len)),
    };
  }

  viommuAlloc(req: { devId: number; hwptId: number; type?: number }): { ret: number; id: number } {
    const b = iommuViommuAlloc.encode({
      type: req.type ?? IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
      dev_id: req.devId,
      hwpt_id: req.hwptId,
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_VIOMMU_ALLOC, b);
    return { ret, id: iommuViommuAlloc.decode(b).out_viommu_id };
  }

  vdeviceAlloc(req: { viommuId: number; devId: number; virtId: U64 }): { ret: number; id: number } {
    const b = iommuVdeviceAlloc.encode({
      viommu_id: req.viommuId,
      dev_id: req.devId,
      virt_id: BigInt(req.virtId),
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_VDEVICE_ALLOC, b);
    return { ret, id: iommuVdeviceAlloc.decode(b).out_vdevice_id };
  }

  veventqAlloc(req: { viommuId: number; depth: number; type?: number }): {
    ret: number;
    id: number;
    fd: number;
  } {
    const b = iommuVeventqAlloc.encode({
      viommu_id: req.viommuId,
      type: req.type ?? IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
      veventq_depth: req.depth,
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_VEVENTQ_ALLOC, b);
    const o = iommuVeventqAlloc.decode(b);
    return { ret, id: o.out_veventq_id, fd: o.out_veventq_fd | 0 };
  }

  /**
   * IOMMU_HWPT_INVALIDATE on a vIOMMU (or nested HWPT) with raw SMMUv3 commands (two 64-bit words
   * each, or four 32-bit ones). `done` is how many the kernel handled.
   */
  invalidate(
    id: number,
    cmds: ArrayLike<number>[],
    dataType = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
  ): {
    ret: number;
    done: number;
  } {
    const bytes = new Uint8Array(16 * cmds.length);
    const v = new DataView(bytes.buffer);
    cmds.forEach((w, i) => {
      for (let k = 0; k < 4; k++) v.setUint32(16 * i + 4 * k, w[k] >>> 0, true);
    });
    const b = iommuHwptInvalidate.encode({
      hwpt_id: id,
      data_uptr: cmds.length > 0 ? BigInt(this.scratch.put(bytes)) : 0n,
      data_type: dataType,
      entry_len: 16,
      entry_num: cmds.length,
    });
    const ret = this.proc.ioctl(this.fd, IOMMU_HWPT_INVALIDATE, b);
    return { ret, done: iommuHwptInvalidate.decode(b).entry_num };
  }

  destroy(id: number): number {
    return this.proc.ioctl(this.fd, IOMMU_DESTROY, iommuDestroy.encode({ id }));
  }

  close(): number {
    return this.proc.close(this.fd);
  }
}

/** read() of a vEVENTQ fd: the headers and records it returned. */
export function readVeventq(proc: Process, fd: number, size = 65536): { ret: number; events: Vevent[] } {
  const buf = new Uint8Array(size);
  const ret = proc.read(fd, buf);
  const events: Vevent[] = [];
  const v = new DataView(buf.buffer);
  let p = 0;
  while (ret > 0 && p + 8 <= ret) {
    const flags = v.getUint32(p, true);
    const sequence = v.getUint32(p + 4, true);
    p += 8;
    if (flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) {
      events.push({ flags, sequence, lost: true });
      continue;
    }
    const evt = [0, 1, 2, 3].map((i) => v.getBigUint64(p + 8 * i, true)) as [bigint, bigint, bigint, bigint];
    p += 32;
    events.push({ flags, sequence, lost: false, evt });
  }
  return { ret, events };
}

/** An open VFIO device cdev (/dev/vfio/devices/vfioN). */
export class VfioCdevHandle {
  constructor(
    readonly proc: Process,
    readonly fd: number,
  ) {}

  static open(proc: Process, path: string): VfioCdevHandle | number {
    const fd = proc.open(path);
    return fd < 0 ? fd : new VfioCdevHandle(proc, fd);
  }

  /** VFIO_DEVICE_BIND_IOMMUFD: the device's iommufd ID. */
  bind(iommufd: IommufdHandle | number, flags = 0): { ret: number; devId: number } {
    const b = vfioDeviceBindIommufd.encode({
      flags,
      iommufd: typeof iommufd === 'number' ? iommufd : iommufd.fd,
    });
    const ret = this.proc.ioctl(this.fd, VFIO_DEVICE_BIND_IOMMUFD, b);
    return { ret, devId: vfioDeviceBindIommufd.decode(b).out_devid };
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT (a replace once attached): the HWPT's ID comes back for an IOAS. */
  attach(ptId: number): { ret: number; ptId: number } {
    const b = vfioDeviceAttachIommufdPt.encode({ pt_id: ptId });
    const ret = this.proc.ioctl(this.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, b);
    return { ret, ptId: vfioDeviceAttachIommufdPt.decode(b).pt_id };
  }

  detach(): number {
    return this.proc.ioctl(this.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfioDeviceDetachIommufdPt.encode({}));
  }

  close(): number {
    return this.proc.close(this.fd);
  }
}
