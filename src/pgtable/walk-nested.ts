/**
 * The nested (stage 1 over stage 2) walk of the common case, in one loop: what `walk()` with a fetch
 * hook computes when every descriptor is valid, every address in range and every permission granted.
 *
 * Why a second walker: the general one walks stage 1 and calls back for each table address, and the
 * caller walks stage 2 in turn, six `walk()` calls and twenty-four hook calls for the 24 reads of a
 * 4 + 4 level miss; that cost 3x the 24 reads themselves (bench `nested-miss`, DESIGN.md: "keep a
 * separate fast path only where a benchmark shows the general one costs more than 1.5x"). The stage-2
 * walks are written inside the stage-1 loop, not called: a function that large is not inlined, and
 * five calls a walk cost ~10% (bench nested-miss, 2026-11-25).
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

const TWO_32 = 4294967296;
const FRAME = 4096;
/** What a stage-1 table fetch needs at stage 2: a privileged data read. */
const FETCH_NEED = S2_NEED[ACCESS_READ | ACCESS_PRIV];
/**
 * Frame memo slots: stage-1 descriptors by level (4); stage 2 of each stage-1 level's descriptor
 * address, by both levels (16); stage 2 of the output, by level (4). A walk uses each slot at most once.
 */
const SLOT_S1 = 0;
const SLOT_S2_FETCH = 4;
const SLOT_S2_OUT = 20;
const SLOTS = 24;

/**
 * Where the walk may read descriptors, and its memo of the frames it read them from.
 *
 * Stage-2 table reads must lie in [ramBase, fetchEnd) (in RAM and below 2^OAS: descriptors are 8-byte
 * aligned, so `pa < 2^OAS` is `pa + 8 <= 2^OAS`), stage-1 table reads (PAs from stage 2) in
 * [ramBase, ramEnd).
 *
 * The memo keeps, for each slot (a read's place in the walk), the last frame a descriptor came from
 * and its words (`FrameMemory.wordsAt`): walks of nearby addresses read the same tables, so most reads
 * skip the memory's frame lookup and, the frame lying wholly inside the bounds, the range check (the
 * nested miss 440 -> ~280 ns, bench nested-miss). Descriptors are still read each time; the memo holds where
 * the bytes are, never what they say, and is forgotten when the memory drops any frame (the test
 * `forgets the frames when the memory drops one`).
 */
export class NestedWalkContext {
  /** STE.S2PTW: a stage-1 table fetch from a stage-2 Device page is a fault. */
  s2ptw = false;
  /** STE.S2FWB: MemAttr[2] = 0 is Device (else MemAttr[3:2] = 0b00). */
  s2fwb = false;
  private readonly frameBase = new Float64Array(SLOTS).fill(-1);
  private readonly frameWords: (Uint32Array | undefined)[] = new Array<Uint32Array | undefined>(SLOTS).fill(
    undefined,
  );
  /** The memory the memo is of, and its `framesDropped` when the memo was last valid. */
  private mem: FrameMemory | null = null;
  private dropped = 0;
  /** Passes the walk in progress has started over (bounded by SLOTS). */
  private passes = 0;

  constructor(
    /** First byte of RAM. */
    readonly ramBase: number,
    /** First byte past RAM. */
    readonly ramEnd: number,
    /** min(ramEnd, 2^OAS). */
    readonly fetchEnd: number,
  ) {}

  /**
   * The 2-D walk of `ia` for `access` (ACCESS_* bits): stage 1 `r1` with every table address an IPA
   * translated by stage 2 `r2` (a privileged data read), then the output IPA through stage 2. On success
   * `s1Out` and `s2Out` hold what the general walks would (the final stage-2 walk in `s2Out`) and the
   * result is true; otherwise false and the caller walks with `walk()`.
   */
  walk(
    mem: FrameMemory,
    r1: WalkRegime,
    r2: WalkRegime,
    ia: number,
    access: number,
    s1Out: WalkResult,
    s2Out: WalkResult,
  ): boolean {
    if (this.mem !== mem || this.dropped !== mem.framesDropped) this.forget(mem);
    this.passes = 0;
    return this.pass(mem, r1, r2, ia, access, s1Out, s2Out);
  }

