/**
 * The hardware walker on hand-built tables: every fault kind with its level, the Arm ARM order of
 * the leaf checks, stage-1 and stage-2 permission models, concatenated stage-2 start tables, the
 * fetch hook and the per-read trace.
 */
import { describe, expect, it } from 'vitest';
import { PhysMem } from '../../src/mm/physmem.ts';
import {
  ACCESS_INSTR,
  ACCESS_PRIV,
  ACCESS_READ,
  ACCESS_WRITE,
  FAULT_ACCESS,
  FAULT_ADDR_SIZE,
  FAULT_FETCH,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  GRANULE_4K,
  GRANULE_16K,
  GRANULE_64K,
  S1_PR,
  S1_PW,
  S1_PX,
  S1_UR,
  S1_UW,
  S1_UX,
  S2_R,
  S2_W,
  S2_XP,
  S2_XU,
  TraceRecorder,
  WalkRegime,
  type WalkRegimeParams,
  WalkResult,
  walk,
} from '../../src/pgtable/index.ts';

const L0 = 0x10000;
const L1 = 0x11000;
const L2 = 0x12000;
const L3 = 0x13000;

function put(mem: PhysMem, addr: number, lo: number, hi = 0) {
  mem.writeU32(addr, lo >>> 0);
  mem.writeU32(addr + 4, hi >>> 0);
}

/** A 4K stage-1 table chain for VA 0x40201000 (indices L0 0, L1 1, L2 1, L3 1). */
function s1Chain(leafLo: number, leafHi = 0, tableHi = [0, 0, 0]) {
  const mem = new PhysMem();
  put(mem, L0 + 0 * 8, L1 | 3, tableHi[0]);
  put(mem, L1 + 1 * 8, L2 | 3, tableHi[1]);
  put(mem, L2 + 1 * 8, L3 | 3, tableHi[2]);
  put(mem, L3 + 1 * 8, leafLo, leafHi);
  return mem;
}

const VA = 0x40201000;
const s1: WalkRegimeParams = {
  stage: 1,
  granuleLg2: GRANULE_4K,
  inputBits: 48,
  startLevel: 0,
  ttb: L0,
  oaBits: 48,
};

function run(mem: PhysMem, params: WalkRegimeParams, ia: number, access: number) {
  const out = new WalkResult();
  walk(mem, new WalkRegime(params), ia, access, out);
  return out;
}

describe('faults and their levels', () => {
  it('translates a 4K page and reports the leaf level, size and 4 reads', () => {
    const out = run(s1Chain(0x7654_3000 | 0xf47), s1, VA + 0x123, ACCESS_WRITE);
    expect(out.fault).toBe(FAULT_NONE);
    expect(out.oa).toBe(0x7654_3123);
    expect([out.level, out.sizeLg2, out.reads]).toEqual([3, 12, 4]);
  });

  it('input beyond T0SZ: translation fault at level 0 with no read', () => {
    const out = run(s1Chain(0xf47), { ...s1, inputBits: 39, startLevel: 1, ttb: L1 }, 2 ** 39, ACCESS_READ);
    expect([out.fault, out.level, out.reads]).toEqual([FAULT_TRANSLATION, 0, 0]);
  });

  it('an invalid descriptor faults at its level', () => {
    const mem = s1Chain(0x7654_3000 | 0xf47);
    put(mem, L2 + 8, 0);
    expect([run(mem, s1, VA, 0).fault, run(mem, s1, VA, 0).level]).toEqual([FAULT_TRANSLATION, 2]);
  });

  it('a block where the granule allows none (4K L0) or a block encoding at L3 is a translation fault', () => {
    const mem = s1Chain(0x7654_3000 | 0xf45); // bits[1:0] = 01 at level 3: reserved
    expect([run(mem, s1, VA, 0).fault, run(mem, s1, VA, 0).level]).toEqual([FAULT_TRANSLATION, 3]);
    put(mem, L0, 0x701); // a level-0 block
    expect([run(mem, s1, VA, 0).fault, run(mem, s1, VA, 0).level]).toEqual([FAULT_TRANSLATION, 0]);
  });

  // Reference §1.5 calls this architectural rule UNVERIFIED (QEMU checks only leaf outputs).
  it('a table address beyond the output size is an address size fault at the table level', () => {
    const mem = s1Chain(0xf47);
    put(mem, L1 + 8, L2 | 3, 0x10); // next table at 2^36 + L2
    const out = run(mem, { ...s1, oaBits: 36 }, VA, ACCESS_READ);
    expect([out.fault, out.level]).toEqual([FAULT_ADDR_SIZE, 1]);
  });

  // AF (with CD.AFFD) before permission: reference §1.4.
  it('leaf checks in Arm ARM order: address size before access flag before permission', () => {
    // OA 2^40 with AF = 0 and read-only, written to, in a 40-bit regime.
    const leaf = (0x0 | 0x3 | 0x80 | 0x40) >>> 0; // AF clear, AP[2:1] = 11
    const out = run(s1Chain(leaf, 0x100), { ...s1, oaBits: 40 }, VA, ACCESS_WRITE);
    expect([out.fault, out.level]).toEqual([FAULT_ADDR_SIZE, 3]);
    const af = run(s1Chain(leaf), s1, VA, ACCESS_WRITE);
    expect([af.fault, af.level]).toEqual([FAULT_ACCESS, 3]);
    // CD.AFFD: AF = 0 is treated as 1, leaving the permission fault.
    expect(run(s1Chain(leaf), { ...s1, affd: true }, VA, ACCESS_WRITE).fault).toBe(FAULT_PERMISSION);
    expect(run(s1Chain(leaf), { ...s1, affd: true }, VA, ACCESS_READ).fault).toBe(FAULT_NONE);
  });
});

