/**
 * vfio-nest's stage-1 binding extension on a type-1 nesting container (docs/nesting-uapi.md):
 * VFIO_IOMMU_SET_PASID_TABLE binds (or unbinds) the guest's CD table on every domain of the
 * container, VFIO_IOMMU_CACHE_INVALIDATE forwards a guest TLB/CD invalidation, VFIO_IOMMU_GET_FAULTS
 * hands the VMM the stage-1 faults of its device. Validated in one place, in this order:
 * copy (EFAULT) -> argsz and flags (EINVAL) -> nesting container with a domain (EINVAL) -> fields
 * (EINVAL) -> the driver (EINVAL when the domain cannot nest, e.g. it fell back to stage 1).
 */

import type { NestedS1Config, S1Invalidation } from '../iommu/types.ts';
import type { UserArg } from '../mm/uaccess.ts';
import { EFAULT, EINVAL, EOPNOTSUPP } from '../uapi/errno.ts';
import {
  CACHE_INV_VERSION_1,
  CACHE_INVALIDATE_SIZE,
  decodeCacheInvalidate,
  decodeSetPasidTable,
  encodeFaultRecords,
  FAULT_RECORD_SIZE,
  type FaultRecord,
  GET_FAULTS_HEADER_SIZE,
  IOMMU_CACHE_INV_TYPE_DEV_IOTLB,
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
  PASID_TABLE_CFG_VERSION_1,
  SET_PASID_TABLE_SIZE,
  VFIO_PASID_TABLE_FLAG_SET,
  VFIO_PASID_TABLE_FLAG_UNSET,
} from '../uapi/vfio-nest-ext.ts';
import type { Type1State } from './type1-state.ts';

function nestingDomains(s: Type1State): number {
  return s.nesting && s.domains.length > 0 ? 0 : -EINVAL;
}

export function vfioIommuSetPasidTable(s: Type1State, arg: UserArg): number {
  const b = arg.copyFrom(SET_PASID_TABLE_SIZE);
  if (typeof b === 'number') return b;
  const req = decodeSetPasidTable(b);
  const set = req.flags === VFIO_PASID_TABLE_FLAG_SET;
  if (req.argsz < SET_PASID_TABLE_SIZE || (!set && req.flags !== VFIO_PASID_TABLE_FLAG_UNSET)) return -EINVAL;
  const r = nestingDomains(s);
  if (r < 0) return r;
  if (!set) {
    for (const d of s.domains) d.domain.driver.detachPasidTable?.(d.domain);
    return 0;
  }
  const c = req.config;
  if (c.version !== PASID_TABLE_CFG_VERSION_1 || c.format !== IOMMU_PASID_FORMAT_SMMUV3) return -EINVAL;
  const mode =
    c.config === IOMMU_PASID_CONFIG_TRANSLATE
      ? 'translate'
      : c.config === IOMMU_PASID_CONFIG_BYPASS
        ? 'bypass'
        : c.config === IOMMU_PASID_CONFIG_ABORT
          ? 'abort'
          : null;
  if (mode === null || c.smmuv3.version !== 1 || c.smmuv3.s1fmt > 2 || c.smmuv3.s1dss > 2) return -EINVAL;
  if (c.basePtr > BigInt(Number.MAX_SAFE_INTEGER)) return -EINVAL;
  const cfg: NestedS1Config = {
    mode,
    cdTable: Number(c.basePtr),
    s1cdmax: c.pasidBits,
    s1fmt: c.smmuv3.s1fmt,
    s1dss: c.smmuv3.s1dss,
  };
  for (const [i, d] of s.domains.entries()) {
    const drv = d.domain.driver;
    const e = drv.attachPasidTable ? drv.attachPasidTable(d.domain, cfg) : -EOPNOTSUPP;
    if (e < 0) {
      for (const done of s.domains.slice(0, i)) done.domain.driver.detachPasidTable?.(done.domain);
      return e;
    }
  }
  return 0;
}

