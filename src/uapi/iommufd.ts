/**
 * The iommufd user ABI of Linux 6.18 (include/uapi/linux/iommufd.h) and the VFIO device cdev's
 * iommufd ioctls (include/uapi/linux/vfio.h): ioctl numbers, constants, and byte-exact struct
 * codecs. Layouts: reference/nested-iommu.md §7.1-7.2, checked against the 6.18.15 headers.
 * Encode/decode only: no state and no validation here (iommufd/ and vfio/ validate).
 *
 * Every iommufd ioctl is `_IO(';', 0x80 + n)`; the struct starts with a u32 `size` that says how
 * much of it user space passed (extensible structs: `min` is the kernel's offsetofend of the last
 * field of the first version, `size` today's sizeof).
 */

import { IO } from './ioctl.ts';

export const IOMMUFD_TYPE = 0x3b; // ';'
export const IOMMUFD_CMD_BASE = 0x80;

export const IOMMUFD_CMD_DESTROY = 0x80;
export const IOMMUFD_CMD_IOAS_ALLOC = 0x81;
export const IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82;
export const IOMMUFD_CMD_IOAS_COPY = 0x83;
export const IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84;
export const IOMMUFD_CMD_IOAS_MAP = 0x85;
export const IOMMUFD_CMD_IOAS_UNMAP = 0x86;
export const IOMMUFD_CMD_OPTION = 0x87;
export const IOMMUFD_CMD_VFIO_IOAS = 0x88;
export const IOMMUFD_CMD_HWPT_ALLOC = 0x89;
export const IOMMUFD_CMD_GET_HW_INFO = 0x8a;
export const IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b;
export const IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c;
export const IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d;
export const IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e;
export const IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f;
export const IOMMUFD_CMD_VIOMMU_ALLOC = 0x90;
export const IOMMUFD_CMD_VDEVICE_ALLOC = 0x91;
export const IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92;
export const IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93;
export const IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94;
/** One past the last command of 6.18's ioctl table. */
export const IOMMUFD_CMD_END = 0x95;

export const IOMMU_DESTROY = IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY);
export const IOMMU_IOAS_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC);
export const IOMMU_IOAS_ALLOW_IOVAS = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS);
export const IOMMU_IOAS_COPY = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY);
export const IOMMU_IOAS_IOVA_RANGES = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES);
export const IOMMU_IOAS_MAP = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP);
export const IOMMU_IOAS_UNMAP = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP);
export const IOMMU_OPTION = IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION);
export const IOMMU_VFIO_IOAS = IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS);
export const IOMMU_HWPT_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC);
export const IOMMU_GET_HW_INFO = IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO);
export const IOMMU_HWPT_SET_DIRTY_TRACKING = IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING);
export const IOMMU_HWPT_GET_DIRTY_BITMAP = IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP);
export const IOMMU_HWPT_INVALIDATE = IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_INVALIDATE);
export const IOMMU_FAULT_QUEUE_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC);
export const IOMMU_IOAS_MAP_FILE = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE);
export const IOMMU_VIOMMU_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_VIOMMU_ALLOC);
export const IOMMU_VDEVICE_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_VDEVICE_ALLOC);
export const IOMMU_IOAS_CHANGE_PROCESS = IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_CHANGE_PROCESS);
export const IOMMU_VEVENTQ_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_VEVENTQ_ALLOC);
export const IOMMU_HW_QUEUE_ALLOC = IO(IOMMUFD_TYPE, IOMMUFD_CMD_HW_QUEUE_ALLOC);

// IOMMU_IOAS_MAP / MAP_FILE / COPY flags.
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

// IOMMU_OPTION
export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;

// IOMMU_VFIO_IOAS
export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

// IOMMU_HWPT_ALLOC flags and data types.
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HWPT_DATA_VTD_S1 = 1;
export const IOMMU_HWPT_DATA_ARM_SMMUV3 = 2;

// IOMMU_GET_HW_INFO
export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
export const IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3;
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1;
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2;
export const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0;

// Dirty tracking
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

// IOMMU_HWPT_INVALIDATE data types
export const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0;
export const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;

