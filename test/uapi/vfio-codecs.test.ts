/**
 * The VFIO user ABI byte for byte: ioctl numbers as the kernel computes them, struct sizes and
 * field offsets, and the GET_INFO capability chain with its per-version alignment.
 * Source: reference/vfio-type1.md §1-2 (numbers, layouts, the 6.1/6.12 byte images).
 */

import { describe, expect, it } from 'vitest';
import {
  decodeDmaMap,
  decodeDmaUnmap,
  decodeIommuInfo,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeInfoCaps,
  encodeIommuInfoHeader,
  type InfoCap,
  IO,
  IOWR,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
} from '../../src/uapi/index.ts';

describe('ioctl numbers (vfio-type1.md §1: _IO(";", 100 + n))', () => {
  it.each([
    ['VFIO_GET_API_VERSION', VFIO_GET_API_VERSION, 0x3b64, 15204],
    ['VFIO_CHECK_EXTENSION', VFIO_CHECK_EXTENSION, 0x3b65, 15205],
    ['VFIO_SET_IOMMU', VFIO_SET_IOMMU, 0x3b66, 15206],
    ['VFIO_GROUP_GET_STATUS', VFIO_GROUP_GET_STATUS, 0x3b67, 15207],
    ['VFIO_GROUP_SET_CONTAINER', VFIO_GROUP_SET_CONTAINER, 0x3b68, 15208],
    ['VFIO_GROUP_UNSET_CONTAINER', VFIO_GROUP_UNSET_CONTAINER, 0x3b69, 15209],
    ['VFIO_GROUP_GET_DEVICE_FD', VFIO_GROUP_GET_DEVICE_FD, 0x3b6a, 15210],
    ['VFIO_IOMMU_GET_INFO', VFIO_IOMMU_GET_INFO, 0x3b70, 15216],
    ['VFIO_IOMMU_MAP_DMA', VFIO_IOMMU_MAP_DMA, 0x3b71, 15217],
    ['VFIO_IOMMU_UNMAP_DMA', VFIO_IOMMU_UNMAP_DMA, 0x3b72, 15218],
    ['VFIO_IOMMU_DIRTY_PAGES', VFIO_IOMMU_DIRTY_PAGES, 0x3b75, 15221],
    ['VFIO_DEVICE_BIND_IOMMUFD', VFIO_DEVICE_BIND_IOMMUFD, 0x3b76, 15222],
  ])('%s = %s', (_name, value, hex, dec) => {
    expect(value).toBe(hex);
    expect(value).toBe(dec);
  });

  it('direction and size go in the top bits (asm-generic/ioctl.h)', () => {
    expect(IO(0x3b, 0x64)).toBe(0x3b64);
    // _IOWR('T', 0x01, 8): dir 3 << 30 | size 8 << 16 | 'T' << 8 | 1
    expect(IOWR(0x54, 0x01, 8)).toBe(0xc0085401);
  });
});

describe('struct layouts (vfio-type1.md §2)', () => {
  it('vfio_iommu_type1_dma_map is 32 bytes: argsz@0 flags@4 vaddr@8 iova@16 size@24', () => {
    const b = encodeDmaMap({
      argsz: 32,
      flags: 3,
      vaddr: 0x1122334455667788n,
      iova: 0x100000n,
      size: 0x2000n,
    });
    expect(b.byteLength).toBe(32);
    const v = new DataView(b.buffer);
    expect(v.getUint32(0, true)).toBe(32);
    expect(v.getUint32(4, true)).toBe(3);
    expect(v.getBigUint64(8, true)).toBe(0x1122334455667788n);
    expect(v.getBigUint64(16, true)).toBe(0x100000n);
    expect(v.getBigUint64(24, true)).toBe(0x2000n);
    expect(decodeDmaMap(b)).toEqual({
      argsz: 32,
      flags: 3,
      vaddr: 0x1122334455667788n,
      iova: 0x100000n,
      size: 0x2000n,
    });
  });

  it('vfio_iommu_type1_dma_unmap is 24 bytes, + vfio_bitmap (pgsize@24 size@32 data@40) with the dirty flag', () => {
    const plain = encodeDmaUnmap({ argsz: 24, flags: 2, iova: 0n, size: 0n });
    expect(plain.byteLength).toBe(24);
    const withBitmap = encodeDmaUnmap({
      argsz: 48,
      flags: 1,
      iova: 0x1000n,
      size: 0x4000n,
      bitmap: { pgsize: 4096n, size: 8n, data: 0x7f00n },
    });
    expect(withBitmap.byteLength).toBe(48);
    const v = new DataView(withBitmap.buffer);
    expect(v.getBigUint64(24, true)).toBe(4096n);
    expect(v.getBigUint64(32, true)).toBe(8n);
    expect(v.getBigUint64(40, true)).toBe(0x7f00n);
    expect(decodeDmaUnmap(withBitmap).bitmap).toEqual({ pgsize: 4096n, size: 8n, data: 0x7f00n });
  });
});