describe('stage-1 permissions (Arm ARM AArch64.S1DirectBasePermissions)', () => {
  const perms = (lo: number, hi = 0, tableHi = [0, 0, 0], extra: Partial<WalkRegimeParams> = {}) =>
    run(s1Chain(lo | 0x403, hi, tableHi), { ...s1, ...extra }, VA, -1).perms;

  it('AP[2:1] per the reference §1.4 table', () => {
    // 00 priv RW; 01 RW both; 10 priv RO; 11 RO both (execute: unprivileged-writable is never PX).
    expect(perms(0x00)).toBe(S1_PR | S1_PW | S1_PX | S1_UX);
    expect(perms(0x40)).toBe(S1_PR | S1_PW | S1_UR | S1_UW | S1_UX);
    expect(perms(0x80)).toBe(S1_PR | S1_PX | S1_UX);
    expect(perms(0xc0)).toBe(S1_PR | S1_UR | S1_PX | S1_UX);
  });

  it('PXN, UXN and their table bits; APTable removes write and unprivileged access (reference §1.4)', () => {
    expect(perms(0xc0, 1 << 21)).toBe(S1_PR | S1_UR | S1_UX);
    expect(perms(0xc0, 1 << 22)).toBe(S1_PR | S1_UR | S1_PX);
    expect(perms(0xc0, 0, [1 << 27, 0, 0])).toBe(S1_PR | S1_UR | S1_UX);
    expect(perms(0xc0, 0, [0, 1 << 28, 0])).toBe(S1_PR | S1_UR | S1_PX);
    expect(perms(0x40, 0, [0, 0, 1 << 30])).toBe(S1_PR | S1_UR | S1_PX | S1_UX);
    expect(perms(0x40, 0, [1 << 29, 0, 0])).toBe(S1_PR | S1_PW | S1_PX | S1_UX);
    // CD.HADx: hierarchical attributes ignored.
    expect(perms(0x40, 0, [1 << 29, 0, 0], { hpd: true })).toBe(S1_PR | S1_PW | S1_UR | S1_UW | S1_UX);
  });

  it('WXN removes execute from writable pages; PAN removes privileged data access to user pages', () => {
    expect(perms(0x00, 0, [0, 0, 0], { wxn: true })).toBe(S1_PR | S1_PW | S1_UX);
    expect(perms(0x40, 0, [0, 0, 0], { pan: true })).toBe(S1_UR | S1_UW | S1_UX);
  });

  it('the EL2 regime ignores AP[1] and PXN', () => {
    expect(perms(0x80, 1 << 21, [0, 0, 0], { el2: true })).toBe(S1_PR | S1_UR | S1_PX | S1_UX);
  });

  it('checks the access against them: unprivileged, privileged, instruction', () => {
    const mem = s1Chain(0x7654_3000 | 0x403); // AP 00: privileged only
    expect(run(mem, s1, VA, ACCESS_READ).fault).toBe(FAULT_PERMISSION);
    expect(run(mem, s1, VA, ACCESS_READ | ACCESS_PRIV).fault).toBe(FAULT_NONE);
    expect(run(mem, s1, VA, ACCESS_WRITE | ACCESS_PRIV).fault).toBe(FAULT_NONE);
    put(mem, L3 + 8, 0x7654_3000 | 0x403, 1 << 21); // PXN
    expect(run(mem, s1, VA, ACCESS_INSTR | ACCESS_PRIV).fault).toBe(FAULT_PERMISSION);
    // An instruction write is a data write (IHI 0070 §13.1.2).
    expect(run(mem, s1, VA, ACCESS_INSTR | ACCESS_WRITE | ACCESS_PRIV).fault).toBe(FAULT_NONE);
  });
});