// vIOMMU, vEVENTQ, HW queue types
export const IOMMU_VIOMMU_TYPE_DEFAULT = 0;
export const IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2;
export const IOMMU_VEVENTQ_TYPE_DEFAULT = 0;
export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2;
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;
export const IOMMU_HW_QUEUE_TYPE_DEFAULT = 0;
export const IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1;

// The VFIO device cdev (include/uapi/linux/vfio.h, 6.18): VFIO_DEVICE_BIND_IOMMUFD (VFIO_BASE + 18),
// VFIO_DEVICE_ATTACH_IOMMUFD_PT (+ 19) and VFIO_DEVICE_DETACH_IOMMUFD_PT (+ 20) are in vfio.ts.
export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;
export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;
export const VFIO_DEVICE_DETACH_PASID = 1 << 0;

/** Field kinds: little-endian unsigned (u8..u64) or signed 32-bit. u64 fields decode as bigint. */
export type FieldKind = 'u8' | 'u16' | 'u32' | 's32' | 'u64';
export type FieldLayout = Readonly<Record<string, readonly [offset: number, kind: FieldKind]>>;
export type StructValues<F extends FieldLayout> = { [K in keyof F]: F[K][1] extends 'u64' ? bigint : number };

/** A struct of the ABI: its size today, the kernel's minimum (offsetofend of the first version's last field). */
export interface StructCodec<F extends FieldLayout> {
  readonly size: number;
  readonly min: number;
  readonly fields: F;
  /** The struct's bytes; absent fields are zero, `size` defaults to the full size. */
  encode(values: Partial<StructValues<F>>, bytes?: number): Uint8Array;
  decode(b: Uint8Array): StructValues<F>;
}

export function defineStruct<const F extends FieldLayout>(
  size: number,
  min: number,
  fields: F,
): StructCodec<F> {
  return {
    size,
    min,
    fields,
    encode(values, bytes = size) {
      const b = new Uint8Array(bytes);
      const v = new DataView(b.buffer);
      const all: Record<string, number | bigint | undefined> = { ...values };
      if ('size' in fields && all.size === undefined) all.size = size;
      if ('argsz' in fields && all.argsz === undefined) all.argsz = size;
      for (const [name, [off, kind]] of Object.entries(fields)) {
        const x = all[name];
        if (x === undefined || off >= bytes) continue;
        putField(v, off, kind, x);
      }
      return b;
    },
    decode(b) {
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const out: Record<string, number | bigint> = {};
      for (const [name, [off, kind]] of Object.entries(fields)) out[name] = getField(v, off, kind);
      return out as StructValues<F>;
    },
  };
}

export function putField(v: DataView, off: number, kind: FieldKind, x: number | bigint): void {
  switch (kind) {
    case 'u8':
      v.setUint8(off, Number(x) & 0xff);
      return;
    case 'u16':
      v.setUint16(off, Number(x) & 0xffff, true);
      return;
    case 'u32':
      v.setUint32(off, Number(BigInt.asUintN(32, BigInt(x))), true);
      return;
    case 's32':
      v.setInt32(off, Number(BigInt.asIntN(32, BigInt(x))), true);
      return;
    case 'u64':
      v.setBigUint64(off, BigInt.asUintN(64, BigInt(x)), true);
  }
}

export function getField(v: DataView, off: number, kind: FieldKind): number | bigint {
  if (off + fieldBytes(kind) > v.byteLength) return kind === 'u64' ? 0n : 0;
  switch (kind) {
    case 'u8':
      return v.getUint8(off);
    case 'u16':
      return v.getUint16(off, true);
    case 'u32':
      return v.getUint32(off, true);
    case 's32':
      return v.getInt32(off, true);
    case 'u64':
      return v.getBigUint64(off, true);
  }
}

function fieldBytes(kind: FieldKind): number {
  return kind === 'u8' ? 1 : kind === 'u16' ? 2 : kind === 'u64' ? 8 : 4;
}

// ---- iommufd structs (size, min = offsetofend of the IOCTL_OP `_last` field) ----

export const iommuDestroy = defineStruct(8, 8, { size: [0, 'u32'], id: [4, 'u32'] });