/** The intel-iommu answer of the recordings: migration, dma_avail, iova_range with two ranges. */
const INTEL_CAPS: InfoCap[] = [
  { id: 2, version: 1, flags: 0, pgsizeBitmap: 0x1000n, maxDirtyBitmapSize: 0x10000000n },
  { id: 3, version: 1, avail: 65535 },
  {
    id: 1,
    version: 1,
    ranges: [
      { start: 0n, end: 0xfedfffffn },
      { start: 0xfef00000n, end: 0x7fffffffffn },
    ],
  },
];

function infoBuffer(align8: boolean): Uint8Array {
  const chain = encodeInfoCaps(INTEL_CAPS, align8);
  const b = new Uint8Array(24 + chain.byteLength);
  encodeIommuInfoHeader(b, { argsz: b.byteLength, flags: 3, iovaPgsizes: 0x40201000n, capOffset: 24 });
  b.set(chain, 24);
  return b;
}

describe('GET_INFO capability chain (vfio-type1.md §2.3 byte images)', () => {
  it('6.6+ rounds each cap to 8 bytes: 120 bytes, dma_avail 56..71 next 72, iova_range at 72', () => {
    const b = infoBuffer(true);
    const v = new DataView(b.buffer);
    expect(b.byteLength).toBe(120);
    expect([v.getUint16(24, true), v.getUint16(26, true), v.getUint32(28, true)]).toEqual([2, 1, 56]);
    expect(v.getBigUint64(40, true)).toBe(0x1000n);
    expect(v.getBigUint64(48, true)).toBe(0x10000000n);
    expect([v.getUint16(56, true), v.getUint32(60, true), v.getUint32(64, true)]).toEqual([3, 72, 65535]);
    expect(v.getUint32(68, true)).toBe(0);
    expect([v.getUint16(72, true), v.getUint32(76, true), v.getUint32(80, true)]).toEqual([1, 0, 2]);
    expect(v.getBigUint64(96, true)).toBe(0xfedfffffn);
    expect(v.getBigUint64(112, true)).toBe(0x7fffffffffn);
  });

  it('before 6.6 dma_avail is 12 bytes: 116 in all, next 68, nr_iovas at 76', () => {
    const b = infoBuffer(false);
    const v = new DataView(b.buffer);
    expect(b.byteLength).toBe(116);
    expect(v.getUint32(60, true)).toBe(68);
    expect(v.getUint16(68, true)).toBe(1);
    expect(v.getUint32(76, true)).toBe(2);
    expect(v.getBigUint64(108, true)).toBe(0x7fffffffffn);
  });

  it('decodes what it encodes, and a looping chain stops', () => {
    const info = decodeIommuInfo(infoBuffer(true));
    expect(info.caps.map((c) => [c.id, c.offset, c.next])).toEqual([
      [2, 24, 56],
      [3, 56, 72],
      [1, 72, 0],
    ]);
    const loop = infoBuffer(true);
    new DataView(loop.buffer).setUint32(28, 24, true); // migration's next points at itself
    expect(decodeIommuInfo(loop).caps).toHaveLength(1);
  });
});
