/**
 * The hardware table walker: one function for both stages and every use (SMMU fast path, per-read
 * trace for the CLI and the browser's step view, tests).
 *
 * It follows the Arm ARM walk (AArch64.S1Walk / S2Walk, reference §1): input range check, one
 * descriptor per level (a caller hook may translate or refuse each descriptor address first: the
 * SMMU uses it to send stage-1 table reads through stage 2 and to report external aborts), table
 * address-size checks, then at the leaf: output address size, access flag, permissions, in that
 * order. Without a trace it allocates nothing.
 */
import { blockAllowed, effectiveOutputBits, INV_POW2, levelShift, POW2 } from './geometry.ts';
import { frameMemoryOf, type PgtableMemory } from './types.ts';

export const FAULT_NONE = 0;
export const FAULT_TRANSLATION = 1;
export const FAULT_ADDR_SIZE = 2;
export const FAULT_ACCESS = 3;
export const FAULT_PERMISSION = 4;
/** The fetch hook refused a descriptor address (nested stage-2 fault or external abort). */
export const FAULT_FETCH = 5;

export const FAULT_NAMES = [
  'none',
  'translation',
  'address size',
  'access flag',
  'permission',
  'fetch',
] as const;

/**
 * Access attributes of the transaction being translated. Reads are 0; instruction applies only to
 * reads (the SMMU treats every write as data, IHI 0070 §13.1.2). `ACCESS_PROBE` skips the access-flag
 * and permission checks (used by software walks such as `iova_to_phys`).
 */
export const ACCESS_READ = 0;
export const ACCESS_WRITE = 1;
export const ACCESS_INSTR = 2;
export const ACCESS_PRIV = 4;
export const ACCESS_PROBE = -1;

/** Stage-1 permission bits computed at the leaf (privileged / unprivileged read, write, execute). */
export const S1_PR = 1;
export const S1_PW = 2;
export const S1_PX = 4;
export const S1_UR = 8;
export const S1_UW = 16;
export const S1_UX = 32;
export const S1_ALL = 63;
/** Stage-2 permission bits: S2AP read, write; execute at EL1 (privileged) and EL0 (FEAT_XNX). */
export const S2_R = 1;
export const S2_W = 2;
export const S2_XP = 4;
export const S2_XU = 8;
export const S2_ALL = 15;

/** Permission bit an access needs at stage 1 (index: access 0..7). */
export const S1_NEED: readonly number[] = [S1_UR, S1_UW, S1_UX, S1_UW, S1_PR, S1_PW, S1_PX, S1_PW];
/** Permission bit an access needs at stage 2 (index: access 0..7). */
export const S2_NEED: readonly number[] = [S2_R, S2_W, S2_XU, S2_W, S2_R, S2_W, S2_XP, S2_W];

export interface WalkRegimeParams {
  stage: 1 | 2;
  granuleLg2: number;
  /** Input address size: 64 - TxSZ. */
  inputBits: number;
  /** Start level (stage 1: from the input size; stage 2: from SL0). */
  startLevel: number;
  /** Start-table base (stage 2: the first of the concatenated tables). Aligned down here. */
  ttb: number;
  /** Effective output size: min(IPS or S2PS, OAS) before the 48-bit cap for 4KB/16KB. */
  oaBits: number;
  /** Implemented PA size (SMMU_IDR5.OAS): decides 64KB level-1 blocks. */
  paMaxBits?: number;
  /** CD.AFFD / STE.S2AFFD: AF = 0 never faults. */
  affd?: boolean;
  /** Stage 1: CD.HADx, hierarchical attributes (APTable, PXNTable, UXNTable) ignored. */
  hpd?: boolean;
  /** Stage 1: EL2 regime (no E2H): AP[1] treated as 1, bit 54 is XN, no PXN. */
  el2?: boolean;
  /** Stage 1: CD.WXN and CD.PAN. */
  wxn?: boolean;
  pan?: boolean;
  /** Stage 2: FEAT_XNX (SMMU_IDR3.XNX), XN[1:0] distinguishes EL1 and EL0 execution. */
  xnx?: boolean;
}

