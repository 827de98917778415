/**
 * Stream Table Entries and Level-1 Stream Table Descriptors: field-by-field decode and encode with the
 * spec's names (IHI 0070 §5.1-5.2, reference §2.1-2.3), and the ILLEGAL checks of the STE validity
 * pseudocode (§5.2.2) for a non-secure stream on this SMMU's features.
 */
import {
  GRANULE_64K,
  PA_SIZE_BITS,
  POW2,
  s2InconsistentSl,
  s2InvalidSl0,
  s2StartLevel,
  tg0ToGranule,
} from '../pgtable/index.ts';
import {
  type AddrSpec,
  decodeStructFields,
  encodeStructFields,
  type FieldSpec,
  getAddr,
  setAddr,
} from './fields.ts';
import type { SmmuFeatures } from './registers.ts';

export const STE_BYTES = 64;

/** STE.Config (reference §2.3; Linux STRTAB_STE_0_CFG_*). */
export const STE_CFG_ABORT = 0;
export const STE_CFG_BYPASS = 4;
export const STE_CFG_S1_TRANS = 5;
export const STE_CFG_S2_TRANS = 6;
export const STE_CFG_NESTED = 7;

/** STE.S1DSS */
export const S1DSS_TERMINATE = 0;
export const S1DSS_BYPASS = 1;
export const S1DSS_SSID0 = 2;

/** STE.S1Fmt */
export const S1FMT_LINEAR = 0;
export const S1FMT_4K_L2 = 1;
export const S1FMT_64K_L2 = 2;

/** Single-word STE fields: [name, word, lsb, width]. */
export const STE_FIELDS: readonly FieldSpec[] = [
  ['V', 0, 0, 1],
  ['Config', 0, 1, 3],
  ['S1Fmt', 0, 4, 2],
  ['S1CDMax', 1, 27, 5],
  ['S1DSS', 2, 0, 2],
  ['S1CIR', 2, 2, 2],
  ['S1COR', 2, 4, 2],
  ['S1CSH', 2, 6, 2],
  ['DRE', 2, 12, 1],
  ['CONT', 2, 13, 4],
  ['DCP', 2, 17, 1],
  ['PPAR', 2, 18, 1],
  ['MEV', 2, 19, 1],
  ['S1PIE', 2, 24, 1],
  ['S2FWB', 2, 25, 1],
  ['S1MPAM', 2, 26, 1],
  ['S1STALLD', 2, 27, 1],
  ['EATS', 2, 28, 2],
  ['STRW', 2, 30, 2],
  ['MemAttr', 3, 0, 4],
  ['MTCFG', 3, 4, 1],
  ['ALLOCCFG', 3, 5, 4],
  ['SHCFG', 3, 12, 2],
  ['NSCFG', 3, 14, 2],
  ['PRIVCFG', 3, 16, 2],
  ['INSTCFG', 3, 18, 2],
  ['S2VMID', 4, 0, 16],
  ['S2T0SZ', 5, 0, 6],
  ['S2SL0', 5, 6, 2],
  ['S2IR0', 5, 8, 2],
  ['S2OR0', 5, 10, 2],
  ['S2SH0', 5, 12, 2],
  ['S2TG', 5, 14, 2],
  ['S2PS', 5, 16, 3],
  ['S2AA64', 5, 19, 1],
  ['S2ENDI', 5, 20, 1],
  ['S2AFFD', 5, 21, 1],
  ['S2PTW', 5, 22, 1],
  ['S2HD', 5, 23, 1],
  ['S2HA', 5, 24, 1],
  ['S2S', 5, 25, 1],
  ['S2R', 5, 26, 1],
  ['S2HAFT', 5, 27, 1],
  ['S2NSW', 6, 0, 1],
  ['S2NSA', 6, 1, 1],
  ['S2SL0_2', 6, 2, 1],
  ['S2DS', 6, 3, 1],
];

