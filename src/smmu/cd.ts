/**
 * Context Descriptors and Level-1 CD descriptors: field-by-field decode and encode with the spec's
 * names (IHI 0070 §5.3-5.4, reference §2.4-2.5), and the CD validity pseudocode (§5.4.2).
 */
import { GRANULE_64K, PA_SIZE_BITS, POW2, tg0ToGranule, tg1ToGranule } from '../pgtable/index.ts';
import {
  type AddrSpec,
  decodeStructFields,
  encodeStructFields,
  type FieldSpec,
  getAddr,
  setAddr,
} from './fields.ts';
import type { SmmuFeatures } from './registers.ts';
import { WORLD_NS_EL2 } from './tlb.ts';

export const CD_BYTES = 64;

export const CD_FIELDS: readonly FieldSpec[] = [
  ['T0SZ', 0, 0, 6],
  ['TG0', 0, 6, 2],
  ['IR0', 0, 8, 2],
  ['OR0', 0, 10, 2],
  ['SH0', 0, 12, 2],
  ['EPD0', 0, 14, 1],
  ['ENDI', 0, 15, 1],
  ['T1SZ', 0, 16, 6],
  ['TG1', 0, 22, 2],
  ['IR1', 0, 24, 2],
  ['OR1', 0, 26, 2],
  ['SH1', 0, 28, 2],
  ['EPD1', 0, 30, 1],
  ['V', 0, 31, 1],
  ['IPS', 1, 0, 3],
  ['AFFD', 1, 3, 1],
  ['WXN', 1, 4, 1],
  ['UWXN', 1, 5, 1],
  ['TBI0', 1, 6, 1],
  ['TBI1', 1, 7, 1],
  ['PAN', 1, 8, 1],
  ['AA64', 1, 9, 1],
  ['HD', 1, 10, 1],
  ['HA', 1, 11, 1],
  ['S', 1, 12, 1],
  ['R', 1, 13, 1],
  ['A', 1, 14, 1],
  ['ASET', 1, 15, 1],
  ['ASID', 1, 16, 16],
  ['NSCFG0', 2, 0, 1],
  ['HAD0', 2, 1, 1],
  ['E0PD0', 2, 2, 1],
  ['HAFT', 2, 3, 1],
  ['NSCFG1', 4, 0, 1],
  ['HAD1', 4, 1, 1],
  ['E0PD1', 4, 2, 1],
  ['MAIR0', 6, 0, 32],
  ['MAIR1', 7, 0, 32],
  ['AMAIR0', 8, 0, 32],
  ['AMAIR1', 9, 0, 32],
  ['PARTID', 11, 0, 16],
  ['PMG', 11, 16, 8],
];

export interface CdFields {
  T0SZ: number;
  TG0: number;
  IR0: number;
  OR0: number;
  SH0: number;
  EPD0: number;
  ENDI: number;
  T1SZ: number;
  TG1: number;
  IR1: number;
  OR1: number;
  SH1: number;
  EPD1: number;
  V: number;
  IPS: number;
  AFFD: number;
  WXN: number;
  UWXN: number;
  TBI0: number;
  TBI1: number;
  PAN: number;
  AA64: number;
  HD: number;
  HA: number;
  S: number;
  R: number;
  A: number;
  ASET: number;
  ASID: number;
  NSCFG0: number;
  HAD0: number;
  E0PD0: number;
  HAFT: number;
  /** [119:68]: TT0 base bits [55:4]; an IPA when stage 2 translates. */
  TTB0: number;
  NSCFG1: number;
  HAD1: number;
  E0PD1: number;
  /** [183:132]: TT1 base bits [55:4]. */
  TTB1: number;
  MAIR0: number;
  MAIR1: number;
  AMAIR0: number;
  AMAIR1: number;
  PARTID: number;
  PMG: number;
}

/** The CD's table bases: TTB0 [119:68], TTB1 [183:132]. */
export const CD_ADDRS: readonly AddrSpec[] = [
  ['TTB0', 2, 4, 24],
  ['TTB1', 4, 4, 24],
];

export function decodeCd(words: ArrayLike<number>): CdFields {
  return decodeStructFields(words, CD_FIELDS, CD_ADDRS) as unknown as CdFields;
}

export function encodeCd(fields: Partial<CdFields>): Uint32Array {
  return encodeStructFields(CD_FIELDS, CD_ADDRS, fields as Record<string, number>);
}

