/**
 * VMSAv8-64 long-descriptor bits (reference §1.4) and the one place where Linux IOMMU_* flags
 * become stage-specific leaf bits (`protToPte`, after Linux `arm_lpae_prot_to_pte`).
 *
 * A descriptor is two 32-bit words: `lo` = bits 31:0, `hi` = bits 63:32. Constants named `*_HI`
 * are bit masks within `hi` (descriptor bit n >= 32 is `hi` bit n - 32).
 */
import { blockAllowed, effectiveOutputBits, levelShift, POW2 } from './geometry.ts';
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from './types.ts';

export const PTE_VALID = 1 << 0;
/** bits[1:0] = 0b11: table at levels 0-2, page at level 3; 0b01: block (levels 1-2). */
export const PTE_TYPE_TABLE = 3;
export const PTE_TYPE_PAGE = 3;
export const PTE_TYPE_BLOCK = 1;

// Stage-1 leaf (lo word).
export const PTE_ATTRINDX_SHIFT = 2;
export const PTE_NS = 1 << 5;
export const PTE_AP_UNPRIV = 1 << 6; // AP[1]
export const PTE_AP_RDONLY = 1 << 7; // AP[2]
export const PTE_NG = 1 << 11;
// Stage-2 leaf (lo word): S2AP and MemAttr[3:0] at [5:2].
export const PTE_HAP_READ = 1 << 6;
export const PTE_HAP_WRITE = 1 << 7;
export const PTE_MEMATTR_SHIFT = 2;
export const MEMATTR_OIWB = 0xf;
export const MEMATTR_NC = 0x5;
export const MEMATTR_DEV = 0x1;
// Common (lo word).
export const PTE_SH_SHIFT = 8;
export const SH_NS = 0;
export const SH_OS = 2;
export const SH_IS = 3;
export const PTE_AF = 1 << 10;
// Upper attributes (hi word).
export const PTE_DBM_HI = 1 << 19; // bit 51
export const PTE_CONT_HI = 1 << 20; // bit 52
export const PTE_PXN_HI = 1 << 21; // bit 53 (stage 2: XN[0] with FEAT_XNX)
export const PTE_XN_HI = 1 << 22; // bit 54 (UXN / XN / XN[1])
/** Linux `ARM_LPAE_PTE_XN` sets both bits 53 and 54. */
export const PTE_XN_BOTH_HI = PTE_PXN_HI | PTE_XN_HI;
// Stage-1 table descriptor hierarchical bits (hi word).
export const PTE_PXNTABLE_HI = 1 << 27; // bit 59
export const PTE_UXNTABLE_HI = 1 << 28; // bit 60
export const PTE_APTABLE_SHIFT_HI = 29; // bits 62:61
export const PTE_NSTABLE_HI = 1 << 31; // bit 63

/** Linux MAIR indexes and the MAIR it programs: NC 0x44, WBRWA 0xff, DEVICE 0x04, INC_OWBRWA 0xf4. */
export const MAIR_ATTR_IDX_NC = 0;
export const MAIR_ATTR_IDX_CACHE = 1;
export const MAIR_ATTR_IDX_DEV = 2;
export const MAIR_ATTR_IDX_INC_OCACHE = 3;
export const LINUX_MAIR0 = 0xf404ff44;

/** A descriptor as its two words. */
export interface Pte {
  lo: number;
  hi: number;
}

/**
 * Leaf attribute bits for Linux IOMMU_* flags, without address or type bits (`arm_lpae_prot_to_pte`).
 * Stage 1: nG, AP[2] when readable but not writable, AP[1] unless PRIV, AttrIndx DEV/CACHE/NC.
 * Stage 2: S2AP from READ/WRITE, MemAttr DEV/OIWB/NC. Both: SH inner when CACHE else outer, XN
 * (bits 54:53) for NOEXEC, AF.
 */
