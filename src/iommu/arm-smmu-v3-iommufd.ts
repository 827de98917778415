/**
 * The arm-smmu-v3 driver's iommufd nesting (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c, 6.18):
 * the vSMMU (struct arm_vsmmu) that a vIOMMU object owns, the nested domain built from the guest's vSTE
 * (its validation, and the physical STE composed from it and the nest parent's stage 2), and the guest's
 * raw invalidation commands checked, rewritten (VMID, vSID -> SID) and issued in batches.
 * Reference: nested-iommu.md §7.3-7.4, §7.6; the rules below were checked against the 6.18.15 source and
 * the oracle's answers (test/oracle/answers/6.18-iommufd).
 *
 * iommufd (a higher layer) talks to this file through the small interfaces it declares: the vIOMMU core
 * (vDEVICE lookups and vEVENTQ reports) and the user data accessors (copy_struct_from_user).
 */

import {
  CMD_ATC_INV,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  EVT_C_BAD_CD,
  EVT_C_BAD_STE,
  EVT_C_BAD_SUBSTREAMID,
  EVT_F_ACCESS,
  EVT_F_ADDR_SIZE,
  EVT_F_PERMISSION,
  EVT_F_STREAM_DISABLED,
  EVT_F_TRANSLATION,
  encodeSte,
  STE_CFG_ABORT,
  STE_CFG_BYPASS,
  STE_CFG_NESTED,
  STE_CFG_S1_TRANS,
} from '../smmu/index.ts';
import { EFAULT, EINVAL, EIO, ENOMEM, EOPNOTSUPP } from '../uapi/errno.ts';
import {
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
} from '../uapi/iommufd.ts';
import type { ArmSmmuV3 } from './arm-smmu-v3.ts';
import type { ArmSmmuDomain } from './arm-smmu-v3-domain.ts';
import { IommuDomain } from './domain.ts';
import type { Device } from './group.ts';
import type { IotlbGather } from './types.ts';

/** CMDQ_BATCH_ENTRIES (BITS_PER_LONG on arm64): 63 commands and a CMD_SYNC per batch. */
const CMDQ_BATCH_ENTRIES = 64;
/** The largest kmalloc (arm64, 4 KiB pages: order 10). */
const KMALLOC_MAX_SIZE = 4 << 20;

/** Event types arm_smmu_handle_event hands on (to a vEVENTQ): C_BAD_STE ... F_PERMISSION. */
export const VMASTER_EVENTS: ReadonlySet<number> = new Set([
  EVT_C_BAD_STE,
  EVT_F_STREAM_DISABLED,
  EVT_C_BAD_SUBSTREAMID,
  EVT_C_BAD_CD,
  EVT_F_TRANSLATION,
  EVT_F_ADDR_SIZE,
  EVT_F_ACCESS,
  EVT_F_PERMISSION,
]);

/** What the driver asks of the iommufd vIOMMU object it serves (struct iommufd_viommu). */
export interface VsmmuCore {
  /** iommufd_viommu_get_vdev_id: the virtual ID of `dev`'s vDEVICE on this vIOMMU, or -ENOENT. */
  vdevIdOf(dev: Device): number;
  /** iommufd_viommu_find_dev: the device whose vDEVICE has virtual ID `vsid`. */
  findDev(vsid: number): Device | undefined;
  /** iommufd_viommu_report_event: 0, or -EOPNOTSUPP when no vEVENTQ of `type` exists. */
  reportEvent(type: number, data: Uint8Array): number;
}

/** struct iommu_user_data: driver data user space passed, read as copy_struct_from_user reads it. */
export interface UserData {
  type: number;
  len: number;
  /** copy_struct_from_user into `ksize` bytes: the bytes, or -EFAULT / -E2BIG. */
  copyStruct(ksize: number): Uint8Array | number;
}

/** struct iommu_user_data_array: an array of `entryNum` entries of `entryLen` bytes. */
export interface UserDataArray {
  type: number;
  entryNum: number;
  entryLen: number;
  /** copy_from_user of `len` bytes at the array's start: the bytes or -EFAULT. */
  copy(len: number): Uint8Array | number;
  /** copy_struct_from_user of entry `index` into `ksize` bytes. */
  copyEntry(index: number, ksize: number): Uint8Array | number;
  /** Out: entries handled. */
  done: number;
}

/** The 64-bit words of a vSTE or command, as two 32-bit halves each. */
function u64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