/** An STE decoded field by field; addresses are numbers. */
export interface SteFields {
  V: number;
  Config: number;
  S1Fmt: number;
  /** [55:6]: an IPA when stage 2 translates. */
  S1ContextPtr: number;
  S1CDMax: number;
  S1DSS: number;
  S1CIR: number;
  S1COR: number;
  S1CSH: number;
  DRE: number;
  CONT: number;
  DCP: number;
  PPAR: number;
  MEV: number;
  S1PIE: number;
  S2FWB: number;
  S1MPAM: number;
  S1STALLD: number;
  EATS: number;
  STRW: number;
  MemAttr: number;
  MTCFG: number;
  ALLOCCFG: number;
  SHCFG: number;
  NSCFG: number;
  PRIVCFG: number;
  INSTCFG: number;
  S2VMID: number;
  S2T0SZ: number;
  S2SL0: number;
  S2IR0: number;
  S2OR0: number;
  S2SH0: number;
  S2TG: number;
  S2PS: number;
  S2AA64: number;
  S2ENDI: number;
  S2AFFD: number;
  S2PTW: number;
  S2HD: number;
  S2HA: number;
  S2S: number;
  S2R: number;
  S2HAFT: number;
  S2NSW: number;
  S2NSA: number;
  S2SL0_2: number;
  S2DS: number;
  /** [247:196]: stage-2 table base, bits [55:4]. */
  S2TTB: number;
}

/** The STE's addresses: S1ContextPtr [55:6], S2TTB [247:196]. */
export const STE_ADDRS: readonly AddrSpec[] = [
  ['S1ContextPtr', 0, 6, 24],
  ['S2TTB', 6, 4, 24],
];

export function decodeSte(words: ArrayLike<number>): SteFields {
  return decodeStructFields(words, STE_FIELDS, STE_ADDRS) as unknown as SteFields;
}

/** Builds the 16 words of an STE from fields (unnamed bits zero). */
export function encodeSte(fields: Partial<SteFields>): Uint32Array {
  return encodeStructFields(STE_FIELDS, STE_ADDRS, fields as Record<string, number>);
}

/** L1STD: Span [4:0], L2Ptr [55:6] (IHI 0070 §5.1). */
export interface L1StdFields {
  Span: number;
  L2Ptr: number;
}

export function decodeL1Std(lo: number, hi: number): L1StdFields {
  return { Span: lo & 0x1f, L2Ptr: getAddr([lo, hi], 0, 6, 24) };
}

export function encodeL1Std(span: number, l2ptr: number): [number, number] {
  const w = new Uint32Array(2);
  setAddr(w, 0, 6, 24, l2ptr);
  w[0] = (w[0] | (span & 0x1f)) >>> 0;
  return [w[0], w[1]];
}

/**
 * The STE validity pseudocode of IHI 0070 §5.2.2 for a non-secure STE. Returns null for a legal STE,
 * else the name of the failed check (the transaction is terminated and C_BAD_STE recorded).
 * VMSAv8-32 stage-2 tables are not modelled and count as unsupported.
 */
