/**
 * The VFIO container, group and type-1 user ABI (include/uapi/linux/vfio.h): ioctl numbers,
 * constants and byte-exact encoders/decoders. Layouts: reference/vfio-type1.md §1-2.
 * Encode/decode only: no state and no validation here (that lives once, in the backend).
 */

import { IO } from './ioctl.ts';

export const VFIO_TYPE = 0x3b; // ';'
export const VFIO_BASE = 100;
export const VFIO_API_VERSION = 0;

function vfioIo(n: number): number {
  return IO(VFIO_TYPE, VFIO_BASE + n);
}

// Container (reference §1: every VFIO ioctl is _IO(';', 100 + n); the fd kind decides).
export const VFIO_GET_API_VERSION = vfioIo(0);
export const VFIO_CHECK_EXTENSION = vfioIo(1);
export const VFIO_SET_IOMMU = vfioIo(2);
// Group
export const VFIO_GROUP_GET_STATUS = vfioIo(3);
export const VFIO_GROUP_SET_CONTAINER = vfioIo(4);
export const VFIO_GROUP_UNSET_CONTAINER = vfioIo(5);
export const VFIO_GROUP_GET_DEVICE_FD = vfioIo(6);
// Device
export const VFIO_DEVICE_GET_INFO = vfioIo(7);
export const VFIO_DEVICE_GET_REGION_INFO = vfioIo(8);
export const VFIO_DEVICE_GET_IRQ_INFO = vfioIo(9);
export const VFIO_DEVICE_SET_IRQS = vfioIo(10);
export const VFIO_DEVICE_RESET = vfioIo(11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = vfioIo(12);
export const VFIO_DEVICE_PCI_HOT_RESET = vfioIo(13);
export const VFIO_DEVICE_IOEVENTFD = vfioIo(16);
export const VFIO_DEVICE_FEATURE = vfioIo(17);
export const VFIO_DEVICE_BIND_IOMMUFD = vfioIo(18);
/**
 * The char major of the VFIO device cdevs (/dev/vfio/devices/vfioN, minor N): allocated at boot, 253 on
 * the oracle's 6.18-iommufd machine (oracle answers x19-cdev-sysfs).
 */
export const VFIO_CDEV_MAJOR = 253;
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = vfioIo(19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = vfioIo(20);
// Type-1 IOMMU (container fd)
export const VFIO_IOMMU_GET_INFO = vfioIo(12);
export const VFIO_IOMMU_MAP_DMA = vfioIo(13);
export const VFIO_IOMMU_UNMAP_DMA = vfioIo(14);
export const VFIO_IOMMU_ENABLE = vfioIo(15);
export const VFIO_IOMMU_DISABLE = vfioIo(16);
export const VFIO_IOMMU_DIRTY_PAGES = vfioIo(17);

/** Extension and IOMMU type numbers (reference §1). */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
/** Renamed __VFIO_RESERVED_TYPE1_NESTING_IOMMU from 6.13, when the type was removed. */
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

export const VFIO_GROUP_FLAGS_VIABLE = 1;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 2;

export const VFIO_IOMMU_INFO_PGSIZES = 1;
export const VFIO_IOMMU_INFO_CAPS = 2;

export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

export const VFIO_DMA_MAP_FLAG_READ = 1;
export const VFIO_DMA_MAP_FLAG_WRITE = 2;
export const VFIO_DMA_MAP_FLAG_VADDR = 4;

export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1;
export const VFIO_DMA_UNMAP_FLAG_ALL = 2;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 4;

export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 2;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 4;

/** Struct sizes (x86-64/arm64). */
export const GROUP_STATUS_SIZE = 8;
export const IOMMU_INFO_SIZE = 24;
export const INFO_CAP_HEADER_SIZE = 8;
export const DMA_MAP_SIZE = 32;
export const DMA_UNMAP_SIZE = 24;
export const BITMAP_SIZE = 24;
export const DIRTY_BITMAP_SIZE = 8;
export const DIRTY_BITMAP_GET_SIZE = 40;
/** Bytes of bitmap for INT_MAX pages, rounded to 64-bit words: the migration cap's limit. */
export const DIRTY_BITMAP_SIZE_MAX = 0x10000000;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export interface GroupStatus {
  argsz: number;
  flags: number;
}

export function decodeGroupStatus(b: Uint8Array): GroupStatus {
  const v = view(b);
  return { argsz: v.getUint32(0, true), flags: v.getUint32(4, true) };
}

export function encodeGroupStatus(s: GroupStatus): Uint8Array {
  const b = new Uint8Array(GROUP_STATUS_SIZE);
  const v = view(b);
  v.setUint32(0, s.argsz, true);
  v.setUint32(4, s.flags, true);
  return b;
}

export interface DmaMap {
  argsz: number;
  flags: number;
  vaddr: bigint;
  iova: bigint;
  size: bigint;
}

export function decodeDmaMap(b: Uint8Array): DmaMap {
  const v = view(b);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    vaddr: v.getBigUint64(8, true),
    iova: v.getBigUint64(16, true),
    size: v.getBigUint64(24, true),
  };
}

export function encodeDmaMap(m: DmaMap): Uint8Array {
  const b = new Uint8Array(DMA_MAP_SIZE);
  const v = view(b);
  v.setUint32(0, m.argsz, true);
  v.setUint32(4, m.flags, true);
  v.setBigUint64(8, BigInt.asUintN(64, m.vaddr), true);
  v.setBigUint64(16, BigInt.asUintN(64, m.iova), true);
  v.setBigUint64(24, BigInt.asUintN(64, m.size), true);
  return b;
}

/** A little-endian u32 of a struct at byte `off`, read without a DataView (hot paths). */
export function u32le(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

/** Writes a little-endian u32 at byte `off`. */
export function setU32le(b: Uint8Array, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v >>> 8;
  b[off + 2] = v >>> 16;
  b[off + 3] = v >>> 24;
}

/**
 * vfio_iommu_type1_dma_map with every u64 as two u32 halves (lo: bits 31:0, hi: bits 63:32): the
 * MAP_DMA path decodes into one reused object, with no BigInt and no allocation. The values are
 * exactly the struct's; checks on them are exact integer arithmetic on the halves.
 */
export class DmaMapHalves {
  argsz = 0;
  flags = 0;
  vaddrLo = 0;
  vaddrHi = 0;
  iovaLo = 0;
  iovaHi = 0;
  sizeLo = 0;
  sizeHi = 0;
}

export function decodeDmaMapHalves(b: Uint8Array, out: DmaMapHalves): DmaMapHalves {
  out.argsz = u32le(b, 0);
  out.flags = u32le(b, 4);
  out.vaddrLo = u32le(b, 8);
  out.vaddrHi = u32le(b, 12);
  out.iovaLo = u32le(b, 16);
  out.iovaHi = u32le(b, 20);
  out.sizeLo = u32le(b, 24);
  out.sizeHi = u32le(b, 28);
  return out;
}

/** vfio_iommu_type1_dma_unmap's 24-byte header as u32 halves (see DmaMapHalves). */
export class DmaUnmapHalves {
  argsz = 0;
  flags = 0;
  iovaLo = 0;
  iovaHi = 0;
  sizeLo = 0;
  sizeHi = 0;
}

export function decodeDmaUnmapHalves(b: Uint8Array, out: DmaUnmapHalves): DmaUnmapHalves {
  out.argsz = u32le(b, 0);
  out.flags = u32le(b, 4);
  out.iovaLo = u32le(b, 8);
  out.iovaHi = u32le(b, 12);
  out.sizeLo = u32le(b, 16);
  out.sizeHi = u32le(b, 20);
  return out;
}

/** Sets the `size` field of a dma_unmap header in place from a number < 2^64 that is exact (page multiple). */
export function setDmaUnmapSize(b: Uint8Array, size: number): void {
  const hi = Math.floor(size / 4294967296);
  setU32le(b, 16, size - hi * 4294967296);
  setU32le(b, 20, hi);
}

/** vfio_bitmap: pgsize, size (bytes), data (user pointer). */
export interface VfioBitmap {
  pgsize: bigint;
  size: bigint;
  data: bigint;
}

export interface DmaUnmap {
  argsz: number;
  flags: number;
  iova: bigint;
  size: bigint;
  /** Present when the buffer holds the 24 bytes of data[] (GET_DIRTY_BITMAP). */
  bitmap?: VfioBitmap;
}

export function decodeDmaUnmap(b: Uint8Array): DmaUnmap {
  const v = view(b);
  const u: DmaUnmap = {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    iova: v.getBigUint64(8, true),
    size: v.getBigUint64(16, true),
  };
  if (b.byteLength >= DMA_UNMAP_SIZE + BITMAP_SIZE) u.bitmap = decodeBitmap(b, DMA_UNMAP_SIZE);
  return u;
}

export function encodeDmaUnmap(u: DmaUnmap): Uint8Array {
  const b = new Uint8Array(u.bitmap ? DMA_UNMAP_SIZE + BITMAP_SIZE : DMA_UNMAP_SIZE);
  const v = view(b);
  v.setUint32(0, u.argsz, true);
  v.setUint32(4, u.flags, true);
  v.setBigUint64(8, BigInt.asUintN(64, u.iova), true);
  v.setBigUint64(16, BigInt.asUintN(64, u.size), true);
  if (u.bitmap) encodeBitmapAt(b, DMA_UNMAP_SIZE, u.bitmap);
  return b;
}

export function decodeBitmap(b: Uint8Array, off: number): VfioBitmap {
  const v = view(b);
  return {
    pgsize: v.getBigUint64(off, true),
    size: v.getBigUint64(off + 8, true),
    data: v.getBigUint64(off + 16, true),
  };
}

function encodeBitmapAt(b: Uint8Array, off: number, bm: VfioBitmap): void {
  const v = view(b);
  v.setBigUint64(off, BigInt.asUintN(64, bm.pgsize), true);
  v.setBigUint64(off + 8, BigInt.asUintN(64, bm.size), true);
  v.setBigUint64(off + 16, BigInt.asUintN(64, bm.data), true);
}

/**
 * vfio_iommu_type1_dirty_bitmap_get, the data[] after the 8-byte vfio_iommu_type1_dirty_bitmap
 * header of a GET_BITMAP request (copied in on its own, as the kernel does): iova, size, bitmap.
 */
export function decodeDirtyBitmapGet(b: Uint8Array): { iova: bigint; size: bigint; bitmap: VfioBitmap } {
  const v = view(b);
  return { iova: v.getBigUint64(0, true), size: v.getBigUint64(8, true), bitmap: decodeBitmap(b, 16) };
}

/** A decoded capability of vfio_iommu_type1_info. */
export type InfoCap =
  | { id: 1; version: number; ranges: { start: bigint; end: bigint }[] }
  | { id: 2; version: number; flags: number; pgsizeBitmap: bigint; maxDirtyBitmapSize: bigint }
  | { id: 3; version: number; avail: number };

export interface IommuInfo {
  argsz: number;
  flags: number;
  iovaPgsizes: bigint;
  capOffset: number;
  /** The chain in buffer order, each with its offset and next as found. */
  caps: (InfoCap & { offset: number; next: number })[];
}

function capBodySize(cap: InfoCap): number {
  switch (cap.id) {
    case 1:
      return 16 + 16 * cap.ranges.length;
    case 2:
      return 32;
    case 3:
      return 12;
  }
}

/**
 * Lays out a capability chain as vfio_info_cap_add does: each cap appended at the end, its size
 * rounded up to 8 bytes from 6.6 ("vfio: align capability structures"), `next` offsets counted from
 * the start of the whole info buffer (the caps start right after the 24-byte header).
 * Returns the chain's bytes (to be placed at offset 24).
 */
export function encodeInfoCaps(caps: InfoCap[], align8: boolean): Uint8Array {
  const offsets: number[] = [];
  let end = 0;
  for (const cap of caps) {
    offsets.push(end);
    const sz = capBodySize(cap);
    end += align8 ? Math.ceil(sz / 8) * 8 : sz;
  }
  const b = new Uint8Array(end);
  const v = view(b);
  caps.forEach((cap, i) => {
    const o = offsets[i];
    const next = i + 1 < caps.length ? IOMMU_INFO_SIZE + offsets[i + 1] : 0;
    v.setUint16(o, cap.id, true);
    v.setUint16(o + 2, cap.version, true);
    v.setUint32(o + 4, next, true);
    switch (cap.id) {
      case 1:
        v.setUint32(o + 8, cap.ranges.length, true);
        cap.ranges.forEach((r, j) => {
          v.setBigUint64(o + 16 + 16 * j, r.start, true);
          v.setBigUint64(o + 24 + 16 * j, r.end, true);
        });
        break;
      case 2:
        v.setUint32(o + 8, cap.flags, true);
        v.setBigUint64(o + 16, cap.pgsizeBitmap, true);
        v.setBigUint64(o + 24, cap.maxDirtyBitmapSize, true);
        break;
      case 3:
        v.setUint32(o + 8, cap.avail, true);
        break;
    }
  });
  return b;
}

/** Writes the 24-byte vfio_iommu_type1_info header into b[0..24). */
export function encodeIommuInfoHeader(
  b: Uint8Array,
  h: { argsz: number; flags: number; iovaPgsizes: bigint; capOffset: number },
): void {
  const v = view(b);
  v.setUint32(0, h.argsz, true);
  v.setUint32(4, h.flags, true);
  v.setBigUint64(8, h.iovaPgsizes, true);
  v.setUint32(16, h.capOffset, true);
  v.setUint32(20, 0, true);
}

/**
 * Decodes an info buffer as a careful user does (the kernel selftests' cap walk): offsets must lie
 * inside argsz and the walk is bounded, so a corrupt chain cannot loop.
 */
export function decodeIommuInfo(b: Uint8Array): IommuInfo {
  const v = view(b);
  const info: IommuInfo = {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    iovaPgsizes: b.byteLength >= 16 ? v.getBigUint64(8, true) : 0n,
    capOffset: b.byteLength >= 20 ? v.getUint32(16, true) : 0,
    caps: [],
  };
  if (!(info.flags & VFIO_IOMMU_INFO_CAPS)) return info;
  const limit = Math.min(info.argsz, b.byteLength);
  let off = info.capOffset;
  for (let n = 0; off && n < 32 && off + INFO_CAP_HEADER_SIZE <= limit; n++) {
    const id = v.getUint16(off, true);
    const version = v.getUint16(off + 2, true);
    const next = v.getUint32(off + 4, true);
    if (id === 1 && off + 16 <= limit) {
      const n = v.getUint32(off + 8, true);
      const ranges = [];
      for (let i = 0; i < n && off + 32 + 16 * i <= limit; i++)
        ranges.push({
          start: v.getBigUint64(off + 16 + 16 * i, true),
          end: v.getBigUint64(off + 24 + 16 * i, true),
        });
      info.caps.push({ id, version, ranges, offset: off, next });
    } else if (id === 2 && off + 32 <= limit) {
      info.caps.push({
        id,
        version,
        flags: v.getUint32(off + 8, true),
        pgsizeBitmap: v.getBigUint64(off + 16, true),
        maxDirtyBitmapSize: v.getBigUint64(off + 24, true),
        offset: off,
        next,
      });
    } else if (id === 3 && off + 12 <= limit) {
      info.caps.push({ id, version, avail: v.getUint32(off + 8, true), offset: off, next });
    }
    if (next && next <= off) break;
    off = next;
  }
  return info;
}
