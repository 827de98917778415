/**
 * The iommufd uAPI codecs against the 6.18.15 headers (include/uapi/linux/iommufd.h, vfio.h;
 * reference nested-iommu.md §7.1-7.2): ioctl numbers, struct sizes, the minimum sizes the ioctl table
 * checks (offsetofend of the first version's last field), and field offsets.
 */

import { describe, expect, it } from 'vitest';
import {
  IOMMU_DESTROY,
  IOMMU_GET_HW_INFO,
  IOMMU_HW_QUEUE_ALLOC,
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_INVALIDATE,
  IOMMU_IOAS_MAP,
  IOMMU_VEVENTQ_ALLOC,
  IOMMU_VIOMMU_ALLOC,
  iommuDestroy,
  iommuHwInfo,
  iommuHwInfoArmSmmuv3,
  iommuHwptAlloc,
  iommuHwptInvalidate,
  iommuIoasMap,
  iommuVdeviceAlloc,
  iommuVeventqAlloc,
  iommuViommuAlloc,
  vfioDeviceAttachIommufdPt,
  vfioDeviceBindIommufd,
  vfioDeviceDetachIommufdPt,
} from '../../src/uapi/iommufd.ts';
import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
} from '../../src/uapi/vfio.ts';

describe('ioctl numbers (_IO(";", 0x80 + n), reference §7.1)', () => {
  it.each([
    ['IOMMU_DESTROY', IOMMU_DESTROY, 0x3b80],
    ['IOMMU_IOAS_MAP', IOMMU_IOAS_MAP, 0x3b85],
    ['IOMMU_HWPT_ALLOC', IOMMU_HWPT_ALLOC, 0x3b89],
    ['IOMMU_GET_HW_INFO', IOMMU_GET_HW_INFO, 0x3b8a],
    ['IOMMU_HWPT_INVALIDATE', IOMMU_HWPT_INVALIDATE, 0x3b8d],
    ['IOMMU_VIOMMU_ALLOC', IOMMU_VIOMMU_ALLOC, 0x3b90],
    ['IOMMU_VEVENTQ_ALLOC', IOMMU_VEVENTQ_ALLOC, 0x3b93],
    ['IOMMU_HW_QUEUE_ALLOC', IOMMU_HW_QUEUE_ALLOC, 0x3b94],
    ['VFIO_DEVICE_BIND_IOMMUFD', VFIO_DEVICE_BIND_IOMMUFD, 0x3b76],
    ['VFIO_DEVICE_ATTACH_IOMMUFD_PT', VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77],
    ['VFIO_DEVICE_DETACH_IOMMUFD_PT', VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78],
  ])('%s = %s', (_name, got, want) => {
    expect(got).toBe(want);
  });
});

describe('struct sizes and minimum sizes (6.18 headers, main.c IOCTL_OP)', () => {
  it.each([
    ['iommu_destroy', iommuDestroy, 8, 8],
    ['iommu_ioas_map', iommuIoasMap, 40, 40],
    ['iommu_hwpt_alloc', iommuHwptAlloc, 48, 24],
    ['iommu_hw_info', iommuHwInfo, 40, 32],
    ['iommu_hwpt_invalidate', iommuHwptInvalidate, 32, 32],
    ['iommu_viommu_alloc', iommuViommuAlloc, 40, 24],
    ['iommu_vdevice_alloc', iommuVdeviceAlloc, 24, 24],
    ['iommu_veventq_alloc', iommuVeventqAlloc, 32, 28],
    ['iommu_hw_info_arm_smmuv3', iommuHwInfoArmSmmuv3, 40, 40],
    ['vfio_device_bind_iommufd', vfioDeviceBindIommufd, 24, 16],
    ['vfio_device_attach_iommufd_pt', vfioDeviceAttachIommufdPt, 16, 12],
    ['vfio_device_detach_iommufd_pt', vfioDeviceDetachIommufdPt, 12, 8],
  ])('%s: %i bytes, min %i', (_name, codec, size, min) => {
    expect(codec.size).toBe(size);
    expect(codec.min).toBe(min);
  });
});

describe('field offsets', () => {
  it('iommu_hwpt_alloc: data_uptr at 32, fault_id at 40', () => {
    const b = iommuHwptAlloc.encode({ data_uptr: 0x1122_3344_5566_7788n, fault_id: 0xaabbccdd });
    const v = new DataView(b.buffer);
    expect(v.getUint32(0, true)).toBe(48); // size defaults to the full size
    expect(v.getBigUint64(32, true)).toBe(0x1122_3344_5566_7788n);
    expect(v.getUint32(40, true)).toBe(0xaabbccdd);
    expect(iommuHwptAlloc.decode(b).data_uptr).toBe(0x1122_3344_5566_7788n);
  });

  it('iommu_hw_info: out_max_pasid_log2 is a u8 at 28, out_capabilities a u64 at 32', () => {
    const b = new Uint8Array(40);
    b[28] = 20;
    new DataView(b.buffer).setBigUint64(32, 1n, true);
    expect(iommuHwInfo.decode(b)).toMatchObject({ out_max_pasid_log2: 20, out_capabilities: 1n });
  });

  it('vfio_device_bind_iommufd: iommufd is signed (fd -1), token_uuid_ptr at 16, argsz defaults to 24', () => {
    const b = vfioDeviceBindIommufd.encode({ iommufd: -1, token_uuid_ptr: 0x1122_3344_5566_7788n });
    const v = new DataView(b.buffer);
    expect(v.getUint32(0, true)).toBe(24);
    expect(v.getInt32(8, true)).toBe(-1);
    expect(v.getBigUint64(16, true)).toBe(0x1122_3344_5566_7788n);
    expect(vfioDeviceBindIommufd.decode(b)).toMatchObject({ argsz: 24, iommufd: -1 });
  });

  it('a struct encoded shorter keeps its first fields only', () => {
    const b = iommuVeventqAlloc.encode({ size: 28, veventq_depth: 3, __reserved: 9 }, 28);
    expect(b.length).toBe(28);
    expect(new DataView(b.buffer).getUint32(16, true)).toBe(3);
  });
});
