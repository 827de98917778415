/**
 * The nested (stage 1 over stage 2) walk of the common case, in one loop: what `walk()` with a fetch
 * hook computes when every descriptor is valid, every address in range and every permission granted.
 *
 * Why a second walker: the general one walks stage 1 and calls back for each table address, and the
 * caller walks stage 2 in turn, six `walk()` calls and twenty-four hook calls for the 24 reads of a
 * 4 + 4 level miss; that cost 3x the 24 reads themselves (bench `nested-miss`, DESIGN.md: "keep a
 * separate fast path only where a benchmark shows the general one costs more than 1.5x").
 *
 * It decides no fault. At the first thing the common case does not have (an invalid or reserved
 * descriptor, an address out of range or outside memory, a missing access flag, a permission not
 * granted, a stage-2 Device page under S2PTW) it returns false and the caller runs the general walk,
 * which finds the same thing and reports it exactly. Walks read memory and change nothing, so running
 * the general walk after a partial fast one is the same as running it alone. On success the results are
 * those `walk()` leaves in its WalkResult objects (checked by test/smmu/differential.test.ts).
 */

import { POW2 } from './geometry.ts';
import type { FrameMemory } from './types.ts';
import {
  ACCESS_PRIV,
  ACCESS_READ,
  FAULT_NONE,
  S1_NEED,
  S2_NEED,
  s1Permissions,
  s2Permissions,
  type WalkRegime,
  type WalkResult,
} from './walk.ts';

/**
 * Where the walk may read descriptors: stage-2 table reads must lie in [ramBase, fetchEnd) (in RAM
 * and below 2^OAS: descriptors are 8-byte aligned, so `pa < 2^OAS` is `pa + 8 <= 2^OAS`), stage-1
 * table reads (PAs from stage 2) in [ramBase, ramEnd).
 */
export interface NestedWalkBounds {
  /** First byte of RAM. */
  ramBase: number;
  /** First byte past RAM. */
  ramEnd: number;
  /** min(ramEnd, 2^OAS). */
  fetchEnd: number;
  /** STE.S2PTW: a stage-1 table fetch from a stage-2 Device page is a fault. */
  s2ptw: boolean;
  /** STE.S2FWB: MemAttr[2] = 0 is Device (else MemAttr[3:2] = 0b00). */
  s2fwb: boolean;
}

// Descriptor addresses are decoded inline, as in walk(), not by descriptors.ts decodeAddress: the
// call costs ~10% per walk (A/B of both walkers, 2026-11-25); the differential test checks the results.
const TWO_32 = 4294967296;

// A descriptor's two words come from one frame lookup where the memory has the frame (it is
// 8-byte aligned, never split across frames): half the lookups of two readU32s, the 2-D miss
// 590 -> 505 ns (bench nested-miss). Inline: a helper writing module variables cost back most of it.

/**
 * Translates IPA `ipa` through stage 2 `r` for `access`, reading every descriptor with the stage-2
 * fetch checks (in range, in RAM). Fills `out` as walk() does on success; false on anything else.
 */
function s2(
  mem: FrameMemory,
  r: WalkRegime,
  ipa: number,
  access: number,
  out: WalkResult,
  b: NestedWalkBounds,
): boolean {
  if (!(ipa < r.inputLimit)) return false;
  const inv = r.inv;
  const idxMask = r.idxMask;
  const oaLimit = r.oaLimit;
  const lpa = r.lpa;
  const ramBase = b.ramBase;
  const fetchEnd = b.fetchEnd;
  let level = r.startLevel;
  let table = r.ttb;
  for (let reads = 1; ; reads++) {
    const pa = table + (Math.floor(ipa * inv[level]) & idxMask[level]) * 8;
    if (pa < ramBase || pa + 8 > fetchEnd) return false;
    const w = mem.wordsAt(pa);
    const lo = w !== undefined ? w[(pa & 0xfff) >>> 2] : mem.readU32(pa) >>> 0;
    const hi = w !== undefined ? w[((pa & 0xfff) >>> 2) + 1] : mem.readU32(pa + 4) >>> 0;
    if ((lo & 3) === 3 && level < 3) {
      table = (lo & r.tableLoMask) >>> 0;
      if ((hi & 0xffff) !== 0 || lpa) {
        table += (hi & 0xffff) * TWO_32;
        if (lpa) table += ((lo >>> 12) & 0xf) * POW2[48];
      }
      if (!(table < oaLimit)) return false;
      level++;
      continue;
    }
    if ((lo & 1) === 0 || (level === 3 ? (lo & 2) === 0 : r.block[level] === 0)) return false;
    if ((lo & 0x400) === 0 && !r.affd) return false;
    const shift = r.shift[level];
    let base: number;
    if (shift >= 32) base = (hi & 0xffff & ~((1 << (shift - 32)) - 1)) * TWO_32;
    else base = (hi & 0xffff) * TWO_32 + ((lo & ~((1 << shift) - 1)) >>> 0);
    if (lpa) base += ((lo >>> 12) & 0xf) * POW2[48];
    if (!(base < oaLimit)) return false;
    const perms = s2Permissions(r, lo, hi);
    if ((perms & S2_NEED[access & 7]) === 0) return false;
    out.fault = FAULT_NONE;
    out.reads = reads;
    out.level = level;
    out.sizeLg2 = shift;
    out.perms = perms;
    out.descLo = lo;
    out.descHi = hi;
    out.descAddr = pa;
    out.oa = base + (ipa - Math.floor(ipa * inv[level]) * POW2[shift]);
    return true;
  }
}

