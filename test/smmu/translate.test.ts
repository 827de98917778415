/**
 * Translation through the device, programmed by registers: bypass, abort, stage 1, stage 2 and nested
 * configurations; the cost of a nested walk in descriptor reads; substreams and CD tables; stream
 * tables; DMA moving real bytes.
 */
import { describe, expect, it } from 'vitest';
import { ACCESS_READ, ACCESS_WRITE, IOMMU_READ, IoPgtable, levelShift } from '../../src/pgtable/index.ts';
import {
  CMD_SYNC,
  CMD_TLBI_NH_VA,
  EVT_C_BAD_STREAMID,
  EVT_C_BAD_SUBSTREAMID,
  EVT_F_ADDR_SIZE,
  EVT_F_STREAM_DISABLED,
  EVT_F_TRANSLATION,
  encodeL1Cd,
  encodeL1Std,
  GBPA_ABORT,
  GBPA_UPDATE,
  REG,
  SmmuTrace,
} from '../../src/smmu/index.ts';
import {
  GUEST_IPA,
  GUEST_PA,
  linuxCd,
  nestedSetup,
  plainSetup,
  RW,
  STRTAB,
  s1Domain,
  s2SteFields,
  writeCd,
} from './driver.ts';

const VA = 0x1000000;
const DATA_IPA = GUEST_IPA + 0x200000;
const DATA_PA = GUEST_PA + 0x200000;

