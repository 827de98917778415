/**
 * The typed VFIO API: each call encodes the real struct and goes through Process.ioctl, the same
 * path raw bytes take, so validation lives once, in the kernel model. Results carry the ioctl's
 * return value (0 or -errno) and what the kernel wrote back.
 */

import type { U64 } from '../uapi/u64.ts';
import {
  DMA_MAP_SIZE,
  DMA_UNMAP_SIZE,
  decodeDmaUnmap,
  decodeIommuInfo,
  encodeDmaMap,
  encodeDmaUnmap,
  IOMMU_INFO_SIZE,
  type IommuInfo,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
} from '../uapi/vfio.ts';
import type { Process } from './process.ts';

export interface MapDmaRequest {
  vaddr: U64;
  iova: U64;
  size: U64;
  /** Default READ | WRITE. */
  flags?: number;
  /** Default 32. */
  argsz?: number;
}

export interface UnmapDmaRequest {
  iova: U64;
  size: U64;
  flags?: number;
  argsz?: number;
}

export class VfioContainerHandle {
  constructor(
    readonly proc: Process,
    readonly fd: number,
  ) {}

  checkExtension(ext: number): number {
    return this.proc.ioctl(this.fd, VFIO_CHECK_EXTENSION, ext);
  }

  setIommu(type: number): number {
    return this.proc.ioctl(this.fd, VFIO_SET_IOMMU, type);
  }

  /** VFIO_IOMMU_GET_INFO with a buffer of `argsz` bytes (default: two passes, as QEMU does). */
  getInfo(argsz?: number): { ret: number; info?: IommuInfo; bytes?: Uint8Array } {
    const call = (size: number): { ret: number; bytes: Uint8Array } => {
      const bytes = new Uint8Array(Math.max(size, 16));
      new DataView(bytes.buffer).setUint32(0, size, true);
      return { ret: this.proc.ioctl(this.fd, VFIO_IOMMU_GET_INFO, bytes), bytes };
    };
    let r = call(argsz ?? IOMMU_INFO_SIZE);
    if (argsz === undefined && r.ret === 0) {
      const need = new DataView(r.bytes.buffer).getUint32(0, true);
      if (need > IOMMU_INFO_SIZE) r = call(need);
    }
    return r.ret < 0 ? { ret: r.ret } : { ret: r.ret, info: decodeIommuInfo(r.bytes), bytes: r.bytes };
  }

  mapDma(req: MapDmaRequest): number {
    const bytes = encodeDmaMap({
      argsz: req.argsz ?? DMA_MAP_SIZE,
      flags: req.flags ?? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
      vaddr: BigInt(req.vaddr),
      iova: BigInt(req.iova),
      size: BigInt(req.size),
    });
    return this.proc.ioctl(this.fd, VFIO_IOMMU_MAP_DMA, bytes);
  }

  /** UNMAP_DMA; `size` is what the kernel wrote back (the request's size on error). */
  unmapDma(req: UnmapDmaRequest): { ret: number; size: bigint } {
    const bytes = encodeDmaUnmap({
      argsz: req.argsz ?? DMA_UNMAP_SIZE,
      flags: req.flags ?? 0,
      iova: BigInt(req.iova),
      size: BigInt(req.size),
    });
    const ret = this.proc.ioctl(this.fd, VFIO_IOMMU_UNMAP_DMA, bytes);
    return { ret, size: decodeDmaUnmap(bytes).size };
  }

  close(): number {
    return this.proc.close(this.fd);
  }
}

export class VfioGroupHandle {
  constructor(
    readonly proc: Process,
    readonly fd: number,
  ) {}

  /** SET_CONTAINER with a container handle or a raw fd number. */
  setContainer(container: VfioContainerHandle | number): number {
    const fd = typeof container === 'number' ? container : container.fd;
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setInt32(0, fd, true);
    return this.proc.ioctl(this.fd, VFIO_GROUP_SET_CONTAINER, bytes);
  }

  unsetContainer(): number {
    return this.proc.ioctl(this.fd, VFIO_GROUP_UNSET_CONTAINER);
  }

  /** GET_DEVICE_FD: the new device fd, or -errno. */
  getDeviceFd(name: string): number {
    return this.proc.ioctl(this.fd, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${name}\0`));
  }

  close(): number {
    return this.proc.close(this.fd);
  }
}

/** open("/dev/vfio/vfio") as a handle, or -errno. */
export function openContainer(proc: Process): VfioContainerHandle | number {
  const fd = proc.open('/dev/vfio/vfio');
  return fd < 0 ? fd : new VfioContainerHandle(proc, fd);
}

/** open("/dev/vfio/<group>") as a handle, or -errno. */
export function openGroup(proc: Process, group: number): VfioGroupHandle | number {
  const fd = proc.open(`/dev/vfio/${group}`);
  return fd < 0 ? fd : new VfioGroupHandle(proc, fd);
}