export function vfioIommuCacheInvalidate(s: Type1State, arg: UserArg): number {
  const b = arg.copyFrom(CACHE_INVALIDATE_SIZE);
  if (typeof b === 'number') return b;
  const { argsz, flags, info } = decodeCacheInvalidate(b);
  if (argsz < CACHE_INVALIDATE_SIZE || flags !== 0) return -EINVAL;
  const r = nestingDomains(s);
  if (r < 0) return r;
  const caches = IOMMU_CACHE_INV_TYPE_IOTLB | IOMMU_CACHE_INV_TYPE_DEV_IOTLB | IOMMU_CACHE_INV_TYPE_PASID;
  if (info.version !== CACHE_INV_VERSION_1 || info.cache === 0 || info.cache & ~caches) return -EINVAL;
  if (info.flags & ~(IOMMU_INV_FLAG_PASID | IOMMU_INV_FLAG_ARCHID | IOMMU_INV_FLAG_LEAF)) return -EINVAL;
  const invs: S1Invalidation[] = [];
  const archid = info.flags & IOMMU_INV_FLAG_ARCHID ? Number(info.archid & 0xffffn) : null;
  if (info.cache & IOMMU_CACHE_INV_TYPE_IOTLB) {
    switch (info.granularity) {
      case IOMMU_INV_GRANU_DOMAIN:
        invs.push({ kind: 'all' });
        break;
      case IOMMU_INV_GRANU_PASID:
        if (archid === null) return -EINVAL;
        invs.push({ kind: 'asid', asid: archid });
        break;
      case IOMMU_INV_GRANU_ADDR: {
        const g = info.granuleSize;
        if (![0x1000, 0x4000, 0x10000, 0x20_0000, 0x200_0000, 0x4000_0000].includes(g)) return -EINVAL;
        if (info.addr % BigInt(g) !== 0n || info.nbGranules === 0n || info.nbGranules > 0x10000n)
          return -EINVAL;
        if (info.addr > BigInt(Number.MAX_SAFE_INTEGER)) return -EINVAL;
        invs.push({
          kind: 'va',
          asid: archid,
          addr: Number(info.addr),
          granule: g,
          count: Number(info.nbGranules),
          leaf: (info.flags & IOMMU_INV_FLAG_LEAF) !== 0,
        });
        break;
      }
      default:
        return -EINVAL;
    }
  }
  if (info.cache & IOMMU_CACHE_INV_TYPE_PASID)
    invs.push({ kind: 'cd', ssid: info.flags & IOMMU_INV_FLAG_PASID ? Number(info.pasid & 0xfffffn) : null });
  for (const d of s.domains) {
    const drv = d.domain.driver;
    for (const inv of invs) {
      const e = drv.cacheInvalidate ? drv.cacheInvalidate(d.domain, inv) : -EOPNOTSUPP;
      if (e < 0) return e;
    }
  }
  return 0;
}

export function vfioIommuGetFaults(s: Type1State, arg: UserArg): number {
  const b = arg.copyFrom(GET_FAULTS_HEADER_SIZE);
  if (typeof b === 'number') return b;
  const v = new DataView(b.buffer);
  const argsz = v.getUint32(0, true);
  const room = v.getUint32(8, true);
  if (argsz < GET_FAULTS_HEADER_SIZE || v.getUint32(4, true) !== 0) return -EINVAL;
  if (argsz < GET_FAULTS_HEADER_SIZE + room * FAULT_RECORD_SIZE) return -EINVAL;
  const r = nestingDomains(s);
  if (r < 0) return r;
  const records: FaultRecord[] = [];
  let pending = 0;
  let lost = 0;
  for (const d of s.domains) {
    const t = d.domain.driver.takeFaults?.(d.domain, room - records.length);
    if (t === undefined) continue;
    for (const rec of t.records) records.push({ sid: rec.sid, ssid: rec.ssid, evt: rec.words });
    pending += t.pending;
    lost += t.lost;
  }
  return arg.copyTo(encodeFaultRecords(argsz, room, records, pending, lost)) < 0 ? -EFAULT : 0;
}
