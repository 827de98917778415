/**
 * Command queue entries: opcodes (IHI 0070 §4.1.1), the 16-byte layouts (reference §5.1; Linux
 * CMDQ_*), decode, encode for drivers, and which commands are illegal (CERROR_ILL, §4.1.3) on this
 * SMMU's features. What a command does lives in the device.
 */

import type { SmmuFeatures } from './registers.ts';
import { CERROR_ILL, CERROR_NONE } from './registers.ts';

export const CMD_PREFETCH_CONFIG = 0x01;
export const CMD_PREFETCH_ADDR = 0x02;
export const CMD_CFGI_STE = 0x03;
/** Also CMD_CFGI_ALL, with Range = 31. */
export const CMD_CFGI_STE_RANGE = 0x04;
export const CMD_CFGI_CD = 0x05;
export const CMD_CFGI_CD_ALL = 0x06;
export const CMD_CFGI_VMS_PIDM = 0x07;
export const CMD_TLBI_NH_ALL = 0x10;
export const CMD_TLBI_NH_ASID = 0x11;
export const CMD_TLBI_NH_VA = 0x12;
export const CMD_TLBI_NH_VAA = 0x13;
export const CMD_TLBI_EL3_ALL = 0x18;
export const CMD_TLBI_EL3_VA = 0x1a;
export const CMD_TLBI_EL2_ALL = 0x20;
export const CMD_TLBI_EL2_ASID = 0x21;
export const CMD_TLBI_EL2_VA = 0x22;
export const CMD_TLBI_EL2_VAA = 0x23;
export const CMD_TLBI_S12_VMALL = 0x28;
export const CMD_TLBI_S2_IPA = 0x2a;
export const CMD_TLBI_NSNH_ALL = 0x30;
export const CMD_ATC_INV = 0x40;
export const CMD_PRI_RESP = 0x41;
export const CMD_RESUME = 0x44;
export const CMD_STALL_TERM = 0x45;
export const CMD_SYNC = 0x46;

export const COMMAND_NAMES: Readonly<Record<number, string>> = {
  1: 'CMD_PREFETCH_CONFIG',
  2: 'CMD_PREFETCH_ADDR',
  3: 'CMD_CFGI_STE',
  4: 'CMD_CFGI_STE_RANGE',
  5: 'CMD_CFGI_CD',
  6: 'CMD_CFGI_CD_ALL',
  7: 'CMD_CFGI_VMS_PIDM',
  16: 'CMD_TLBI_NH_ALL',
  17: 'CMD_TLBI_NH_ASID',
  18: 'CMD_TLBI_NH_VA',
  19: 'CMD_TLBI_NH_VAA',
  24: 'CMD_TLBI_EL3_ALL',
  26: 'CMD_TLBI_EL3_VA',
  32: 'CMD_TLBI_EL2_ALL',
  33: 'CMD_TLBI_EL2_ASID',
  34: 'CMD_TLBI_EL2_VA',
  35: 'CMD_TLBI_EL2_VAA',
  40: 'CMD_TLBI_S12_VMALL',
  42: 'CMD_TLBI_S2_IPA',
  48: 'CMD_TLBI_NSNH_ALL',
  64: 'CMD_ATC_INV',
  65: 'CMD_PRI_RESP',
  68: 'CMD_RESUME',
  69: 'CMD_STALL_TERM',
  70: 'CMD_SYNC',
  80: 'CMD_TLBI_S_EL2_ALL',
  81: 'CMD_TLBI_S_EL2_ASID',
  82: 'CMD_TLBI_S_EL2_VA',
  83: 'CMD_TLBI_S_EL2_VAA',
  88: 'CMD_TLBI_S_S12_VMALL',
  90: 'CMD_TLBI_S_S2_IPA',
  96: 'CMD_TLBI_SNH_ALL',
  112: 'CMD_DPTI_ALL',
  115: 'CMD_DPTI_PA',
};