export function protToPte(stage: 1 | 2, prot: number): Pte {
  let lo = 0;
  if (stage === 1) {
    lo |= PTE_NG;
    if ((prot & IOMMU_WRITE) === 0 && (prot & IOMMU_READ) !== 0) lo |= PTE_AP_RDONLY;
    if ((prot & IOMMU_PRIV) === 0) lo |= PTE_AP_UNPRIV;
    if (prot & IOMMU_MMIO) lo |= MAIR_ATTR_IDX_DEV << PTE_ATTRINDX_SHIFT;
    else if (prot & IOMMU_CACHE) lo |= MAIR_ATTR_IDX_CACHE << PTE_ATTRINDX_SHIFT;
  } else {
    if (prot & IOMMU_READ) lo |= PTE_HAP_READ;
    if (prot & IOMMU_WRITE) lo |= PTE_HAP_WRITE;
    const memattr = prot & IOMMU_MMIO ? MEMATTR_DEV : prot & IOMMU_CACHE ? MEMATTR_OIWB : MEMATTR_NC;
    lo |= memattr << PTE_MEMATTR_SHIFT;
  }
  lo |= (prot & IOMMU_CACHE ? SH_IS : SH_OS) << PTE_SH_SHIFT;
  lo |= PTE_AF;
  const hi = prot & IOMMU_NOEXEC ? PTE_XN_BOTH_HI : 0;
  return { lo: lo >>> 0, hi };
}

/**
 * Output-address field of a descriptor for an address aligned to 2^alignLg2: OA[47:alignLg2] in
 * place, plus OA[51:48] in bits [15:12] when the 64KB granule carries a 52-bit address (FEAT_LPA).
 */
export function encodeAddress(addr: number, granuleLg2: number): Pte {
  return encodeAddressInto(addr, granuleLg2, { lo: 0, hi: 0 });
}

/** encodeAddress into `out` (a caller's reused object: map paths write many descriptors). */
function encodeAddressInto(addr: number, granuleLg2: number, out: Pte): Pte {
  const top = Math.floor(addr / 4294967296);
  const lo = addr - top * 4294967296;
  if (granuleLg2 === 16 && top > 0xffff) {
    out.lo = (lo | ((top >>> 16) << 12)) >>> 0;
    out.hi = top & 0xffff;
  } else {
    out.lo = lo >>> 0;
    out.hi = top & 0xffff;
  }
  return out;
}

/**
 * Address in a table, page or block descriptor with its low `alignLg2` bits cleared. `lpa`: the 64KB
 * granule with a 52-bit output, OA[51:48] taken from bits [15:12]. The walkers inline the same
 * decode (a call per descriptor cost ~10 % of a walk); the differential test keeps them equal.
 */
export function decodeAddress(lo: number, hi: number, alignLg2: number, lpa: boolean): number {
  const addr =
    alignLg2 >= 32
      ? (hi & 0xffff & ~((1 << (alignLg2 - 32)) - 1)) * 4294967296
      : (hi & 0xffff) * 4294967296 + ((lo & ~((1 << alignLg2) - 1)) >>> 0);
  return lpa ? addr + ((lo >>> 12) & 0xf) * POW2[48] : addr;
}

/** A table descriptor: next-level table address | 0b11 (Linux `arm_lpae_install_table`). */
export function tablePte(tableAddr: number, granuleLg2: number): Pte {
  const a = encodeAddress(tableAddr, granuleLg2);
  return { lo: (a.lo | PTE_TYPE_TABLE) >>> 0, hi: a.hi };
}

/** A leaf descriptor: attributes | address | page (level 3) or block type. */
export function leafPte(attrs: Pte, addr: number, level: number, granuleLg2: number): Pte {
  return leafPteInto(attrs, addr, level, granuleLg2, { lo: 0, hi: 0 });
}

