/**
 * Event records: type codes (reference §4.2), the 32-byte layout (§4.1; IHI 0070 §7.3; Linux
 * EVTQ_*), one encoder filling 8 words from a fault description and a decoder for display.
 *
 * Field placement per type follows §7.3: configuration errors carry StreamID (and SSV/SubstreamID);
 * F_STE_FETCH / F_CD_FETCH / F_WALK_EABT put FetchAddr[55:3] in the last doubleword; translation
 * faults carry Stall, PnU, InD, RnW, S2, CLASS, InputAddr and (stage 2) IPA[55:12]. Everything else
 * is RES0 and written as zero. InD is 0 when RnW is 0.
 */

export const EVT_F_UUT = 0x01;
export const EVT_C_BAD_STREAMID = 0x02;
export const EVT_F_STE_FETCH = 0x03;
export const EVT_C_BAD_STE = 0x04;
export const EVT_F_BAD_ATS_TREQ = 0x05;
export const EVT_F_STREAM_DISABLED = 0x06;
export const EVT_F_TRANSL_FORBIDDEN = 0x07;
export const EVT_C_BAD_SUBSTREAMID = 0x08;
export const EVT_F_CD_FETCH = 0x09;
export const EVT_C_BAD_CD = 0x0a;
export const EVT_F_WALK_EABT = 0x0b;
export const EVT_F_TRANSLATION = 0x10;
export const EVT_F_ADDR_SIZE = 0x11;
export const EVT_F_ACCESS = 0x12;
export const EVT_F_PERMISSION = 0x13;
export const EVT_F_TLB_CONFLICT = 0x20;
export const EVT_F_CFG_CONFLICT = 0x21;
export const EVT_E_PAGE_REQUEST = 0x24;

export const EVENT_NAMES: Readonly<Record<number, string>> = {
  1: 'F_UUT',
  2: 'C_BAD_STREAMID',
  3: 'F_STE_FETCH',
  4: 'C_BAD_STE',
  5: 'F_BAD_ATS_TREQ',
  6: 'F_STREAM_DISABLED',
  7: 'F_TRANSL_FORBIDDEN',
  8: 'C_BAD_SUBSTREAMID',
  9: 'F_CD_FETCH',
  10: 'C_BAD_CD',
  11: 'F_WALK_EABT',
  16: 'F_TRANSLATION',
  17: 'F_ADDR_SIZE',
  18: 'F_ACCESS',
  19: 'F_PERMISSION',
  32: 'F_TLB_CONFLICT',
  33: 'F_CFG_CONFLICT',
  36: 'E_PAGE_REQUEST',
};

/** CLASS: what the faulting stage-2 access was doing (reference §4.1). */
export const CLASS_CD = 0;
export const CLASS_TT = 1;
export const CLASS_IN = 2;
export const CLASS_NAMES = ['CD', 'TT', 'IN'] as const;

export const EVENT_BYTES = 32;

/** A fault as the translation engine describes it; reused, never allocated per fault. */
export class FaultInfo {
  type = 0;
  sid = 0;
  ssv = false;
  ssid = 0;
  /** Transaction attributes after the STE overrides. */
  rnw = true;
  pnu = false;
  ind = false;
  s2 = false;
  cls = CLASS_IN;
  /** F_PERMISSION with CLASS TT: the table access was a read. */
  ttRead = false;
  inputAddr = 0;
  ipa = 0;
  fetchAddr = 0;
  /** The level of the translation fault (not part of the record; for diagnostics). */
  level = -1;
  /** Whether the configuration asks for the event (CD.R / STE.S2R for translation faults). */
  record = true;

  reset(sid: number, ssv: boolean, ssid: number, inputAddr: number): void {
    this.type = 0;
    this.sid = sid;
    this.ssv = ssv;
    this.ssid = ssid;
    this.s2 = false;
    this.cls = CLASS_IN;
    this.ttRead = false;
    this.inputAddr = inputAddr;
    this.ipa = 0;
    this.fetchAddr = 0;
    this.level = -1;
    this.record = true;
  }
}

/**
 * Fills `out` (8 words) with the record for `f`. `ipaFull` (SmmuQuirks.eventIpaFullAddress) writes
 * the whole IPA, bits [11:0] included, whenever the fault carries one, as QEMU does.
 */