/** CMD_SYNC.CS */
export const CS_NONE = 0;
export const CS_IRQ = 1;
export const CS_SEV = 2;

export const COMMAND_BYTES = 16;

/** A command decoded field by field (fields a command does not have are 0). */
export interface Command {
  opcode: number;
  name: string;
  ssec: number;
  ssv: number;
  ssid: number;
  sid: number;
  leaf: number;
  /** CFGI_STE_RANGE: 2^(Range + 1) StreamIDs. */
  range: number;
  vmid: number;
  asid: number;
  /** TLBI VA/IPA, ATC_INV and PREFETCH_ADDR address ([11:0] zero). */
  addr: number;
  num: number;
  scale: number;
  ttl: number;
  tg: number;
  /** CMD_SYNC */
  cs: number;
  msh: number;
  msiAttr: number;
  msiData: number;
  msiAddr: number;
  /** ATC_INV Size, PREFETCH_ADDR Size. */
  size: number;
  global: number;
  /** PRI_RESP PRGIndex, Resp; RESUME STAG, Action. */
  prgIndex: number;
  resp: number;
  stag: number;
}

/** Decodes a command's four words. */
export function decodeCommand(w0: number, w1: number, w2: number, w3: number): Command {
  return decodeCommandInto(w0, w1, w2, w3, { ...NO_COMMAND });
}

/** decodeCommand into `out` (the SMMU's reused objects: no garbage per command consumed). */
export function decodeCommandInto(w0: number, w1: number, w2: number, w3: number, out: Command): Command {
  const opcode = w0 & 0xff;
  const ipaTop = opcode === CMD_TLBI_S2_IPA ? w3 & 0xffffff : w3 >>> 0;
  out.opcode = opcode;
  out.name = COMMAND_NAMES[opcode] ?? `reserved 0x${opcode.toString(16)}`;
  out.ssec = (w0 >>> 10) & 1;
  out.ssv = (w0 >>> 11) & 1;
  out.ssid = (w0 >>> 12) & 0xfffff;
  out.sid = w1 >>> 0;
  out.leaf = w2 & 1;
  out.range = w2 & 0x1f;
  out.vmid = w1 & 0xffff;
  out.asid = w1 >>> 16;
  out.addr = ipaTop * 4294967296 + ((w2 & 0xfffff000) >>> 0);
  out.num = (w0 >>> 12) & 0x1f;
  out.scale = (w0 >>> 20) & 0x3f;
  out.ttl = (w2 >>> 8) & 3;
  out.tg = (w2 >>> 10) & 3;
  out.cs = (w0 >>> 12) & 3;
  out.msh = (w0 >>> 22) & 3;
  out.msiAttr = (w0 >>> 24) & 0xf;
  out.msiData = w1 >>> 0;
  out.msiAddr = (w3 & 0xffffff) * 4294967296 + ((w2 & 0xfffffffc) >>> 0);
  out.size = w2 & 0x3f;
  out.global = (w0 >>> 9) & 1;
  out.prgIndex = w2 & 0x1ff;
  out.resp = opcode === CMD_RESUME ? (w0 >>> 12) & 3 : (w2 >>> 12) & 3;
  out.stag = w2 & 0xffff;
  return out;
}

/** Every field present, in decode order: one object shape for all decoded commands. */
const NO_COMMAND: Command = {
  opcode: 0,
  name: '',
  ssec: 0,
  ssv: 0,
  ssid: 0,
  sid: 0,
  leaf: 0,
  range: 0,
  vmid: 0,
  asid: 0,
  addr: 0,
  num: 0,
  scale: 0,
  ttl: 0,
  tg: 0,
  cs: 0,
  msh: 0,
  msiAttr: 0,
  msiData: 0,
  msiAddr: 0,
  size: 0,
  global: 0,
  prgIndex: 0,
  resp: 0,
  stag: 0,
};