/** A translation regime prepared for the walker: per-level shifts, index masks and limits. */
export class WalkRegime {
  readonly stage: 1 | 2;
  readonly granuleLg2: number;
  readonly inputBits: number;
  readonly startLevel: number;
  readonly ttb: number;
  readonly oaBits: number;
  readonly paMaxBits: number;
  readonly affd: boolean;
  readonly hpd: boolean;
  readonly el2: boolean;
  readonly wxn: boolean;
  readonly pan: boolean;
  readonly xnx: boolean;
  /** 2^inputBits and 2^oaBits (effective, with the 48-bit cap unless 64KB + 52-bit). */
  readonly inputLimit: number;
  readonly oaLimit: number;
  /** OA[51:48] in descriptor bits [15:12]. */
  readonly lpa: boolean;
  /** Per level: first address bit, 2^-shift, index mask, block allowed. */
  readonly shift: Int32Array;
  readonly inv: Float64Array;
  readonly idxMask: Int32Array;
  readonly block: Uint8Array;
  /** Low-word mask of a table address (bits [31:granule]). */
  readonly tableLoMask: number;

  constructor(p: WalkRegimeParams) {
    this.stage = p.stage;
    this.granuleLg2 = p.granuleLg2;
    this.inputBits = p.inputBits;
    this.startLevel = p.startLevel;
    this.paMaxBits = p.paMaxBits ?? 48;
    this.affd = p.affd ?? false;
    this.hpd = p.hpd ?? false;
    this.el2 = p.el2 ?? false;
    this.wxn = p.wxn ?? false;
    this.pan = p.pan ?? false;
    this.xnx = p.xnx ?? false;
    const oa = effectiveOutputBits(p.granuleLg2, p.oaBits);
    this.oaBits = oa;
    this.oaLimit = POW2[oa];
    this.lpa = oa > 48;
    this.inputLimit = POW2[Math.min(p.inputBits, 64)];
    this.shift = new Int32Array(4);
    this.inv = new Float64Array(4);
    this.idxMask = new Int32Array(4);
    this.block = new Uint8Array(4);
    const stride = p.granuleLg2 - 3;
    for (let l = 0; l < 4; l++) {
      const s = levelShift(p.granuleLg2, l);
      this.shift[l] = s;
      this.inv[l] = INV_POW2[s];
      const bits = l === p.startLevel ? Math.max(p.inputBits - s, 0) : stride;
      this.idxMask[l] = bits >= 31 ? 0x7fffffff : (1 << bits) - 1;
      this.block[l] = blockAllowed(p.granuleLg2, l, this.paMaxBits) ? 1 : 0;
    }
    // The SMMU aligns TTB to the start table size (IHI 0070 CD.TTB0, STE.S2TTB); a table of fewer than
    // eight entries is aligned to 64 bytes (Arm ARM VMSAv8-64 TTBR alignment).
    const startBytesLg2 = Math.max(p.inputBits - levelShift(p.granuleLg2, p.startLevel) + 3, 6);
    this.ttb = Math.floor(p.ttb * INV_POW2[startBytesLg2]) * POW2[startBytesLg2];
    this.tableLoMask = ~((1 << p.granuleLg2) - 1);
  }
}

/** Result of one walk, reused by the caller: no allocation per walk. */
export class WalkResult {
  fault = FAULT_NONE;
  /** Level of the fault, or of the leaf on success. */
  level = 0;
  /** Output address for the input (leaf base + offset). */
  oa = 0;
  /** Log2 of the bytes mapped by the leaf. */
  sizeLg2 = 0;
  /** S1_* or S2_* permission bits of the leaf, hierarchical bits applied. */
  perms = 0;
  /** The leaf (or faulting) descriptor. */
  descLo = 0;
  descHi = 0;
  /** Address of the last descriptor in the table's address space (an IPA in a nested stage 1). */
  descAddr = 0;
  /** Descriptor reads performed. */
  reads = 0;
}

/**
 * Lets the caller translate or check each descriptor address before the read (nested walks, external
 * aborts). Returns the physical address to read, or a negative number to stop the walk with
 * FAULT_FETCH (the hook keeps its own record of why).
 */
export interface WalkFetchHook {
  fetchDescriptor(addr: number, stage: 1 | 2, level: number): number;
}

/** Receives every descriptor read, in order. */
export interface WalkTrace {
  descriptor(
    stage: 1 | 2,
    level: number,
    index: number,
    /** The descriptor's own address (an IPA for nested stage-1 reads). */
    descAddr: number,
    pa: number,
    lo: number,
    hi: number,
  ): void;
}