describe('stage 2', () => {
  const s2: WalkRegimeParams = {
    stage: 2,
    granuleLg2: GRANULE_4K,
    inputBits: 40,
    startLevel: 1,
    ttb: 0x20000,
    oaBits: 44,
  };

  it('indexes two concatenated level-1 tables with IPA bit 39 and checks the S2T0SZ range (reference §1.3)', () => {
    const mem = new PhysMem();
    // IPA 0x80_4000_0000: bit 39 selects the second table (0x21000), index 1 there.
    put(mem, 0x21000 + 8, 0xc000_0000 | 0x441 | (0xf << 2)); // 1G block at 3G, S2AP read only
    const out = run(mem, s2, 0x80_4000_0123, ACCESS_READ);
    expect([out.fault, out.oa, out.level, out.sizeLg2]).toEqual([FAULT_NONE, 0xc000_0123, 1, 30]);
    expect(out.descAddr).toBe(0x21008);
    expect(run(mem, s2, 0x80_4000_0123, ACCESS_WRITE).fault).toBe(FAULT_PERMISSION);
    expect(run(mem, s2, 2 ** 40, ACCESS_READ).fault).toBe(FAULT_TRANSLATION);
  });

  it('S2AP and XN, with and without FEAT_XNX (reference §1.4)', () => {
    const mem = new PhysMem();
    const perms = (lo: number, hi: number, xnx: boolean) => {
      put(mem, 0x20000, lo | 0x401, hi);
      return run(mem, { ...s2, xnx }, 0, -1).perms;
    };
    expect(perms(0xc0, 0, false)).toBe(S2_R | S2_W | S2_XP | S2_XU);
    expect(perms(0x80, 1 << 22, false)).toBe(S2_W);
    // XN[1:0]: 01 not executable at EL1, 10 nowhere, 11 not at EL0.
    expect(perms(0x40, 1 << 21, true)).toBe(S2_R | S2_XU);
    expect(perms(0x40, 2 << 21, true)).toBe(S2_R);
    expect(perms(0x40, 3 << 21, true)).toBe(S2_R | S2_XP);
    // Without XNX, bit 53 alone does nothing.
    expect(perms(0x40, 1 << 21, false)).toBe(S2_R | S2_XP | S2_XU);
  });
});

describe('other granules', () => {
  it('16K: 32M block at L2 (reference §1.1)', () => {
    const mem = new PhysMem();
    // 16K, 47-bit input: start L1 (2048 entries, bits 46:36).
    put(mem, 0x40000, 0x44000 | 3);
    put(mem, 0x44000 + 3 * 8, (0x1_0000_0000 % 2 ** 32) | 0x401, 1);
    const r: WalkRegimeParams = {
      stage: 1,
      granuleLg2: GRANULE_16K,
      inputBits: 47,
      startLevel: 1,
      ttb: 0x40000,
      oaBits: 48,
    };
    const out = run(mem, r, 3 * 2 ** 25 + 5, -1);
    expect([out.fault, out.oa, out.sizeLg2]).toEqual([FAULT_NONE, 0x1_0000_0005, 25]);
  });

  // Reference §1.1 (4 TB blocks only with 52-bit LPA) and §1.4 (OA[51:48] in [15:12], marked UNVERIFIED).
  it('64K: a level-1 block exists only with a 52-bit PA, which also carries OA[51:48] in bits [15:12]', () => {
    const mem = new PhysMem();
    put(mem, 0x40000, 0x0000_0001 | (0x9 << 12) | 0x400, 0x400); // 4TB block at 0x9_0400_0000_0000
    const r: WalkRegimeParams = {
      stage: 2,
      granuleLg2: GRANULE_64K,
      inputBits: 48,
      startLevel: 1,
      ttb: 0x40000,
      oaBits: 48,
    };
    expect(run(mem, r, 7, -1).fault).toBe(FAULT_TRANSLATION);
    const out = run(mem, { ...r, oaBits: 52, paMaxBits: 52 }, 7, -1);
    expect([out.fault, out.oa, out.sizeLg2]).toEqual([FAULT_NONE, 0x9_0400_0000_0007, 42]);
  });
});

describe('fetch hook and trace', () => {
  it('the hook sees every descriptor address and can stop the walk', () => {
    const mem = s1Chain(0x7654_3000 | 0xf47);
    const seen: number[] = [];
    const hook = {
      fetchDescriptor(addr: number, _stage: 1 | 2, level: number) {
        seen.push(addr);
        return level === 2 ? -1 : addr;
      },
    };
    const out = new WalkResult();
    expect(walk(mem, new WalkRegime(s1), VA, ACCESS_READ, out, hook)).toBe(FAULT_FETCH);
    expect(out.level).toBe(2);
    expect(seen).toEqual([L0, L1 + 8, L2 + 8]);
  });

  it('the trace records each read in order with level, index, address and value', () => {
    const mem = s1Chain(0x7654_3000 | 0xf47);
    const trace = new TraceRecorder();
    walk(mem, new WalkRegime(s1), VA, ACCESS_READ, new WalkResult(), null, trace);
    expect(trace.reads.map((r) => [r.level, r.index, r.pa, r.lo])).toEqual([
      [0, 0, L0, L1 | 3],
      [1, 1, L1 + 8, L2 | 3],
      [2, 1, L2 + 8, L3 | 3],
      [3, 1, L3 + 8, 0x7654_3f47],
    ]);
  });
});
