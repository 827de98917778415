/**
 * The VFIO device API (include/uapi/linux/vfio.h, vfio-pci): device info, region info,
 * IRQ info and SET_IRQS layouts, and the vfio-pci region and IRQ indices.
 */

export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;

export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK = 0x7;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK = 0x38;

/** vfio_device_info: argsz, flags, num_regions, num_irqs, cap_offset, pad. */
export const DEVICE_INFO_SIZE = 24;
/** vfio_region_info: argsz, flags, index, cap_offset, size (u64), offset (u64). */
export const REGION_INFO_SIZE = 32;
/** vfio_irq_info: argsz, flags, index, count. */
export const IRQ_INFO_SIZE = 16;
/** vfio_irq_set header: argsz, flags, index, start, count; data[] follows. */
export const IRQ_SET_SIZE = 20;
/** vfio_device_ioeventfd: argsz, flags, offset (u64), data (u64), then the eventfd at 24 (minsz 28). */
export const IOEVENTFD_FD_AT = 24;

/** VFIO_DEVICE_SET_IRQS's vfio_irq_set header; `count` entries of data[] follow it. */
export interface IrqSet {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
}

/** The vfio_irq_set header from the first IRQ_SET_SIZE bytes of `b` (a RangeError if shorter). */
export function decodeIrqSet(b: Uint8Array): IrqSet {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    index: v.getUint32(8, true),
    start: v.getUint32(12, true),
    count: v.getUint32(16, true),
  };
}

/** struct vfio_device_feature's flags: the feature number, and GET, SET, PROBE. */
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;

/** VFIO_PCI_INDEX_TO_OFFSET: regions live at index << 40 in the device fd. */
export const VFIO_PCI_OFFSET_SHIFT = 40;

export function regionOffset(index: number): number {
  return index * 2 ** VFIO_PCI_OFFSET_SHIFT;
}

export interface RegionInfo {
  argsz: number;
  flags: number;
  index: number;
  capOffset: number;
  size: bigint;
  offset: bigint;
}

export function encodeRegionInfo(r: RegionInfo): Uint8Array {
  const b = new Uint8Array(REGION_INFO_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, r.argsz, true);
  v.setUint32(4, r.flags, true);
  v.setUint32(8, r.index, true);
  v.setUint32(12, r.capOffset, true);
  v.setBigUint64(16, r.size, true);
  v.setBigUint64(24, r.offset, true);
  return b;
}

export function decodeRegionInfo(b: Uint8Array): RegionInfo {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    index: v.getUint32(8, true),
    capOffset: v.getUint32(12, true),
    size: v.getBigUint64(16, true),
    offset: v.getBigUint64(24, true),
  };
}