// STRTAB_STE_0_NESTING_ALLOWED: V, Config, S1Fmt, S1ContextPtr[51:6], S1CDMax[63:59].
const STE0_NESTING_ALLOWED = 0xf80f_ffff_ffff_ffffn;
// STRTAB_STE_1_NESTING_ALLOWED: S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
const STE1_NESTING_ALLOWED = 0x3800_00ffn;
const STE1_EATS = 0x3000_0000n;
const STE1_MEV = 1n << 19n;

/**
 * arm_smmu_validate_vste: V = 0 makes the vSTE all zeros; otherwise only the nesting-allowed bits,
 * Config abort, bypass or S1 translate, and EATS abort or full ATS; anything else is EIO ("EIO is
 * reserved for invalid STE data"). Returns the stored words (EATS stripped) and whether ATS was asked.
 */
export function validateVste(
  ste0: bigint,
  ste1: bigint,
): { ste: [bigint, bigint]; enableAts: boolean } | number {
  if ((ste0 & 1n) === 0n) return { ste: [0n, 0n], enableAts: false };
  if ((ste0 & ~STE0_NESTING_ALLOWED) !== 0n || (ste1 & ~STE1_NESTING_ALLOWED) !== 0n) return -EIO;
  const cfg = Number((ste0 >> 1n) & 7n);
  if (cfg !== STE_CFG_ABORT && cfg !== STE_CFG_BYPASS && cfg !== STE_CFG_S1_TRANS) return -EIO;
  const eats = Number((ste1 & STE1_EATS) >> 28n);
  if (eats !== 0 && eats !== 1) return -EIO;
  return { ste: [ste0, ste1 & ~STE1_EATS], enableAts: cfg === STE_CFG_S1_TRANS && eats === 1 };
}

/** struct arm_vsmmu: the vIOMMU's driver state. Its VMID is the nest parent's (the driver's FIXME). */
export class ArmVsmmu {
  constructor(
    readonly smmu: ArmSmmuV3,
    readonly core: VsmmuCore,
    readonly s2Parent: ArmSmmuDomain,
  ) {}

  get vmid(): number {
    return this.s2Parent.vmid;
  }

  /** arm_vsmmu_alloc_domain_nested: flags EOPNOTSUPP, the data as iommu_copy_struct_from_user reads it. */
  allocDomainNested(flags: number, data: UserData): ArmSmmuNestedDomain | number {
    if (flags !== 0) return -EOPNOTSUPP;
    if (data.type !== IOMMU_HWPT_DATA_ARM_SMMUV3 || data.len < 16) return -EINVAL;
    const b = data.copyStruct(16);
    if (typeof b === 'number') return b;
    const v = new DataView(b.buffer, b.byteOffset, 16);
    const r = validateVste(v.getBigUint64(0, true), v.getBigUint64(8, true));
    if (typeof r === 'number') return r;
    return new ArmSmmuNestedDomain(this, r.ste, r.enableAts);
  }

  /**
   * arm_vsmmu_cache_invalidate: the whole array is copied first (a type other than ARM_SMMUV3 or no
   * entry at all is EINVAL), then each command is converted in place and issued in batches of 63 with
   * a CMD_SYNC. A command that cannot be converted ends the call with EIO; `done` then counts the
   * commands before it, including any not yet issued (6.18 issues a batch only when it is full or the
   * array ends; oracle x10-iommufd-invalidate).
   */
  cacheInvalidate(array: UserDataArray): number {
    // kcalloc of the command array: beyond KMALLOC_MAX_SIZE (4 MiB) it fails, and entry_num is
    // reported back unchanged.
    array.done = array.entryNum;
    if (array.entryNum * 16 > KMALLOC_MAX_SIZE) return -ENOMEM;
    array.done = 0;
    if (array.type !== IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 || array.entryNum === 0) return -EINVAL;
    const n = array.entryNum;
    if (array.entryLen === 16) {
      const all = array.copy(n * 16);
      if (typeof all === 'number') return -EFAULT;
    }
    const cmds: Uint32Array[] = [];
    for (let i = 0; i < n; i++) {
      const e = array.copyEntry(i, 16);
      if (typeof e === 'number') return e;
      const v = new DataView(e.buffer, e.byteOffset, 16);
      cmds.push(
        Uint32Array.of(
          v.getUint32(0, true),
          v.getUint32(4, true),
          v.getUint32(8, true),
          v.getUint32(12, true),
        ),
      );
    }
    let last = 0;
    let cur = 0;
    while (cur !== n) {
      if (!this.convertUserCmd(cmds[cur])) {
        array.done = cur;
        return -EIO;
      }
      cur++;
      if (cur !== n && cur - last !== CMDQ_BATCH_ENTRIES - 1) continue;
      this.smmu.issueRaw(cmds.slice(last, cur), true);
      last = cur;
    }
    array.done = cur;
    return 0;
  }