/** Fields a driver sets to build a command; the rest are zero. */
export interface CommandFields {
  ssv?: number;
  ssid?: number;
  sid?: number;
  leaf?: number;
  range?: number;
  vmid?: number;
  asid?: number;
  addr?: number;
  num?: number;
  scale?: number;
  ttl?: number;
  tg?: number;
  cs?: number;
  msh?: number;
  msiAttr?: number;
  msiData?: number;
  msiAddr?: number;
  size?: number;
  global?: number;
  prgIndex?: number;
  resp?: number;
  stag?: number;
  ssec?: number;
}

/**
 * Builds the four words of a command (Linux `arm_smmu_cmdq_build_cmd` layouts), into `w` when given
 * (a driver's reused buffer: no garbage per command).
 */
export function encodeCommand(opcode: number, f: CommandFields = {}, w = new Uint32Array(4)): Uint32Array {
  let w0 = opcode & 0xff;
  w0 |= (f.ssec ?? 0) << 10;
  let w1 = 0;
  let w2 = 0;
  let w3 = 0;
  // The halves without fmod (`%`), which cost a tenth of an unmap's TLBI.
  const addr = f.addr ?? 0;
  const addrHi = Math.floor(addr / 4294967296);
  const addrLo = (addr - addrHi * 4294967296) & 0xfffff000;
  switch (opcode) {
    case CMD_PREFETCH_CONFIG:
    case CMD_PREFETCH_ADDR:
    case CMD_CFGI_STE:
    case CMD_CFGI_STE_RANGE:
    case CMD_CFGI_CD:
    case CMD_CFGI_CD_ALL:
    case CMD_ATC_INV:
    case CMD_PRI_RESP:
    case CMD_RESUME:
    case CMD_STALL_TERM:
      w0 |= ((f.ssv ?? 0) << 11) | ((f.ssid ?? 0) << 12) | ((f.global ?? 0) << 9);
      w1 = f.sid ?? 0;
      if (opcode === CMD_CFGI_STE || opcode === CMD_CFGI_CD) w2 = f.leaf ?? 0;
      if (opcode === CMD_CFGI_STE_RANGE) w2 = f.range ?? 0;
      if (opcode === CMD_ATC_INV || opcode === CMD_PREFETCH_ADDR) {
        w2 = (f.size ?? 0) | addrLo;
        w3 = addrHi;
      }
      if (opcode === CMD_PRI_RESP) w2 = (f.prgIndex ?? 0) | ((f.resp ?? 0) << 12);
      if (opcode === CMD_RESUME) {
        w0 = (opcode | ((f.resp ?? 0) << 12)) >>> 0;
        w2 = f.stag ?? 0;
      }
      break;
    case CMD_SYNC:
      w0 |= ((f.cs ?? 0) << 12) | ((f.msh ?? 0) << 22) | ((f.msiAttr ?? 0) << 24);
      w1 = f.msiData ?? 0;
      w3 = Math.floor((f.msiAddr ?? 0) / 4294967296);
      w2 = ((f.msiAddr ?? 0) - w3 * 4294967296) & 0xfffffffc;
      break;
    default:
      // TLBI commands: NUM, SCALE, VMID, ASID, Leaf, TTL, TG, address.
      w0 |= ((f.num ?? 0) << 12) | ((f.scale ?? 0) << 20);
      w1 = ((f.vmid ?? 0) & 0xffff) | ((f.asid ?? 0) << 16);
      w2 = (f.leaf ?? 0) | ((f.ttl ?? 0) << 8) | ((f.tg ?? 0) << 10) | addrLo;
      w3 = addrHi;
  }
  w[0] = w0 >>> 0;
  w[1] = w1 >>> 0;
  w[2] = w2 >>> 0;
  w[3] = w3 >>> 0;
  return w;
}