describe('nested translation: the 2-D walk', () => {
  it('a cold 4-level stage 1 over a 4-level stage 2 makes exactly 24 descriptor reads, in order', () => {
    const n = nestedSetup();
    expect(n.s1.map(VA, DATA_IPA, 0x1000, RW)).toBe(0);
    const trace = new SmmuTrace();
    expect(n.smmu.translate(n.sid, -1, VA + 0x123, ACCESS_WRITE, trace)).toBe(DATA_PA + 0x123);

    // Reference §3.3: (4 + 1)(4 + 1) - 1 = 24. Each stage-1 descriptor address (an IPA) is walked
    // through stage 2 (CLASS TT) before it is read; the output IPA is walked last (CLASS IN).
    const reads = trace.walkReads;
    expect(reads).toHaveLength(24);
    const expected: string[] = [];
    for (let l = 0; l < 4; l++) {
      for (let l2 = 0; l2 < 4; l2++) expected.push(`s2 TT L${l2}`);
      expected.push(`s1 L${l}`);
    }
    for (let l2 = 0; l2 < 4; l2++) expected.push(`s2 IN L${l2}`);
    expect(reads.map((r) => (r.kind === 's2' ? `s2 ${r.cls} L${r.level}` : `s1 L${r.level}`))).toEqual(
      expected,
    );

    // Stage-1 descriptors are read at the PA stage 2 gives their IPA; indices follow VA 0x1000000.
    const s1Reads = reads.filter((r) => r.kind === 's1');
    const vaIndex = (l: number) => Math.floor(VA / 2 ** levelShift(12, l)) % 512;
    expect(s1Reads.map((r) => r.index)).toEqual([0, 1, 2, 3].map(vaIndex));
    for (const r of s1Reads) expect(r.pa).toBe(r.addr - GUEST_IPA + GUEST_PA);
    // The stage-2 walk that precedes each stage-1 read ends at that read's IPA page.
    expect(reads[3].addr % 4096).toBe((Math.floor(s1Reads[0].addr / 4096) % 512) * 8);
    // The last stage-2 read is the leaf for the output IPA.
    expect(reads[23].words[0] & ~0xfff).toBe(DATA_PA & ~0xfff);

    // Configuration reads are reported separately: the STE, the CD IPA's stage-2 walk (CLASS CD), the CD.
    expect(trace.configReads.map((r) => (r.kind === 's2' ? `s2 ${r.cls}` : r.kind))).toEqual([
      'ste',
      's2 CD',
      's2 CD',
      's2 CD',
      's2 CD',
      'cd',
    ]);
  });

  it('the same access again makes 0 reads; after TLBI + SYNC it is 24 again (config still cached)', () => {
    const n = nestedSetup();
    n.s1.map(VA, DATA_IPA, 0x1000, RW);
    n.smmu.translate(n.sid, -1, VA, ACCESS_READ);
    const hit = new SmmuTrace();
    expect(n.smmu.translate(n.sid, -1, VA + 8, ACCESS_READ, hit)).toBe(DATA_PA + 8);
    expect(hit.reads).toHaveLength(0);
    expect(n.smmu.result.tlbHit).toBe(true);
    n.drv.cmd(CMD_TLBI_NH_VA, { vmid: n.vmid, asid: n.asid, addr: VA, leaf: 1 });
    n.drv.cmd(CMD_SYNC);
    const again = new SmmuTrace();
    expect(n.smmu.translate(n.sid, -1, VA + 8, ACCESS_READ, again)).toBe(DATA_PA + 8);
    expect(again.walkReads).toHaveLength(24);
    expect(again.configReads).toHaveLength(0);
  });

  it('walkTrace is a cold dry run: full trace, no cache filled, no event', () => {
    const n = nestedSetup();
    n.s1.map(VA, DATA_IPA, 0x1000, RW);
    const w = n.smmu.walkTrace(n.sid, -1, VA, ACCESS_READ);
    expect(w.pa).toBe(DATA_PA);
    expect(w.trace.walkReads).toHaveLength(24);
    expect(n.smmu.tlb.size).toBe(0);
    const miss = n.smmu.walkTrace(n.sid, -1, VA + 0x1000, ACCESS_READ);
    expect(miss.event).toBe(EVT_F_TRANSLATION);
    expect(n.drv.events()).toEqual([]);
  });

  it('permissions of the two stages combine: both must allow (reference §3.4)', () => {
    const n = nestedSetup();
    // Stage 1 read-write onto an IPA that stage 2 maps read-only.
    const roIpa = 0x2000_0000;
    n.s2.map(roIpa, 0x9000_0000, 0x1000, IOMMU_READ);
    n.s1.map(VA, roIpa, 0x1000, RW);
    n.s1.map(VA + 0x1000, DATA_IPA, 0x1000, IOMMU_READ);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(0x9000_0000);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_WRITE)).toBe(-1);
    expect(n.smmu.result.fault.s2).toBe(true);
    expect(n.smmu.translate(n.sid, -1, VA + 0x1000, ACCESS_WRITE)).toBe(-1);
    expect(n.smmu.result.fault.s2).toBe(false);
    expect(n.smmu.translate(n.sid, -1, VA + 0x1000, ACCESS_READ)).toBe(DATA_PA);
  });

  it('a combined entry covers the smaller leaf: a 2M stage-1 block over 4K stage-2 pages (reference §3.4)', () => {
    const n = nestedSetup();
    n.s1.map(0x4000_0000, GUEST_IPA + 0x200000, 0x200000, RW);
    expect(n.smmu.translate(n.sid, -1, 0x4000_0000 + 0x5123, ACCESS_READ)).toBe(DATA_PA + 0x5123);
    expect(n.smmu.result.sizeLg2).toBe(12);
    const hit = new SmmuTrace();
    n.smmu.translate(n.sid, -1, 0x4000_0000 + 0x5fff, ACCESS_READ, hit);
    expect(hit.reads).toHaveLength(0);
    const miss = new SmmuTrace();
    n.smmu.translate(n.sid, -1, 0x4000_0000 + 0x6000, ACCESS_READ, miss);
    // Three stage-1 levels (L0-L2, block at L2): (3 + 1)(4 + 1) - 1 = 19 reads.
    expect(miss.walkReads).toHaveLength(19);
  });
});