/** L1CD: V [0], L2Ptr [55:12] (IHI 0070 §5.3). */
export interface L1CdFields {
  V: number;
  L2Ptr: number;
}

export function decodeL1Cd(lo: number, hi: number): L1CdFields {
  return { V: lo & 1, L2Ptr: getAddr([lo, hi], 0, 12, 24) };
}

export function encodeL1Cd(valid: boolean, l2ptr: number): [number, number] {
  const w = new Uint32Array(2);
  setAddr(w, 0, 12, 24, l2ptr);
  w[0] = (w[0] | (valid ? 1 : 0)) >>> 0;
  return [w[0], w[1]];
}

/** The STE properties a CD's legality depends on (IHI 0070 §5.4.1). */
export interface CdContext {
  world: number;
  s1stalld: boolean;
}

/**
 * CdIllegal of IHI 0070 §5.4.2 for a non-secure CD. Returns null for a legal CD, else the failed
 * check (C_BAD_CD). VMSAv8-32 stage-1 tables are not modelled and count as unsupported.
 */
export function cdIllegal(cd: CdFields, ctx: CdContext, f: SmmuFeatures): string | null {
  if (cd.V === 0) return 'V == 0';
  // EL2 (without E2H) has one table: EPD0 reads as 0, TTB1 is unreachable.
  const el2 = ctx.world === WORLD_NS_EL2;
  const epd0 = el2 ? 0 : cd.EPD0;
  const epd1 = el2 ? 1 : cd.EPD1;
  if (ctx.s1stalld && cd.S === 1) return 'S == 1 with STE.S1STALLD';
  if (f.termModel && cd.A === 0) return 'A == 0 with SMMU_IDR0.TERM_MODEL == 1';
  if (f.stallModel === 1 && cd.S === 1) return 'S == 1 with STALL_MODEL == 0b01';
  if (f.stallModel === 2 && cd.S === 0) return 'S == 0 with STALL_MODEL == 0b10';
  if (epd0 === 0 || epd1 === 0) {
    if (f.ttendian === 2 && cd.ENDI === 1) return 'ENDI big-endian, SMMU little-endian only';
    if (f.ttendian === 3 && cd.ENDI === 0) return 'ENDI little-endian, SMMU big-endian only';
  }
  if (cd.AA64 === 0) return 'AA64 == 0 (VMSAv8-32 stage 1 not supported)';
  if (!f.ttfAArch64) return 'VMSAv8-64 tables not supported (SMMU_IDR0.TTF)';
  if ((cd.HA === 1 || cd.HD === 1) && f.httu === 0) return 'HA/HD without HTTU';
  if (cd.HD === 1 && f.httu === 1) return 'HD without dirty-state HTTU';
  const asidTagged = ctx.world !== WORLD_NS_EL2;
  if (asidTagged && !f.asid16 && cd.ASID >>> 8 !== 0) return 'ASID[15:8] != 0 with 8-bit ASIDs';
  if (epd0 === 0 && txszInvalid(cd.T0SZ, tg0ToGranule(cd.TG0), f)) return 'T0SZ out of range';
  if (epd1 === 0 && txszInvalid(cd.T1SZ, tg1ToGranule(cd.TG1), f)) return 'T1SZ out of range';
  const ips = Math.min(PA_SIZE_BITS[cd.IPS], f.oasBits);
  if (epd0 === 0 && ttbInvalid(cd.TTB0, tg0ToGranule(cd.TG0), ips, f))
    return 'TG0 unsupported or TTB0 out of range';
  if (epd1 === 0 && ttbInvalid(cd.TTB1, tg1ToGranule(cd.TG1), ips, f))
    return 'TG1 unsupported or TTB1 out of range';
  return null;
}

/** CDTxSZInvalid (VMSAv8-64, DS = 0). */
function txszInvalid(txsz: number, granule: number, f: SmmuFeatures): boolean {
  const max = f.stt ? (granule === GRANULE_64K ? 47 : 48) : 39;
  const min = f.vax !== 0 && granule === GRANULE_64K ? 12 : 16;
  return txsz < min || txsz > max;
}

function ttbInvalid(ttb: number, granule: number, ips: number, f: SmmuFeatures): boolean {
  if (granule < 0 || !f.granules.includes(granule)) return true;
  const limit = granule === GRANULE_64K ? ips : Math.min(ips, 48);
  return !(ttb < POW2[limit]);
}