/** Opcodes that carry an SSec bit (which must be 0 on the non-secure queue). */
const HAS_SSEC = new Set([
  CMD_PREFETCH_CONFIG,
  CMD_PREFETCH_ADDR,
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_RESUME,
  CMD_STALL_TERM,
]);

/**
 * CERROR_ILL or CERROR_NONE for a command on the non-secure queue (IHI 0070 §4.1.3 and each
 * command's description). RES0 fields are not checked (an implementation may ignore them, §4.1.5).
 */
export function commandError(c: Command, f: SmmuFeatures): number {
  if (c.ssec === 1 && HAS_SSEC.has(c.opcode)) return CERROR_ILL;
  switch (c.opcode) {
    case CMD_PREFETCH_CONFIG:
    case CMD_PREFETCH_ADDR:
    case CMD_CFGI_STE:
    case CMD_CFGI_STE_RANGE:
    case CMD_TLBI_NSNH_ALL:
      return CERROR_NONE;
    case CMD_CFGI_CD:
    case CMD_CFGI_CD_ALL:
      return f.s1p ? CERROR_NONE : CERROR_ILL;
    case CMD_TLBI_NH_ALL:
    case CMD_TLBI_NH_ASID:
      return f.s1p ? CERROR_NONE : CERROR_ILL;
    case CMD_TLBI_NH_VA:
    case CMD_TLBI_NH_VAA:
      return f.s1p ? rangeError(c, f) : CERROR_ILL;
    case CMD_TLBI_EL2_ALL:
    case CMD_TLBI_EL2_ASID:
      return f.s1p && f.hyp ? CERROR_NONE : CERROR_ILL;
    case CMD_TLBI_EL2_VA:
    case CMD_TLBI_EL2_VAA:
      return f.s1p && f.hyp ? rangeError(c, f) : CERROR_ILL;
    case CMD_TLBI_S12_VMALL:
      return f.s2p ? CERROR_NONE : CERROR_ILL;
    case CMD_TLBI_S2_IPA:
      return f.s2p ? rangeError(c, f) : CERROR_ILL;
    case CMD_ATC_INV:
      return f.ats ? CERROR_NONE : CERROR_ILL;
    case CMD_PRI_RESP:
      return f.pri && c.resp !== 3 ? CERROR_NONE : CERROR_ILL;
    case CMD_RESUME:
    case CMD_STALL_TERM:
      // Illegal without the stall model (STALL_MODEL == 0b01).
      return f.stallModel === 1 ? CERROR_ILL : CERROR_NONE;
    case CMD_SYNC:
      return c.cs === 3 ? CERROR_ILL : CERROR_NONE;
    default:
      // Reserved opcodes, Secure-only and EL3 commands on the non-secure queue, VMS/DPT without support.
      return CERROR_ILL;
  }
}

/**
 * Range TLBI parameters (IHI 0070 §4.4.1.1): with RIL, TG != 0 and NUM = SCALE = TTL = 0 is
 * reserved, and TTL = 1 with a 16KB TG needs IDR5.DS.
 */
function rangeError(c: Command, f: SmmuFeatures): number {
  if (!f.ril || c.tg === 0) return CERROR_NONE;
  if (c.num === 0 && c.scale === 0 && c.ttl === 0) return CERROR_ILL;
  if (c.tg === 2 && c.ttl === 1 && !f.ds) return CERROR_ILL;
  return CERROR_NONE;
}

/**
 * The address range [start, end) a TLBI by address covers: one address (end = start + 1) without a
 * range, else (NUM + 1) * 2^SCALE granules of TG (4KB, 16KB, 64KB).
 */
export function tlbiRange(c: Command, f: SmmuFeatures): [number, number] {
  if (!f.ril || c.tg === 0) return [c.addr, c.addr + 1];
  const granuleLg2 = c.tg * 2 + 10;
  const scale = f.ds ? Math.min(c.scale, 39) : c.scale & 0x1f;
  return [c.addr, c.addr + (c.num + 1) * 2 ** (scale + granuleLg2)];
}