describe('stream configurations', () => {
  // STE.Config: reference §2.3; bypass above the IAS: §1.5 (IHI 0070 §3.4).
  it('Config 0 aborts silently; Config 4 bypasses, faulting (stage 1, F_ADDR_SIZE) above the OAS', () => {
    const { smmu, drv } = plainSetup();
    drv.writeSte(1, { V: 1, Config: 0 });
    drv.writeSte(2, { V: 1, Config: 4 });
    expect(smmu.translate(1, -1, 0x1000, ACCESS_READ)).toBe(-1);
    expect(smmu.result.silent).toBe(true);
    expect(smmu.translate(2, -1, 0x1234_5678, ACCESS_WRITE)).toBe(0x1234_5678);
    // IHI 0070 §3.4: bypass input beyond OAS (44 bits) -> F_ADDR_SIZE, S2 = 0.
    expect(smmu.translate(2, -1, 2 ** 44, ACCESS_READ)).toBe(-1);
    const ev = drv.events();
    expect(ev.map((e) => [e.name, e.s2, e.cls])).toEqual([['F_ADDR_SIZE', 0, 'IN']]);
  });

  it('stage 1 only (Config 5), tables in PA space', () => {
    const p = plainSetup();
    const { smmu } = p;
    const s1 = s1Domain(p, 3, { ASID: 5 });
    s1.map(0x10000, 0x7000_0000, 0x2000, RW);
    expect(smmu.translate(3, -1, 0x11004, ACCESS_WRITE)).toBe(0x7000_1004);
    const t = new SmmuTrace();
    smmu.translate(3, -1, 0x11ff8, ACCESS_READ, t);
    expect(t.reads).toHaveLength(0);
    expect(smmu.translate(3, -1, 0x12000, ACCESS_READ)).toBe(-1);
    expect(smmu.result.event).toBe(EVT_F_TRANSLATION);
  });

  // Start level and concatenation: reference §1.3; the IAS check when stage 1 is bypassed: §1.5.
  it('stage 2 only (Config 6): stage 1 bypassed, input checked against the IAS first', () => {
    const { mem, smmu, drv, heap } = plainSetup();
    const s2 = IoPgtable.create(mem, { stage: 2, pgsizeBitmap: 0x40201000, ias: 40, oas: 44 }, heap)!;
    s2.map(0x4000_0000, 0x2_0000_0000, 0x200000, RW);
    drv.writeSte(4, { V: 1, Config: 6, ...s2SteFields(s2, 3) });
    expect(smmu.translate(4, -1, 0x4010_0000, ACCESS_READ)).toBe(0x2_0010_0000);
    // A 40-bit IPA space starts at level 1 (2 concatenated tables); the 2M block ends the walk at level 2.
    const t = smmu.walkTrace(4, -1, 0x4010_0000, ACCESS_READ);
    expect(t.trace.walkReads.map((r) => r.level)).toEqual([1, 2]);
    // Beyond S2T0SZ (40 bits): stage-2 translation fault on input.
    expect(smmu.translate(4, -1, 2 ** 40, ACCESS_READ)).toBe(-1);
    expect(smmu.result.event).toBe(EVT_F_TRANSLATION);
    // Beyond the IAS (44 bits): stage-1 address size fault.
    expect(smmu.translate(4, -1, 2 ** 44, ACCESS_READ)).toBe(-1);
    expect(smmu.result.event).toBe(EVT_F_ADDR_SIZE);
    expect(smmu.result.fault.s2).toBe(false);
  });

  it('SMMUEN = 0 bypasses (or aborts with GBPA.ABORT) without events', () => {
    const { smmu, drv } = plainSetup();
    drv.write(REG.CR0, 0);
    expect(smmu.translate(77, -1, 0x5000, ACCESS_READ)).toBe(0x5000);
    drv.write(REG.GBPA, GBPA_ABORT); // no Update bit: ignored
    expect(smmu.translate(77, -1, 0x5000, ACCESS_READ)).toBe(0x5000);
    drv.write(REG.GBPA, (GBPA_UPDATE | GBPA_ABORT) >>> 0);
    expect(drv.reg(REG.GBPA)).toBe(GBPA_ABORT);
    expect(smmu.translate(77, -1, 0x5000, ACCESS_READ)).toBe(-1);
    expect(smmu.result.silent).toBe(true);
    expect(drv.events()).toEqual([]);
  });

  // C_BAD_STREAMID for SID >= 2^LOG2SIZE: reference §2.1 (the CR2.RECINVSID gate has no source there).
  it('a StreamID beyond the table is C_BAD_STREAMID, recorded only with CR2.RECINVSID', () => {
    const { smmu, drv } = plainSetup();
    expect(smmu.translate(256, -1, 0, ACCESS_READ)).toBe(-1);
    expect(drv.events().map((e) => e.type)).toEqual([EVT_C_BAD_STREAMID]);
    const quiet = plainSetup();
    quiet.drv.init({ recordInvalidSid: false });
    quiet.smmu.translate(256, -1, 0, ACCESS_READ);
    expect(quiet.smmu.result.event).toBe(EVT_C_BAD_STREAMID);
    expect(quiet.drv.events()).toEqual([]);
  });

  // Reference §2.1: L1 index SID >> SPLIT, Span [4:0] (2^(Span-1) STEs), Span 0 invalid.
  it('a two-level stream table: L1STD Span, split 6, bad spans are C_BAD_STREAMID', () => {
    const { mem, smmu, drv } = plainSetup();
    drv.write(REG.CR0, 0);
    // FMT = 2-level, SPLIT = 6, LOG2SIZE = 16.
    drv.write(REG.STRTAB_BASE_CFG, (1 << 16) | (6 << 6) | 16);
    drv.write(REG.CR0, 0xd);
    const l2 = 0x500000;
    // StreamIDs 0x140-0x17f: L1 index 5, Span 7 (64 STEs).
    drv.writeWords(STRTAB + 5 * 8, encodeL1Std(7, l2));
    drv.writeWords(l2 + 3 * 64, [1 | (4 << 1)]);
    expect(smmu.translate(0x143, -1, 0x9000, ACCESS_READ)).toBe(0x9000);
    const t = smmu.walkTrace(0x143, -1, 0x9000);
    expect(t.trace.configReads.map((r) => [r.kind, r.pa])).toEqual([
      ['l1std', STRTAB + 5 * 8],
      ['ste', l2 + 3 * 64],
    ]);
    // Span 2 covers 2 STEs: index 3 is out of range; Span 0 is invalid.
    drv.writeWords(STRTAB + 6 * 8, encodeL1Std(2, l2));
    expect(smmu.translate(0x183, -1, 0, ACCESS_READ)).toBe(-1);
    expect(smmu.translate(0x1c0, -1, 0, ACCESS_READ)).toBe(-1);
    expect(drv.events().map((e) => [e.name, e.sid])).toEqual([
      ['C_BAD_STREAMID', 0x183],
      ['C_BAD_STREAMID', 0x1c0],
    ]);
    // Bytes exist only in the frames written: the command queue, the L1 table, the L2 STEs and the
    // event queue (the SMMU's lookups write nothing else; DESIGN.md: cost follows work).
    expect(mem.touchedFrames).toBe(4);
  });
});