export const iommuIoasAlloc = defineStruct(12, 12, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  out_ioas_id: [8, 'u32'],
});

export const iommuIovaRange = defineStruct(16, 16, { start: [0, 'u64'], last: [8, 'u64'] });

export const iommuIoasIovaRanges = defineStruct(32, 32, {
  size: [0, 'u32'],
  ioas_id: [4, 'u32'],
  num_iovas: [8, 'u32'],
  __reserved: [12, 'u32'],
  allowed_iovas: [16, 'u64'],
  out_iova_alignment: [24, 'u64'],
});

export const iommuIoasAllowIovas = defineStruct(24, 24, {
  size: [0, 'u32'],
  ioas_id: [4, 'u32'],
  num_iovas: [8, 'u32'],
  __reserved: [12, 'u32'],
  allowed_iovas: [16, 'u64'],
});

export const iommuIoasMap = defineStruct(40, 40, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  ioas_id: [8, 'u32'],
  __reserved: [12, 'u32'],
  user_va: [16, 'u64'],
  length: [24, 'u64'],
  iova: [32, 'u64'],
});

export const iommuIoasMapFile = defineStruct(40, 40, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  ioas_id: [8, 'u32'],
  fd: [12, 's32'],
  start: [16, 'u64'],
  length: [24, 'u64'],
  iova: [32, 'u64'],
});

export const iommuIoasCopy = defineStruct(40, 40, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  dst_ioas_id: [8, 'u32'],
  src_ioas_id: [12, 'u32'],
  length: [16, 'u64'],
  dst_iova: [24, 'u64'],
  src_iova: [32, 'u64'],
});

export const iommuIoasUnmap = defineStruct(24, 24, {
  size: [0, 'u32'],
  ioas_id: [4, 'u32'],
  iova: [8, 'u64'],
  length: [16, 'u64'],
});

export const iommuOption = defineStruct(24, 24, {
  size: [0, 'u32'],
  option_id: [4, 'u32'],
  op: [8, 'u16'],
  __reserved: [10, 'u16'],
  object_id: [12, 'u32'],
  val64: [16, 'u64'],
});

export const iommuVfioIoas = defineStruct(12, 12, {
  size: [0, 'u32'],
  ioas_id: [4, 'u32'],
  op: [8, 'u16'],
  __reserved: [10, 'u16'],
});

export const iommuHwptAlloc = defineStruct(48, 24, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  dev_id: [8, 'u32'],
  pt_id: [12, 'u32'],
  out_hwpt_id: [16, 'u32'],
  __reserved: [20, 'u32'],
  data_type: [24, 'u32'],
  data_len: [28, 'u32'],
  data_uptr: [32, 'u64'],
  fault_id: [40, 'u32'],
  __reserved2: [44, 'u32'],
});

/** iommu_hwpt_arm_smmuv3: the guest's vSTE words 0 and 1. */
export const iommuHwptArmSmmuv3 = defineStruct(16, 16, { ste0: [0, 'u64'], ste1: [8, 'u64'] });

export const iommuHwInfo = defineStruct(40, 32, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  dev_id: [8, 'u32'],
  data_len: [12, 'u32'],
  data_uptr: [16, 'u64'],
  /** in_data_type with IOMMU_HW_INFO_FLAG_INPUT_TYPE, out_data_type on return. */
  out_data_type: [24, 'u32'],
  out_max_pasid_log2: [28, 'u8'],
  __reserved0: [29, 'u8'],
  __reserved1: [30, 'u8'],
  __reserved2: [31, 'u8'],
  out_capabilities: [32, 'u64'],
});

export const iommuHwInfoArmSmmuv3 = defineStruct(40, 40, {
  flags: [0, 'u32'],
  __reserved: [4, 'u32'],
  idr0: [8, 'u32'],
  idr1: [12, 'u32'],
  idr2: [16, 'u32'],
  idr3: [20, 'u32'],
  idr4: [24, 'u32'],
  idr5: [28, 'u32'],
  iidr: [32, 'u32'],
  aidr: [36, 'u32'],
});

export const iommuHwptSetDirtyTracking = defineStruct(16, 16, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  hwpt_id: [8, 'u32'],
  __reserved: [12, 'u32'],
});