/** leafPte into `out` (a caller's reused object). */
export function leafPteInto(attrs: Pte, addr: number, level: number, granuleLg2: number, out: Pte): Pte {
  encodeAddressInto(addr, granuleLg2, out);
  const type = level === 3 ? PTE_TYPE_PAGE : PTE_TYPE_BLOCK;
  out.lo = (attrs.lo | out.lo | type) >>> 0;
  out.hi = (attrs.hi | out.hi) >>> 0;
  return out;
}

export type DescriptorKind = 'invalid' | 'table' | 'block' | 'page' | 'reserved';

/** A descriptor decoded field by field for display (CLI, browser) and tests. */
export interface DecodedDescriptor {
  kind: DescriptorKind;
  stage: 1 | 2;
  level: number;
  /** Next-table address (table) or output address (block/page); -1 otherwise. */
  address: number;
  /** Bytes mapped by a block or page. */
  size: number;
  /** Field name -> value, names as in the Arm ARM (AttrIndx, AP, SH, AF, nG, S2AP, MemAttr, ...). */
  fields: Record<string, number>;
  hex: string;
}

export function hex64(lo: number, hi: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * Decodes one descriptor as the walker would interpret it at `level`. `paMaxBits` decides whether a
 * 64KB level-1 block exists; `oaBits` whether OA[51:48] is taken from bits [15:12].
 */
export function decodeDescriptor(
  lo: number,
  hi: number,
  stage: 1 | 2,
  level: number,
  granuleLg2: number,
  paMaxBits = 48,
  oaBits = 48,
): DecodedDescriptor {
  const lpa = effectiveOutputBits(granuleLg2, oaBits) > 48;
  const base = { stage, level, hex: hex64(lo, hi) };
  if ((lo & PTE_VALID) === 0) return { ...base, kind: 'invalid', address: -1, size: 0, fields: {} };
  const isTableOrPage = (lo & 2) !== 0;
  if (level < 3 && isTableOrPage) {
    const fields: Record<string, number> = {};
    if (stage === 1) {
      fields.PXNTable = (hi >>> 27) & 1;
      fields.UXNTable = (hi >>> 28) & 1;
      fields.APTable = (hi >>> 29) & 3;
      fields.NSTable = (hi >>> 31) & 1;
    }
    const address = decodeAddress(lo, hi, granuleLg2, lpa);
    return { ...base, kind: 'table', address, size: 0, fields };
  }
  if (level === 3 ? !isTableOrPage : !blockAllowed(granuleLg2, level, paMaxBits)) {
    return { ...base, kind: 'reserved', address: -1, size: 0, fields: {} };
  }
  const shift = levelShift(granuleLg2, level);
  const fields: Record<string, number> = {};
  if (stage === 1) {
    fields.AttrIndx = (lo >>> 2) & 7;
    fields.NS = (lo >>> 5) & 1;
    fields.AP = (lo >>> 6) & 3;
    fields.nG = (lo >>> 11) & 1;
    fields.PXN = (hi >>> 21) & 1;
    fields.UXN = (hi >>> 22) & 1;
  } else {
    fields.MemAttr = (lo >>> 2) & 0xf;
    fields.S2AP = (lo >>> 6) & 3;
    fields.XN = (hi >>> 21) & 3;
  }
  fields.SH = (lo >>> 8) & 3;
  fields.AF = (lo >>> 10) & 1;
  fields.DBM = (hi >>> 19) & 1;
  fields.Contiguous = (hi >>> 20) & 1;
  fields.SW = (hi >>> 23) & 0xf;
  return {
    ...base,
    kind: level === 3 ? 'page' : 'block',
    address: decodeAddress(lo, hi, shift, lpa),
    size: POW2[shift],
    fields,
  };
}

/** Writes a descriptor (low word first, as two 32-bit stores). */
export function writePte(mem: { writeU32(a: number, v: number): void }, addr: number, pte: Pte): void {
  mem.writeU32(addr, pte.lo >>> 0);
  mem.writeU32(addr + 4, pte.hi >>> 0);
}