// Reference §2.5: CD[SSID], C_BAD_SUBSTREAMID at SSID >= 2^S1CDMax, S1DSS, L1CD V / L2Ptr.
describe('substreams and CD tables (full preset: SSIDSIZE 20, CD2L)', () => {
  function withCds(s1Fmt: number, s1CdMax: number, s1dss: number) {
    const { mem, smmu, drv, heap } = plainSetup({ preset: 'full' });
    const tables = [0, 1, 2, 3].map((asid) => {
      const s1 = IoPgtable.create(mem, { stage: 1, pgsizeBitmap: 0x40201000, ias: 48, oas: 48 }, heap)!;
      s1.map(0x1000, 0x1000_0000 * (asid + 1), 0x1000, RW);
      return s1;
    });
    drv.writeSte(9, {
      V: 1,
      Config: 5,
      S1ContextPtr: 0x600000,
      S1Fmt: s1Fmt,
      S1CDMax: s1CdMax,
      S1DSS: s1dss,
    });
    return { mem, smmu, drv, tables };
  }

  it('a linear CD table indexed by SubstreamID; S1DSS decides for transactions without one', () => {
    const { mem, smmu, drv, tables } = withCds(0, 2, 0);
    for (let i = 0; i < 4; i++) writeCd(mem, 0x600000 + i * 64, linuxCd(tables[i].pgd, 10 + i, { IPS: 5 }));
    expect(smmu.translate(9, 2, 0x1000, ACCESS_READ)).toBe(0x3000_0000);
    expect(smmu.translate(9, 0, 0x1000, ACCESS_READ)).toBe(0x1000_0000);
    // SubstreamID 4 >= 2^S1CDMax.
    expect(smmu.translate(9, 4, 0x1000, ACCESS_READ)).toBe(-1);
    // No SubstreamID with S1DSS = terminate.
    expect(smmu.translate(9, -1, 0x1000, ACCESS_READ)).toBe(-1);
    expect(drv.events().map((e) => [e.type, e.ssid])).toEqual([
      [EVT_C_BAD_SUBSTREAMID, 4],
      [EVT_F_STREAM_DISABLED, 0],
    ]);
  });

  it('S1DSS = bypass and S1DSS = CD 0 (which makes SubstreamID 0 unusable)', () => {
    const bypass = withCds(0, 2, 1);
    expect(bypass.smmu.translate(9, -1, 0x7777_0000, ACCESS_READ)).toBe(0x7777_0000);
    const ssid0 = withCds(0, 2, 2);
    writeCd(ssid0.mem, 0x600000, linuxCd(ssid0.tables[0].pgd, 10, { IPS: 5 }));
    expect(ssid0.smmu.translate(9, -1, 0x1000, ACCESS_READ)).toBe(0x1000_0000);
    expect(ssid0.smmu.translate(9, 0, 0x1000, ACCESS_READ)).toBe(-1);
    expect(ssid0.smmu.result.event).toBe(EVT_F_STREAM_DISABLED);
  });

  it('a two-level CD table with 4KB leaves: L1CD then CD; an invalid L1CD is C_BAD_SUBSTREAMID', () => {
    const { mem, smmu, drv, tables } = withCds(1, 8, 0);
    // 256 CDs: L1 index = SSID >> 6. SSID 0x83 -> L1 entry 2 -> CD 3 of the leaf at 0x700000.
    drv.writeWords(0x600000 + 2 * 8, encodeL1Cd(true, 0x700000));
    writeCd(mem, 0x700000 + 3 * 64, linuxCd(tables[3].pgd, 33, { IPS: 5 }));
    expect(smmu.translate(9, 0x83, 0x1000, ACCESS_READ)).toBe(0x4000_0000);
    const t = smmu.walkTrace(9, 0x83, 0x1000);
    expect(t.trace.configReads.map((r) => [r.kind, r.pa])).toEqual([
      ['ste', STRTAB + 9 * 64],
      ['l1cd', 0x600010],
      ['cd', 0x7000c0],
    ]);
    expect(smmu.translate(9, 0xc1, 0x1000, ACCESS_READ)).toBe(-1);
    expect(drv.events().map((e) => [e.name, e.ssid])).toEqual([['C_BAD_SUBSTREAMID', 0xc1]]);
  });
});

describe('dma', () => {
  it('moves real bytes through a nested translation and stops at the first faulting page', () => {
    const n = nestedSetup();
    n.s1.map(VA, DATA_IPA, 0x2000, RW);
    const src = new Uint8Array(0x3000).map((_, i) => (i * 7 + 3) & 0xff);
    // 0x2000 bytes land; the third page is unmapped: the DMA stops there.
    expect(n.smmu.dma(n.sid, -1, VA, src, 0, 0x3000, true)).toBe(0x2000);
    const back = new Uint8Array(0x2000);
    n.mem.readBytes(DATA_PA, back, 0, 0x2000);
    expect(back).toEqual(src.subarray(0, 0x2000));
    const dst = new Uint8Array(0x100);
    expect(n.smmu.dma(n.sid, -1, VA + 0x1f80, dst, 0, 0x100, false)).toBe(0x80);
    expect(dst.subarray(0, 0x80)).toEqual(src.subarray(0x1f80, 0x2000));
    expect(n.drv.events().map((e) => [e.name, e.rnw, e.inputAddr])).toEqual([
      ['F_TRANSLATION', 0, VA + 0x2000],
      ['F_TRANSLATION', 1, VA + 0x2000],
    ]);
  });
});
