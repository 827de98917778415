/**
 * The nested fast walk (pgtable/walk-nested.ts, NestedWalkContext.walk) against the general walks:
 * where it succeeds it must give what the translator's general path gives (output, IPA, leaf size,
 * permissions, leaf level and descriptor), and wherever the general path faults it must decline (it
 * decides no fault). Its frame memo must never read stale words.
 */

import { describe, expect, it } from 'vitest';
import {
  ACCESS_INSTR,
  ACCESS_PRIV,
  ACCESS_READ,
  ACCESS_WRITE,
  IOMMU_CACHE,
  IOMMU_READ,
  NestedWalkContext,
  WalkResult,
} from '../../src/pgtable/index.ts';
import { SmmuTrace } from '../../src/smmu/index.ts';
import { GUEST_IPA, GUEST_PA, nestedSetup, RW } from '../smmu/driver.ts';

const VA = 0x1000_0000;

function setup() {
  const w = nestedSetup({ preset: 'qemu-virt' });
  w.s1.map(VA, GUEST_IPA + 0x200000, 0x8000, RW);
  // A read-only page, a 2 MiB stage-1 block, and a stage-1 page whose IPA stage 2 does not map.
  w.s1.map(VA + 0x10000, GUEST_IPA + 0x208000, 0x1000, IOMMU_READ | IOMMU_CACHE);
  w.s1.map(0x4000_0000, GUEST_IPA + 0x200000, 0x20_0000, RW);
  w.s1.map(VA + 0x20000, 0x7000_0000, 0x1000, RW);
  w.smmu.setCaching({ tlb: false });
  w.smmu.translate(w.sid, -1, VA, ACCESS_READ); // fetch and cache the STE and CD
  const t = w.smmu.translator;
  const ste = t.cache.ste(w.sid)!;
  const r1 = ste.cds.get(0)!.regime0!;
  const r2 = ste.s2Regime!;
  const nested = new NestedWalkContext(
    w.mem.base,
    w.mem.base + w.mem.size,
    Math.min(w.mem.base + w.mem.size, 2 ** 44),
  );
  nested.s2ptw = ste.s2ptw;
  nested.s2fwb = ste.s2fwb;
  return { ...w, r1, r2, nested, t };
}