  /**
   * One pass of the walk over remembered frames. A read from a frame not remembered yet remembers it
   * and starts the walk again, so the loop makes no call that any of its values outlives: while the
   * loop called remember() and went on, the code V8 compiled once that call had run was ~10 % slower
   * for good (bench nested-miss; most likely the loop's values spilled around the call). Each slot
   * serves one read of a walk, so a walk takes at most SLOTS + 1 passes.
   */
  private pass(
    mem: FrameMemory,
    r1: WalkRegime,
    r2: WalkRegime,
    ia: number,
    access: number,
    s1Out: WalkResult,
    s2Out: WalkResult,
  ): boolean {
    if (!(ia < r1.inputLimit)) return false;
    const frameBase = this.frameBase;
    const frameWords = this.frameWords;
    const ramEnd = this.ramEnd;
    const fetchEnd = this.fetchEnd;
    const inv1 = r1.inv;
    const inv2 = r2.inv;
    const idx2 = r2.idxMask;
    const oaLimit2 = r2.oaLimit;
    const lpa2 = r2.lpa;
    const ttbOff2 = r2.ttb % FRAME;
    const ttbFrame2 = r2.ttb - ttbOff2;
    const hierarchical = !r1.hpd;
    let level1 = r1.startLevel;
    let descAddr = r1.ttb + (Math.floor(ia * inv1[level1]) & r1.idxMask[level1]) * 8;
    let apTable = 0;
    let pxnTable = 0;
    let uxnTable = 0;
    // The IPA stage 2 translates next: a stage-1 descriptor's address, at last the output.
    let ipa = descAddr;
    let slots = SLOT_S2_FETCH + 4 * level1;
    for (let reads1 = 1; ; reads1++) {
      // --- Stage 2 of `ipa`.
      if (!(ipa < r2.inputLimit)) return false;
      let level = r2.startLevel;
      // The table as the frame it starts in and its offset there: only the start table may be
      // unaligned (a concatenated or 16/64 KiB table spans frames: `o` then passes FRAME).
      let table = ttbFrame2;
      let tableOff = ttbOff2;
      let pa = 0;
      let lo = 0;
      let hi = 0;
      let reads = 1;
      for (; ; reads++) {
        const o = tableOff + (Math.floor(ipa * inv2[level]) & idx2[level]) * 8;
        const frame = table + (o & ~(FRAME - 1));
        const off = o & (FRAME - 1);
        pa = frame + off;
        const w = frameWords[slots + level];
        if (frameBase[slots + level] !== frame || w === undefined)
          return (
            this.remember(mem, slots + level, frame, pa, fetchEnd) &&
            this.pass(mem, r1, r2, ia, access, s1Out, s2Out)
          );
        lo = w[off >>> 2];
        hi = w[(off >>> 2) + 1];
        if ((lo & 3) !== 3 || level === 3) break;
        // Descriptor addresses are decoded inline, not by descriptors.ts decodeAddress: the call cost
        // ~10% per walk (A/B, 2026-11-25); the differential test checks the results.
        table = (lo & r2.tableLoMask) >>> 0;
        if ((hi & 0xffff) !== 0 || lpa2) {
          table += (hi & 0xffff) * TWO_32;
          if (lpa2) table += ((lo >>> 12) & 0xf) * POW2[48];
        }
        if (!(table < oaLimit2)) return false;
        tableOff = 0;
        level++;
      }
      if ((lo & 1) === 0 || (level === 3 ? (lo & 2) === 0 : r2.block[level] === 0)) return false;
      if ((lo & 0x400) === 0 && !r2.affd) return false;
      const shift = r2.shift[level];
      let base: number;
      if (shift >= 32) base = (hi & 0xffff & ~((1 << (shift - 32)) - 1)) * TWO_32;
      else base = (hi & 0xffff) * TWO_32 + ((lo & ~((1 << shift) - 1)) >>> 0);
      if (lpa2) base += ((lo >>> 12) & 0xf) * POW2[48];
      if (!(base < oaLimit2)) return false;
      const perms = s2Permissions(r2, lo, hi);
      const oa = base + (ipa - Math.floor(ipa * inv2[level]) * POW2[shift]);
      if (slots === SLOT_S2_OUT) {
        if ((perms & S2_NEED[access & 7]) === 0) return false;
        s2Out.fault = FAULT_NONE;
        s2Out.reads = reads;
        s2Out.level = level;
        s2Out.sizeLg2 = shift;
        s2Out.perms = perms;
        s2Out.descLo = lo;
        s2Out.descHi = hi;
        s2Out.descAddr = pa;
        s2Out.oa = oa;
        return true;
      }
      if ((perms & FETCH_NEED) === 0) return false;

      // --- The stage-1 descriptor at PA `oa`, with the fetch checks (translate.ts fetchDescriptor).
      if (this.s2ptw && isDevice(lo, this.s2fwb)) return false;
      const frame1 = oa - (oa & (FRAME - 1));
      const w1 = frameWords[SLOT_S1 + level1];
      if (frameBase[SLOT_S1 + level1] !== frame1 || w1 === undefined)
        return (
          this.remember(mem, SLOT_S1 + level1, frame1, oa, ramEnd) &&
          this.pass(mem, r1, r2, ia, access, s1Out, s2Out)
        );
      const lo1 = w1[(oa & (FRAME - 1)) >>> 2];
      const hi1 = w1[((oa & (FRAME - 1)) >>> 2) + 1];
      if ((lo1 & 3) === 3 && level1 < 3) {
        let next = (lo1 & r1.tableLoMask) >>> 0;
        if ((hi1 & 0xffff) !== 0 || r1.lpa) {
          next += (hi1 & 0xffff) * TWO_32;
          if (r1.lpa) next += ((lo1 >>> 12) & 0xf) * POW2[48];
        }
        if (!(next < r1.oaLimit)) return false;
        if (hierarchical) {
          apTable |= (hi1 >>> 29) & 3;
          pxnTable |= (hi1 >>> 27) & 1;
          uxnTable |= (hi1 >>> 28) & 1;
        }
        level1++;
        descAddr = next + (Math.floor(ia * inv1[level1]) & r1.idxMask[level1]) * 8;
        ipa = descAddr;
        slots = SLOT_S2_FETCH + 4 * level1;
        continue;
      }
      if ((lo1 & 1) === 0 || (level1 === 3 ? (lo1 & 2) === 0 : r1.block[level1] === 0)) return false;
      if ((lo1 & 0x400) === 0 && !r1.affd) return false;
      const shift1 = r1.shift[level1];
      let base1: number;
      if (shift1 >= 32) base1 = (hi1 & 0xffff & ~((1 << (shift1 - 32)) - 1)) * TWO_32;
      else base1 = (hi1 & 0xffff) * TWO_32 + ((lo1 & ~((1 << shift1) - 1)) >>> 0);
      if (r1.lpa) base1 += ((lo1 >>> 12) & 0xf) * POW2[48];
      if (!(base1 < r1.oaLimit)) return false;
      const perms1 = s1Permissions(r1, lo1, hi1, apTable, pxnTable, uxnTable);
      if ((perms1 & S1_NEED[access & 7]) === 0) return false;
      s1Out.fault = FAULT_NONE;
      s1Out.reads = reads1;
      s1Out.level = level1;
      s1Out.sizeLg2 = shift1;
      s1Out.perms = perms1;
      s1Out.descLo = lo1;
      s1Out.descHi = hi1;
      s1Out.descAddr = descAddr;
      s1Out.oa = base1 + (ia - Math.floor(ia * inv1[level1]) * POW2[shift1]);
      ipa = s1Out.oa;
      slots = SLOT_S2_OUT;
    }
  }