/**
 * Walks `regime` for input address `ia` with `access` (ACCESS_* bits, or ACCESS_PROBE), filling
 * `out`. Returns `out.fault`.
 */
export function walk(
  mem: PgtableMemory,
  regime: WalkRegime,
  ia: number,
  access: number,
  out: WalkResult,
  hook: WalkFetchHook | null = null,
  trace: WalkTrace | null = null,
): number {
  out.perms = 0;
  // Input beyond TxSZ: translation fault at level 0 (Arm ARM VAIsOutOfRange / IPAIsOutOfRange).
  if (!(ia < regime.inputLimit)) {
    out.reads = 0;
    return fail(out, FAULT_TRANSLATION, 0);
  }
  const stage = regime.stage;
  const inv = regime.inv;
  const idxMask = regime.idxMask;
  const oaLimit = regime.oaLimit;
  const tableLoMask = regime.tableLoMask;
  const lpa = regime.lpa;
  let level = regime.startLevel;
  let table = regime.ttb;
  let apTable = 0;
  let pxnTable = 0;
  let uxnTable = 0;
  let reads = 0;
  const hierarchical = stage === 1 && !regime.hpd;
  // One frame lookup per descriptor where the memory allows it (walk-nested.ts says why).
  const frames = frameMemoryOf(mem);
  for (;;) {
    const index = Math.floor(ia * inv[level]) & idxMask[level];
    const descAddr = table + index * 8;
    let pa = descAddr;
    if (hook !== null) {
      pa = hook.fetchDescriptor(descAddr, stage, level);
      if (pa < 0) {
        out.reads = reads;
        out.descAddr = descAddr;
        return fail(out, FAULT_FETCH, level);
      }
    }
    const w = frames !== null ? frames.wordsAt(pa) : undefined;
    const lo = w !== undefined ? w[(pa & 0xfff) >>> 2] : mem.readU32(pa) >>> 0;
    const hi = w !== undefined ? w[((pa & 0xfff) >>> 2) + 1] : mem.readU32(pa + 4) >>> 0;
    reads++;
    if (trace !== null) trace.descriptor(stage, level, index, descAddr, pa, lo, hi);
    if ((lo & 3) === 3 && level < 3) {
      // Table descriptor: next-level address, checked against the output size (AArch64.S1Walk).
      // Decoded inline, not by descriptors.ts decodeAddress: the call costs ~10% per walk (measured).
      table = (lo & tableLoMask) >>> 0;
      const top = hi & 0xffff;
      if (top !== 0 || lpa) {
        table += top * 4294967296;
        if (lpa) table += ((lo >>> 12) & 0xf) * POW2[48];
        if (!(table < oaLimit)) return leave(out, FAULT_ADDR_SIZE, level, reads, descAddr, lo, hi);
      } else if (!(table < oaLimit)) {
        return leave(out, FAULT_ADDR_SIZE, level, reads, descAddr, lo, hi);
      }
      if (hierarchical) {
        apTable |= (hi >>> 29) & 3;
        pxnTable |= (hi >>> 27) & 1;
        uxnTable |= (hi >>> 28) & 1;
      }
      level++;
      continue;
    }
    out.reads = reads;
    out.descAddr = descAddr;
    out.descLo = lo;
    out.descHi = hi;
    if ((lo & 1) === 0) return fail(out, FAULT_TRANSLATION, level);
    // Leaf: a page at level 3, a block where the granule allows one; anything else is reserved.
    if (level === 3 ? (lo & 2) === 0 : regime.block[level] === 0) return fail(out, FAULT_TRANSLATION, level);
    const shift = regime.shift[level];
    let base: number;
    if (shift >= 32) base = (hi & 0xffff & ~((1 << (shift - 32)) - 1)) * 4294967296;
    else base = (hi & 0xffff) * 4294967296 + ((lo & ~((1 << shift) - 1)) >>> 0);
    if (lpa) base += ((lo >>> 12) & 0xf) * POW2[48];
    out.level = level;
    out.sizeLg2 = shift;
    // Leaf checks in the Arm ARM order: output address size, then access flag, then permission.
    if (!(base < oaLimit)) return fail(out, FAULT_ADDR_SIZE, level);
    out.oa = base + (ia - Math.floor(ia * inv[level]) * POW2[shift]);
    const perms =
      stage === 1
        ? s1Permissions(regime, lo, hi, apTable, pxnTable, uxnTable)
        : s2Permissions(regime, lo, hi);
    out.perms = perms;
    if (access < 0) {
      out.fault = FAULT_NONE;
      return FAULT_NONE;
    }
    if ((lo & 0x400) === 0 && !regime.affd) return fail(out, FAULT_ACCESS, level);
    const need = stage === 1 ? S1_NEED[access & 7] : S2_NEED[access & 7];
    if ((perms & need) === 0) return fail(out, FAULT_PERMISSION, level);
    out.fault = FAULT_NONE;
    return FAULT_NONE;
  }
}

