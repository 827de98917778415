/**
 * vfio-nest's stage-1 binding extension for a type-1 nesting container (docs/nesting-uapi.md).
 * Upstream never merged a VFIO uAPI for the guest's stage 1; this follows the shape of the proposal
 * that came closest (Eric Auger, "SMMUv3 Nested Stage Setup (VFIO part)", 2018-2021): bind the guest's
 * PASID (CD) table, forward the guest's cache invalidations, and read the stage-1 faults. The ioctl
 * numbers are that series' early ones (VFIO_BASE + 22, 23); reading faults is vfio-nest's own (the
 * series used a device region). Only a host built with the extension answers them; any other host
 * answers ENOTTY, as a real type-1 kernel does.
 */

import { IO } from './ioctl.ts';
import { VFIO_BASE, VFIO_TYPE } from './vfio.ts';

export const VFIO_IOMMU_SET_PASID_TABLE = IO(VFIO_TYPE, VFIO_BASE + 22);
export const VFIO_IOMMU_CACHE_INVALIDATE = IO(VFIO_TYPE, VFIO_BASE + 23);
export const VFIO_IOMMU_GET_FAULTS = IO(VFIO_TYPE, VFIO_BASE + 25);

/** CHECK_EXTENSION number of the extension ('N' 'B': nesting bind). */
export const VFIO_NEST_BIND_EXTENSION = 0x4e42;

export const VFIO_PASID_TABLE_FLAG_SET = 1;
export const VFIO_PASID_TABLE_FLAG_UNSET = 2;
export const PASID_TABLE_CFG_VERSION_1 = 1;
export const IOMMU_PASID_FORMAT_SMMUV3 = 1;
export const IOMMU_PASID_CONFIG_TRANSLATE = 1;
export const IOMMU_PASID_CONFIG_BYPASS = 2;
export const IOMMU_PASID_CONFIG_ABORT = 3;
export const PASID_TABLE_SMMUV3_CFG_VERSION_1 = 1;

/** vfio_iommu_type1_set_pasid_table: argsz, flags, then iommu_pasid_table_config (40 bytes). */
export const SET_PASID_TABLE_SIZE = 48;

export interface PasidTableConfig {
  version: number;
  /** IPA of the guest's CD table (STE.S1ContextPtr). */
  basePtr: bigint;
  /** log2 of the number of CDs (STE.S1CDMax). */
  pasidBits: number;
  format: number;
  config: number;
  smmuv3: { version: number; flags: number; s1fmt: number; s1dss: number };
}

export interface SetPasidTable {
  argsz: number;
  flags: number;
  config: PasidTableConfig;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function encodeSetPasidTable(s: SetPasidTable): Uint8Array {
  const b = new Uint8Array(SET_PASID_TABLE_SIZE);
  const v = view(b);
  v.setUint32(0, s.argsz, true);
  v.setUint32(4, s.flags, true);
  v.setUint32(8, 40, true);
  v.setUint32(12, s.config.version, true);
  v.setBigUint64(16, s.config.basePtr, true);
  b[24] = s.config.pasidBits;
  b[25] = s.config.format;
  b[26] = s.config.config;
  v.setUint32(32, s.config.smmuv3.version, true);
  v.setUint32(36, s.config.smmuv3.flags, true);
  b[40] = s.config.smmuv3.s1fmt;
  b[41] = s.config.smmuv3.s1dss;
  return b;
}

export function decodeSetPasidTable(b: Uint8Array): SetPasidTable {
  const v = view(b);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    config: {
      version: v.getUint32(12, true),
      basePtr: v.getBigUint64(16, true),
      pasidBits: b[24],
      format: b[25],
      config: b[26],
      smmuv3: { version: v.getUint32(32, true), flags: v.getUint32(36, true), s1fmt: b[40], s1dss: b[41] },
    },
  };
}

export const IOMMU_CACHE_INV_TYPE_IOTLB = 1;
export const IOMMU_CACHE_INV_TYPE_DEV_IOTLB = 2;
export const IOMMU_CACHE_INV_TYPE_PASID = 4;
export const IOMMU_INV_GRANU_DOMAIN = 0;
export const IOMMU_INV_GRANU_PASID = 1;
export const IOMMU_INV_GRANU_ADDR = 2;
export const IOMMU_INV_FLAG_PASID = 1;
export const IOMMU_INV_FLAG_ARCHID = 2;
export const IOMMU_INV_FLAG_LEAF = 4;
export const CACHE_INV_VERSION_1 = 1;