  /** arm_vsmmu_convert_user_cmd: the vIOMMU's VMID on TLBIs, the physical SID on CFGI_CD / ATC_INV. */
  private convertUserCmd(w: Uint32Array): boolean {
    switch (w[0] & 0xff) {
      case CMD_TLBI_NSNH_ALL:
        w[0] = CMD_TLBI_NH_ALL;
        w[1] = this.vmid & 0xffff;
        w[2] = 0;
        w[3] = 0;
        return true;
      case CMD_TLBI_NH_VA:
      case CMD_TLBI_NH_VAA:
      case CMD_TLBI_NH_ALL:
      case CMD_TLBI_NH_ASID:
        w[1] = ((w[1] & 0xffff_0000) | (this.vmid & 0xffff)) >>> 0;
        return true;
      case CMD_ATC_INV:
      case CMD_CFGI_CD:
      case CMD_CFGI_CD_ALL: {
        const dev = this.core.findDev(w[1] >>> 0);
        if (dev === undefined) return false;
        w[1] = dev.rid >>> 0;
        return true;
      }
      default:
        return false;
    }
  }

  /** arm_vmaster_report_event: the record with the vSID in place of the StreamID, to the vEVENTQ. */
  reportEvent(vsid: number, q: [bigint, bigint, bigint, bigint]): number {
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, (q[0] & 0xffff_ffffn) | (BigInt(vsid >>> 0) << 32n), true);
    for (let i = 1; i < 4; i++) v.setBigUint64(8 * i, q[i], true);
    return this.core.reportEvent(IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, b);
  }
}

/**
 * struct arm_smmu_nested_domain: an IOMMU_DOMAIN_NESTED holding the guest's vSTE words 0-1. It maps
 * nothing itself; attaching it installs the physical STE built from the vSTE and the parent's stage 2.
 */
export class ArmSmmuNestedDomain extends IommuDomain {
  readonly driver: ArmSmmuV3;

  constructor(
    readonly vsmmu: ArmVsmmu,
    /** The vSTE as stored: zeros for V = 0, EATS stripped. */
    readonly ste: [bigint, bigint],
    readonly enableAts: boolean,
  ) {
    super();
    this.driver = vsmmu.smmu;
    this.type = 'nested';
  }

  /** The vSTE's Config, abort for V = 0 (arm_smmu_make_nested_domain_ste). */
  get config(): number {
    return (this.ste[0] & 1n) === 0n ? STE_CFG_ABORT : Number((this.ste[0] >> 1n) & 7n);
  }

  /**
   * The physical STE (arm_smmu_make_nested_domain_ste): S1 translate -> the parent's stage-2 STE with
   * word 0 = V | Config 0b111 | the vSTE's word 0, word 1 |= the vSTE's word 1 | MEV; bypass -> the
   * parent's stage-2 STE; abort (or V = 0) -> an abort STE. No ATS in this model: EATS stays 0.
   */
  physicalSte(): Uint32Array {
    const cfg = this.config;
    if (cfg !== STE_CFG_S1_TRANS && cfg !== STE_CFG_BYPASS) return encodeSte({ V: 1, Config: STE_CFG_ABORT });
    const w = encodeSte(this.driver.steFor(this.vsmmu.s2Parent));
    if (cfg === STE_CFG_BYPASS) return w;
    const ste0 = 1n | (BigInt(STE_CFG_NESTED) << 1n) | (this.ste[0] & ~0xen);
    const ste1 = u64(w[2], w[3]) | this.ste[1] | STE1_MEV;
    w[0] = Number(ste0 & 0xffff_ffffn);
    w[1] = Number(ste0 >> 32n);
    w[2] = Number(ste1 & 0xffff_ffffn);
    w[3] = Number(ste1 >> 32n);
    return w;
  }

  protected mapPages(): number {
    return -EINVAL;
  }

  protected unmapPages(_iova: number, _pgsize: number, _count: number, _gather: IotlbGather): number {
    return 0;
  }

  iovaToPhys(): number {
    return -1;
  }

  leafSize(): number {
    return 0;
  }
}