/** Stops the walk at a table descriptor, recording where. */
function leave(
  out: WalkResult,
  fault: number,
  level: number,
  reads: number,
  descAddr: number,
  lo: number,
  hi: number,
) {
  out.reads = reads;
  out.descAddr = descAddr;
  out.descLo = lo;
  out.descHi = hi;
  return fail(out, fault, level);
}

function fail(out: WalkResult, fault: number, level: number): number {
  out.fault = fault;
  out.level = level;
  return fault;
}

/**
 * Stage-1 direct permissions (Arm ARM AArch64.S1DirectBasePermissions): AP[2:1] at the leaf, then
 * APTable (bit 61 removes unprivileged access, bit 62 removes write), PXN/UXN with their table bits,
 * privileged execute denied where unprivileged may write, WXN, and PAN for privileged data.
 */
export function s1Permissions(
  r: WalkRegime,
  lo: number,
  hi: number,
  apTable: number,
  pxnTable: number,
  uxnTable: number,
): number {
  const ap2 = (lo >>> 7) & 1;
  if (r.el2) {
    // EL2 has no unprivileged accesses: AP[1] reads as 1 and only XN (bit 54) applies.
    const w = ap2 === 0 && (apTable & 2) === 0 ? 1 : 0;
    let x = ((hi >>> 22) & 1) === 0 && uxnTable === 0 ? 1 : 0;
    if (r.wxn && w) x = 0;
    return S1_PR | S1_UR | (w ? S1_PW | S1_UW : 0) | (x ? S1_PX | S1_UX : 0);
  }
  const ap1 = (lo >>> 6) & 1;
  let pr = 1;
  let pw = ap2 === 0 ? 1 : 0;
  let ur = ap1;
  let uw = ap1 & (ap2 ^ 1);
  if (apTable & 1) {
    ur = 0;
    uw = 0;
  }
  if (apTable & 2) {
    pw = 0;
    uw = 0;
  }
  let px = ((hi >>> 21) & 1) === 0 && pxnTable === 0 && uw === 0 ? 1 : 0;
  let ux = ((hi >>> 22) & 1) === 0 && uxnTable === 0 ? 1 : 0;
  if (r.wxn) {
    if (pw) px = 0;
    if (uw) ux = 0;
  }
  if (r.pan && (ur | uw) !== 0) {
    pr = 0;
    pw = 0;
  }
  return pr | (pw << 1) | (px << 2) | (ur << 3) | (uw << 4) | (ux << 5);
}

/** Stage-2 permissions: S2AP[0] read, S2AP[1] write; XN[1:0] (bits 54:53) with FEAT_XNX, else bit 54. */
export function s2Permissions(r: WalkRegime, lo: number, hi: number): number {
  let perms = (lo >>> 6) & 3;
  if (r.xnx) {
    const xn = (hi >>> 21) & 3;
    if (xn === 0 || xn === 3) perms |= S2_XP;
    if (xn === 0 || xn === 1) perms |= S2_XU;
  } else if (((hi >>> 22) & 1) === 0) {
    perms |= S2_XP | S2_XU;
  }
  return perms;
}

/** One recorded descriptor read. */
export interface TraceRead {
  stage: 1 | 2;
  level: number;
  index: number;
  /** Address in the table's own space (IPA for a nested stage-1 table). */
  tableAddr: number;
  /** Physical address read. */
  pa: number;
  lo: number;
  hi: number;
}

/** A trace sink that keeps every read (allocates; only for tracing). */
export class TraceRecorder implements WalkTrace {
  readonly reads: TraceRead[] = [];
  descriptor(
    stage: 1 | 2,
    level: number,
    index: number,
    tableAddr: number,
    pa: number,
    lo: number,
    hi: number,
  ): void {
    this.reads.push({ stage, level, index, tableAddr, pa, lo, hi });
  }
}