  /**
   * Remembers in `slot` the words of `frame`, for a descriptor at `pa`, when the whole frame is
   * readable: inside [ramBase, end), so a later read from it needs no range check. False when it is not
   * (a fetch outside the bounds, which the general walk reports; an untouched frame, whose zeros are an
   * invalid descriptor; external memory) or the walk has made SLOTS passes: the general walk then.
   */
  private remember(mem: FrameMemory, slot: number, frame: number, pa: number, end: number): boolean {
    if (pa < this.ramBase || pa + 8 > end || ++this.passes > SLOTS) return false;
    const w = mem.wordsAt(frame);
    const whole = w !== undefined && frame >= this.ramBase && frame + FRAME <= end;
    this.frameBase[slot] = whole ? frame : -1;
    this.frameWords[slot] = whole ? w : undefined;
    return whole;
  }

  private forget(mem: FrameMemory): void {
    this.frameBase.fill(-1);
    this.frameWords.fill(undefined);
    this.mem = mem;
    this.dropped = mem.framesDropped;
  }
}

/** Stage-2 MemAttr[3:2] == 0b00 is Device; with S2FWB, MemAttr[2] == 0 is Device (reference §1.4). */
export function isDevice(descLo: number, fwb: boolean): boolean {
  const memattr = (descLo >>> 2) & 0xf;
  return fwb ? (memattr & 4) === 0 : (memattr & 0xc) === 0;
}