/** vfio_iommu_type1_cache_invalidate: argsz, flags, then iommu_cache_invalidate_info (56 bytes). */
export const CACHE_INVALIDATE_SIZE = 64;

export interface CacheInvalidateInfo {
  version: number;
  /** IOMMU_CACHE_INV_TYPE_* bits. */
  cache: number;
  granularity: number;
  /** IOMMU_INV_FLAG_* */
  flags: number;
  granuleSize: number;
  pasid: bigint;
  /** The ASID. */
  archid: bigint;
  addr: bigint;
  nbGranules: bigint;
}

export function encodeCacheInvalidate(argsz: number, i: CacheInvalidateInfo): Uint8Array {
  const b = new Uint8Array(CACHE_INVALIDATE_SIZE);
  const v = view(b);
  v.setUint32(0, argsz, true);
  v.setUint32(4, 0, true);
  v.setUint32(8, 56, true);
  v.setUint32(12, i.version, true);
  b[16] = i.cache;
  b[17] = i.granularity;
  v.setUint32(24, i.flags, true);
  v.setUint32(28, i.granuleSize, true);
  v.setBigUint64(32, i.pasid, true);
  v.setBigUint64(40, i.archid, true);
  v.setBigUint64(48, i.addr, true);
  v.setBigUint64(56, i.nbGranules, true);
  return b;
}

export function decodeCacheInvalidate(b: Uint8Array): {
  argsz: number;
  flags: number;
  info: CacheInvalidateInfo;
} {
  const v = view(b);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    info: {
      version: v.getUint32(12, true),
      cache: b[16],
      granularity: b[17],
      flags: v.getUint32(24, true),
      granuleSize: v.getUint32(28, true),
      pasid: v.getBigUint64(32, true),
      archid: v.getBigUint64(40, true),
      addr: v.getBigUint64(48, true),
      nbGranules: v.getBigUint64(56, true),
    },
  };
}

/** vfio_iommu_type1_get_faults header: argsz, flags, count (in: room, out: returned), pending, lost, pad. */
export const GET_FAULTS_HEADER_SIZE = 24;
/** One record: StreamID, SubstreamID (~0: none), then the SMMU event record's four 64-bit words. */
export const FAULT_RECORD_SIZE = 40;

export interface FaultRecord {
  sid: number;
  ssid: number;
  evt: [bigint, bigint, bigint, bigint];
}

/**
 * The GET_FAULTS reply: the header (argsz, flags 0, count, pending, lost) and `room` record slots,
 * the first records.length of them filled (the rest zero).
 */
export function encodeFaultRecords(
  argsz: number,
  room: number,
  records: readonly FaultRecord[],
  pending: number,
  lost: number,
): Uint8Array {
  const b = new Uint8Array(GET_FAULTS_HEADER_SIZE + room * FAULT_RECORD_SIZE);
  const v = view(b);
  v.setUint32(0, argsz, true);
  v.setUint32(8, records.length, true);
  v.setUint32(12, pending, true);
  v.setUint32(16, lost, true);
  records.forEach((r, i) => {
    const o = GET_FAULTS_HEADER_SIZE + i * FAULT_RECORD_SIZE;
    v.setUint32(o, r.sid, true);
    v.setUint32(o + 4, r.ssid, true);
    for (let k = 0; k < 4; k++) v.setBigUint64(o + 8 + 8 * k, r.evt[k], true);
  });
  return b;
}

export function decodeFaultRecords(b: Uint8Array): {
  count: number;
  pending: number;
  lost: number;
  records: FaultRecord[];
} {
  const v = view(b);
  const count = v.getUint32(8, true);
  const records: FaultRecord[] = [];
  for (let i = 0; i < count; i++) {
    const o = GET_FAULTS_HEADER_SIZE + i * FAULT_RECORD_SIZE;
    records.push({
      sid: v.getUint32(o, true),
      ssid: v.getUint32(o + 4, true),
      evt: [0, 1, 2, 3].map((k) => v.getBigUint64(o + 8 + 8 * k, true)) as [bigint, bigint, bigint, bigint],
    });
  }
  return { count, pending: v.getUint32(12, true), lost: v.getUint32(16, true), records };
}