/**
 * The 2-D walk of `ia` for `access` (ACCESS_* bits): stage 1 `r1` with every table address an IPA
 * translated by stage 2 `r2` (a privileged data read), then the output IPA through stage 2. On success
 * `s1Out` and `s2Out` hold what the general walks would (the final stage-2 walk in `s2Out`) and the
 * result is true; otherwise false and the caller walks with `walk()`. `s2Fetch` is scratch.
 */
export function walkNestedFast(
  mem: FrameMemory,
  r1: WalkRegime,
  r2: WalkRegime,
  ia: number,
  access: number,
  s1Out: WalkResult,
  s2Out: WalkResult,
  s2Fetch: WalkResult,
  b: NestedWalkBounds,
): boolean {
  if (!(ia < r1.inputLimit)) return false;
  const inv = r1.inv;
  const idxMask = r1.idxMask;
  const oaLimit = r1.oaLimit;
  const lpa = r1.lpa;
  const hierarchical = !r1.hpd;
  let level = r1.startLevel;
  let table = r1.ttb;
  let apTable = 0;
  let pxnTable = 0;
  let uxnTable = 0;
  for (let reads = 1; ; reads++) {
    const descAddr = table + (Math.floor(ia * inv[level]) & idxMask[level]) * 8;
    // The descriptor's IPA through stage 2, then the fetch checks on the PA (translate.ts fetchDescriptor).
    if (!s2(mem, r2, descAddr, ACCESS_READ | ACCESS_PRIV, s2Fetch, b)) return false;
    if (b.s2ptw && isDevice(s2Fetch.descLo, b.s2fwb)) return false;
    const pa = s2Fetch.oa;
    if (pa < b.ramBase || pa + 8 > b.ramEnd) return false;
    const w = mem.wordsAt(pa);
    const lo = w !== undefined ? w[(pa & 0xfff) >>> 2] : mem.readU32(pa) >>> 0;
    const hi = w !== undefined ? w[((pa & 0xfff) >>> 2) + 1] : mem.readU32(pa + 4) >>> 0;
    if ((lo & 3) === 3 && level < 3) {
      table = (lo & r1.tableLoMask) >>> 0;
      if ((hi & 0xffff) !== 0 || lpa) {
        table += (hi & 0xffff) * TWO_32;
        if (lpa) table += ((lo >>> 12) & 0xf) * POW2[48];
      }
      if (!(table < oaLimit)) return false;
      if (hierarchical) {
        apTable |= (hi >>> 29) & 3;
        pxnTable |= (hi >>> 27) & 1;
        uxnTable |= (hi >>> 28) & 1;
      }
      level++;
      continue;
    }
    if ((lo & 1) === 0 || (level === 3 ? (lo & 2) === 0 : r1.block[level] === 0)) return false;
    if ((lo & 0x400) === 0 && !r1.affd) return false;
    const shift = r1.shift[level];
    let base: number;
    if (shift >= 32) base = (hi & 0xffff & ~((1 << (shift - 32)) - 1)) * TWO_32;
    else base = (hi & 0xffff) * TWO_32 + ((lo & ~((1 << shift) - 1)) >>> 0);
    if (lpa) base += ((lo >>> 12) & 0xf) * POW2[48];
    if (!(base < oaLimit)) return false;
    const perms = s1Permissions(r1, lo, hi, apTable, pxnTable, uxnTable);
    if ((perms & S1_NEED[access & 7]) === 0) return false;
    s1Out.fault = FAULT_NONE;
    s1Out.reads = reads;
    s1Out.level = level;
    s1Out.sizeLg2 = shift;
    s1Out.perms = perms;
    s1Out.descLo = lo;
    s1Out.descHi = hi;
    s1Out.descAddr = descAddr;
    s1Out.oa = base + (ia - Math.floor(ia * inv[level]) * POW2[shift]);
    break;
  }
  return s2(mem, r2, s1Out.oa, access, s2Out, b);
}

/** Stage-2 MemAttr[3:2] == 0b00 is Device; with S2FWB, MemAttr[2] == 0 is Device (reference §1.4). */
export function isDevice(descLo: number, fwb: boolean): boolean {
  const memattr = (descLo >>> 2) & 0xf;
  return fwb ? (memattr & 4) === 0 : (memattr & 0xc) === 0;
}