describe('NestedWalkContext.walk', () => {
  const w = setup();
  const cases: [number, number][] = [];
  for (const ia of [
    VA,
    VA + 0x1238,
    VA + 0x7ffc,
    VA + 0x8000,
    VA + 0x10010,
    0x4000_0000,
    0x401f_f000,
    VA + 0x20000,
    2 ** 48,
  ])
    for (const access of [ACCESS_READ, ACCESS_WRITE, ACCESS_READ | ACCESS_PRIV, ACCESS_INSTR])
      cases.push([ia, access]);

  it.each(cases)('ia %s access %s agrees with the general walk', (ia, access) => {
    const s1 = new WalkResult();
    const s2 = new WalkResult();
    const ok = w.nested.walk(w.mem, w.r1, w.r2, ia, access, s1, s2);
    w.t.fastWalk = false;
    const pa = w.smmu.translate(w.sid, -1, ia, access);
    const r = w.smmu.result;
    w.t.fastWalk = true;
    if (pa < 0) {
      expect(ok).toBe(false);
      return;
    }
    expect(ok).toBe(true);
    expect(s2.oa).toBe(pa);
    expect(s1.oa).toBe(r.ipa);
    expect(Math.min(s1.sizeLg2, s2.sizeLg2)).toBe(r.sizeLg2);
    // The same translation through the translator's fast path leaves the same answer.
    expect(w.smmu.translate(w.sid, -1, ia, access)).toBe(pa);
    expect(w.smmu.result.ipa).toBe(r.ipa);
  });

  it('succeeds on the common case (the benchmark measures it)', () => {
    const s1 = new WalkResult();
    const s2 = new WalkResult();
    expect(w.nested.walk(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(true);
    expect(s1.reads).toBe(4);
    expect(s2.reads).toBe(4);
  });

  // The context remembers which frames the last walks read from (never what they said): a changed
  // descriptor must be read anew, and a frame the memory dropped must not be read through the memo.
  it('reads a descriptor changed since the last walk', () => {
    const s1 = new WalkResult();
    const s2 = new WalkResult();
    expect(w.nested.walk(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(true);
    const leaf = s2.descAddr;
    const lo = w.mem.readU32(leaf);
    const oa = s2.oa;
    w.mem.writeU32(leaf, lo + 0x1000); // the stage-2 leaf now maps the next page
    try {
      expect(w.nested.walk(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(true);
      expect(s2.oa).toBe(oa + 0x1000);
    } finally {
      w.mem.writeU32(leaf, lo);
    }
  });

  it('forgets the frames when the memory drops one (a table zeroed whole, then rewritten)', () => {
    const s1 = new WalkResult();
    const s2 = new WalkResult();
    expect(w.nested.walk(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(true);
    const oa = s2.oa;
    const frame = s2.descAddr - (s2.descAddr % 4096);
    const saved = new Uint8Array(4096);
    w.mem.readBytes(frame, saved, 0, 4096);
    const dropped = w.mem.framesDropped;
    w.mem.fill(frame, 4096, 0); // drops the frame: the memo's words array is no longer the frame's
    expect(w.mem.framesDropped).toBe(dropped + 1);
    expect(w.nested.walk(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(false);
    const moved = saved.slice();
    const view = new DataView(moved.buffer);
    const off = s2.descAddr % 4096;
    view.setUint32(off, view.getUint32(off, true) + 0x1000, true);
    w.mem.writeBytes(frame, moved, 0, 4096); // a new frame with the leaf moved by a page
    try {
      expect(w.nested.walk(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(true);
      expect(s2.oa).toBe(oa + 0x1000);
    } finally {
      w.mem.writeBytes(frame, saved, 0, 4096);
    }
  });

  // Each stage-1 level's descriptor address has stage-2 frames of its own in the memo: with the
  // stage-1 tables in two 2 MiB halves of guest RAM (two stage-2 last-level tables), one slot per
  // stage-2 level would evict, within every walk, the frame an earlier fetch needs, and each walk would
  // restart until it gave up to the general walk.
  it('walks stage-1 tables spread over guest RAM on remembered frames (no eviction within a walk)', () => {
    const v = setup();
    const trace = new SmmuTrace();
    v.smmu.translate(v.sid, -1, VA + 8, ACCESS_READ, trace);
    const reads = trace.walkReads.map((r) => r.pa);
    expect(reads).toHaveLength(24);
    // Reads 4, 9, 14, 19 are the stage-1 descriptors (each after its address's 4 stage-2 reads).
    const l2Desc = reads[14] - GUEST_PA + GUEST_IPA;
    const l3Table = reads[19] - (reads[19] % 0x1000) - GUEST_PA + GUEST_IPA;
    // Move the last-level table to the upper half of guest RAM and point the level-2 descriptor there.
    const moved = GUEST_IPA + 0x30_0000;
    for (let off = 0; off < 0x1000; off += 4) v.guest.writeU32(moved + off, v.guest.readU32(l3Table + off));
    const lo = v.guest.readU32(l2Desc) >>> 0;
    expect(lo & 3).toBe(3);
    v.guest.writeU32(l2Desc, ((lo & 0xfff) | moved) >>> 0);
    const s1 = new WalkResult();
    const s2 = new WalkResult();
    for (let i = 0; i < 3; i++) {
      expect(v.nested.walk(v.mem, v.r1, v.r2, VA + 8, ACCESS_READ, s1, s2)).toBe(true);
      expect(s1.descAddr).toBe(moved + (s1.descAddr % 0x1000));
    }
    v.t.fastWalk = false;
    const pa = v.smmu.translate(v.sid, -1, VA + 8, ACCESS_READ);
    v.t.fastWalk = true;
    expect(s2.oa).toBe(pa);
  });
});