export function steIllegal(ste: SteFields, f: SmmuFeatures): string | null {
  if (ste.V === 0) return 'V == 0';
  const cfg = ste.Config;
  if ((cfg & 4) === 0) return null; // abort configurations are valid
  const s1 = (cfg & 1) !== 0;
  const s2 = (cfg & 2) !== 0;
  if (s1 && !f.s1p) return 'Config enables stage 1, SMMU_IDR0.S1P == 0';
  if (s2 && !f.s2p) return 'Config enables stage 2, SMMU_IDR0.S2P == 0';
  const strwUsed = f.s1p && f.hyp && cfg === STE_CFG_S1_TRANS;
  if (f.ats && cfg !== STE_CFG_BYPASS) {
    if (ste.EATS === 2 && (cfg !== STE_CFG_NESTED || ste.S2S === 1))
      return 'EATS split-stage without nesting';
    if (ste.EATS === 1 && ste.S2S === 1 && s2) return 'EATS full ATS with S2S';
  }
  if (strwUsed && (ste.STRW & 1) === 1) return 'STRW reserved';
  if (s1) {
    if (ste.S1STALLD === 1 && f.stallModel !== 0) return 'S1STALLD with STALL_MODEL != 0b00';
    if (f.ssidSize !== 0 && ste.S1CDMax > f.ssidSize) return 'S1CDMax > SMMU_IDR1.SSIDSIZE';
    if (f.ssidSize !== 0 && ste.S1CDMax !== 0 && !f.cd2l && (ste.S1Fmt === 1 || ste.S1Fmt === 2)) {
      return 'two-level CD table without SMMU_IDR0.CD2L';
    }
    // S1ContextPtr is an IPA checked against the IAS with stage 2, else a PA checked against the OAS.
    if (!(ste.S1ContextPtr < POW2[s2 ? f.iasBits : f.oasBits])) return 'S1ContextPtr out of range';
  }
  if (s2) {
    if (ste.S2S === 1 && f.stallModel === 1) return 'S2S with STALL_MODEL == 0b01';
    if (ste.S2S === 0 && f.stallModel === 2) return 'S2S == 0 with STALL_MODEL == 0b10';
    if (ste.S2AA64 === 0) return 'S2AA64 == 0 (VMSAv8-32 stage 2 not supported)';
    if (!f.ttfAArch64) return 'VMSAv8-64 tables not supported (SMMU_IDR0.TTF)';
    if ((ste.S2HA === 1 || ste.S2HD === 1) && f.httu === 0) return 'S2HA/S2HD without HTTU';
    if (ste.S2HD === 1 && f.httu === 1) return 'S2HD without dirty-state HTTU';
    const granule = tg0ToGranule(ste.S2TG);
    if (granule < 0 || !f.granules.includes(granule)) return 'S2TG granule not supported';
    const ps = Math.min(PA_SIZE_BITS[ste.S2PS], f.oasBits);
    const ttbLimit = granule === GRANULE_64K ? ps : Math.min(ps, 48);
    if (!(ste.S2TTB < POW2[ttbLimit])) return 'S2TTB out of range of S2PS';
    if (s2T0szInvalid(ste.S2T0SZ, granule, f)) return 'S2T0SZ out of range';
    const start = s2StartLevel(granule, ste.S2SL0);
    if (s2InvalidSl0(granule, ste.S2SL0, f.oasBits) || s2InconsistentSl(granule, start, 64 - ste.S2T0SZ)) {
      return 'S2SL0 inconsistent with S2T0SZ and S2TG';
    }
    if (f.ttendian === 2 && ste.S2ENDI === 1) return 'S2ENDI big-endian, SMMU little-endian only';
    if (f.ttendian === 3 && ste.S2ENDI === 0) return 'S2ENDI little-endian, SMMU big-endian only';
  }
  const s2vmidIgnored = !f.s2p || cfg === STE_CFG_BYPASS || (ste.STRW !== 0 && strwUsed);
  if (!s2vmidIgnored && !f.vmid16 && ste.S2VMID >>> 8 !== 0) return 'S2VMID[15:8] != 0 with 8-bit VMIDs';
  return null;
}

/** STES2T0SZInvalid of IHI 0070 §5.2.2 (SMMUv3.1 and later: out of range is ILLEGAL). */
export function s2T0szInvalid(t0sz: number, granule: number, f: SmmuFeatures): boolean {
  const max = f.stt ? (granule === GRANULE_64K ? 47 : 48) : 39;
  let min: number;
  if (f.minor === 0) min = 64 - f.iasBits;
  else if (granule === GRANULE_64K) min = Math.max(12, 64 - f.iasBits);
  else min = Math.max(16, 64 - f.iasBits);
  return t0sz < min || t0sz > max;
}