export function encodeEvent(f: FaultInfo, out: Uint32Array, ipaFull = false): void {
  out.fill(0);
  const t = f.type;
  out[0] = t & 0xff;
  out[1] = f.sid >>> 0;
  if (t === EVT_F_STREAM_DISABLED) return;
  if (t === EVT_C_BAD_SUBSTREAMID) {
    // Always carries the SubstreamID, no SSV (§7.3.9).
    out[0] = (out[0] | ((f.ssid & 0xfffff) << 12)) >>> 0;
    return;
  }
  if (f.ssv) out[0] = (out[0] | (1 << 11) | ((f.ssid & 0xfffff) << 12)) >>> 0;
  if (t === EVT_C_BAD_STREAMID || t === EVT_C_BAD_STE || t === EVT_C_BAD_CD) return;
  if (t === EVT_F_STE_FETCH || t === EVT_F_CD_FETCH) {
    setFetchAddr(out, f.fetchAddr);
    return;
  }
  // Translation-related faults and F_WALK_EABT: transaction attributes and addresses.
  let w3 = 0;
  if (f.pnu) w3 |= 1 << 1;
  if (f.ind && f.rnw) w3 |= 1 << 2;
  if (f.rnw) w3 |= 1 << 3;
  if (f.s2) w3 |= 1 << 7;
  w3 |= (f.cls & 3) << 8;
  if (t === EVT_F_PERMISSION && f.cls === CLASS_TT && f.ttRead) w3 |= 1 << 12;
  out[3] = w3 >>> 0;
  out[4] = (f.inputAddr % 4294967296) >>> 0;
  out[5] = Math.floor(f.inputAddr / 4294967296) >>> 0;
  if (t === EVT_F_WALK_EABT) {
    setFetchAddr(out, f.fetchAddr);
  } else if (ipaFull) {
    out[6] = (f.ipa % 4294967296) >>> 0;
    out[7] = Math.floor(f.ipa / 4294967296) & 0xffffff;
  } else if (f.s2) {
    // IPA[55:12]; bits [11:0] are RES0 (Linux EVTQ_3_IPA GENMASK(51, 12)).
    out[6] = ((f.ipa % 4294967296) & 0xfffff000) >>> 0;
    out[7] = Math.floor(f.ipa / 4294967296) & 0xffffff;
  }
}

function setFetchAddr(out: Uint32Array, addr: number): void {
  // FetchAddr[55:3] in bits [247:195].
  out[6] = ((addr % 4294967296) & 0xfffffff8) >>> 0;
  out[7] = Math.floor(addr / 4294967296) & 0xffffff;
}

/** An event record decoded for display and tests. */
export interface DecodedEvent {
  type: number;
  name: string;
  sid: number;
  ssv: number;
  ssid: number;
  stall: number;
  stag: number;
  pnu: number;
  ind: number;
  rnw: number;
  s2: number;
  cls: string;
  ttRead: number;
  inputAddr: number;
  ipa: number;
  fetchAddr: number;
  /** The four doublewords as 0x%016x strings (the form the Linux driver logs). */
  words: string[];
}

export function decodeEvent(w: ArrayLike<number>): DecodedEvent {
  const hi64 = (i: number) => (w[i + 1] >>> 0) * 4294967296 + (w[i] >>> 0);
  const q3hi = (w[7] & 0xffffff) * 4294967296;
  const words: string[] = [];
  for (let i = 0; i < 8; i += 2) {
    words.push(
      `0x${(w[i + 1] >>> 0).toString(16).padStart(8, '0')}${(w[i] >>> 0).toString(16).padStart(8, '0')}`,
    );
  }
  const type = w[0] & 0xff;
  return {
    type,
    name: EVENT_NAMES[type] ?? `0x${type.toString(16)}`,
    sid: w[1] >>> 0,
    ssv: (w[0] >>> 11) & 1,
    ssid: (w[0] >>> 12) & 0xfffff,
    stall: (w[2] >>> 31) & 1,
    stag: w[2] & 0xffff,
    pnu: (w[3] >>> 1) & 1,
    ind: (w[3] >>> 2) & 1,
    rnw: (w[3] >>> 3) & 1,
    s2: (w[3] >>> 7) & 1,
    cls: CLASS_NAMES[(w[3] >>> 8) & 3] ?? 'reserved',
    ttRead: (w[3] >>> 12) & 1,
    inputAddr: hi64(4),
    ipa: q3hi + ((w[6] & 0xfffff000) >>> 0),
    fetchAddr: q3hi + ((w[6] & 0xfffffff8) >>> 0),
    words,
  };
}
