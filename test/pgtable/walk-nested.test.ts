/**
 * The nested fast walk (pgtable/walk-nested.ts) against the general walks: where it succeeds it must
 * give what the translator's general path gives (output, IPA, leaf size, permissions, leaf level and
 * descriptor), and wherever the general path faults it must decline (it decides no fault).
 */

import { describe, expect, it } from 'vitest';
import {
  ACCESS_INSTR,
  ACCESS_PRIV,
  ACCESS_READ,
  ACCESS_WRITE,
  IOMMU_CACHE,
  IOMMU_READ,
  WalkResult,
  walkNestedFast,
} from '../../src/pgtable/index.ts';
import { GUEST_IPA, nestedSetup, RW } from '../smmu/driver.ts';

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
  const bounds = {
    ramBase: w.mem.base,
    ramEnd: w.mem.base + w.mem.size,
    fetchEnd: Math.min(w.mem.base + w.mem.size, 2 ** 44),
    s2ptw: ste.s2ptw,
    s2fwb: ste.s2fwb,
  };
  return { ...w, r1, r2, bounds, t };
}

describe('walkNestedFast', () => {
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
    const fetch = new WalkResult();
    const ok = walkNestedFast(w.mem, w.r1, w.r2, ia, access, s1, s2, fetch, w.bounds);
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
    expect(walkNestedFast(w.mem, w.r1, w.r2, VA + 8, ACCESS_READ, s1, s2, new WalkResult(), w.bounds)).toBe(
      true,
    );
    expect(s1.reads).toBe(4);
    expect(s2.reads).toBe(4);
  });
});