export const iommuHwptGetDirtyBitmap = defineStruct(48, 48, {
  size: [0, 'u32'],
  hwpt_id: [4, 'u32'],
  flags: [8, 'u32'],
  __reserved: [12, 'u32'],
  iova: [16, 'u64'],
  length: [24, 'u64'],
  page_size: [32, 'u64'],
  data: [40, 'u64'],
});

export const iommuHwptInvalidate = defineStruct(32, 32, {
  size: [0, 'u32'],
  hwpt_id: [4, 'u32'],
  data_uptr: [8, 'u64'],
  data_type: [16, 'u32'],
  entry_len: [20, 'u32'],
  /** In: entries in the array; out: entries handled. */
  entry_num: [24, 'u32'],
  __reserved: [28, 'u32'],
});

/** iommu_viommu_arm_smmuv3_invalidate: one raw SMMUv3 command (two 64-bit words). */
export const iommuViommuArmSmmuv3Invalidate = defineStruct(16, 16, { cmd0: [0, 'u64'], cmd1: [8, 'u64'] });

export const iommuFaultAlloc = defineStruct(16, 16, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  out_fault_id: [8, 'u32'],
  out_fault_fd: [12, 'u32'],
});

export const iommuViommuAlloc = defineStruct(40, 24, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  type: [8, 'u32'],
  dev_id: [12, 'u32'],
  hwpt_id: [16, 'u32'],
  out_viommu_id: [20, 'u32'],
  data_len: [24, 'u32'],
  __reserved: [28, 'u32'],
  data_uptr: [32, 'u64'],
});

export const iommuVdeviceAlloc = defineStruct(24, 24, {
  size: [0, 'u32'],
  viommu_id: [4, 'u32'],
  dev_id: [8, 'u32'],
  out_vdevice_id: [12, 'u32'],
  virt_id: [16, 'u64'],
});

export const iommuIoasChangeProcess = defineStruct(8, 8, { size: [0, 'u32'], __reserved: [4, 'u32'] });

export const iommuVeventqAlloc = defineStruct(32, 28, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  viommu_id: [8, 'u32'],
  type: [12, 'u32'],
  veventq_depth: [16, 'u32'],
  out_veventq_id: [20, 'u32'],
  out_veventq_fd: [24, 'u32'],
  __reserved: [28, 'u32'],
});

/** What read() of a vEVENTQ fd yields before each event (and alone, for lost events). */
export const iommufdVeventHeader = defineStruct(8, 8, { flags: [0, 'u32'], sequence: [4, 'u32'] });

/** iommu_vevent_arm_smmuv3: the raw event record, StreamID replaced by the vSID. */
export const iommuVeventArmSmmuv3 = defineStruct(32, 32, {
  evt0: [0, 'u64'],
  evt1: [8, 'u64'],
  evt2: [16, 'u64'],
  evt3: [24, 'u64'],
});

export const iommuHwQueueAlloc = defineStruct(40, 40, {
  size: [0, 'u32'],
  flags: [4, 'u32'],
  viommu_id: [8, 'u32'],
  type: [12, 'u32'],
  index: [16, 'u32'],
  out_hw_queue_id: [20, 'u32'],
  nesting_parent_iova: [24, 'u64'],
  length: [32, 'u64'],
});

// ---- the VFIO device cdev's structs (argsz, not size; min = offsetofend as vfio checks it) ----

export const vfioDeviceBindIommufd = defineStruct(24, 16, {
  argsz: [0, 'u32'],
  flags: [4, 'u32'],
  iommufd: [8, 's32'],
  out_devid: [12, 'u32'],
  token_uuid_ptr: [16, 'u64'],
});

export const vfioDeviceAttachIommufdPt = defineStruct(16, 12, {
  argsz: [0, 'u32'],
  flags: [4, 'u32'],
  pt_id: [8, 'u32'],
  pasid: [12, 'u32'],
});

export const vfioDeviceDetachIommufdPt = defineStruct(12, 8, {
  argsz: [0, 'u32'],
  flags: [4, 'u32'],
  pasid: [8, 'u32'],
});
