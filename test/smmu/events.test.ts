/**
 * Event records, all 32 bytes: every event type a single-device model raises, stage-2 faults by
 * CLASS, the real kernels' records (kernel-answers/), recording gated by CD.R / STE.S2R, and the
 * event queue's overflow, disable and abort behaviour.
 *
 * Not raised by this model (no ATS/ATC, no PRI, no IMPLEMENTATION DEFINED causes, no conflict
 * detection): F_UUT 0x01, F_BAD_ATS_TREQ 0x05, F_TRANSL_FORBIDDEN 0x07, F_TLB_CONFLICT 0x20,
 * F_CFG_CONFLICT 0x21, E_PAGE_REQUEST 0x24.
 */
import { describe, expect, it } from 'vitest';
import {
  ACCESS_READ,
  ACCESS_WRITE,
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtable,
  TableHeap,
} from '../../src/pgtable/index.ts';
import {
  CR0_CMDQEN,
  CR0_EVENTQEN,
  CR0_SMMUEN,
  decodeEvent,
  EVENTQ_OVFLG,
  GERROR_EVENTQ_ABT_ERR,
  IRQ_CTRL_EVENTQ_IRQEN,
  REG,
} from '../../src/smmu/index.ts';
import { eventsFromLog, KERNEL_ANSWERS, loadRecording } from '../helpers/recordings.ts';
import {
  EVTQ,
  GUEST_IPA,
  linuxCd,
  nestedSetup,
  plainSetup,
  RW,
  s1Domain,
  s1Read,
  s2SteFields,
  writeCd,
} from './driver.ts';

const Z = '0x0000000000000000';
const hex = (w: Uint32Array) => decodeEvent(w).words;

/** Every event record a recording holds, in order: vEVENTQ records first, then the host log's. */
function recorded(config: string, file: string): string[][] {
  const rec = loadRecording(KERNEL_ANSWERS, config, file);
  const out: string[][] = [];
  for (const line of rec.lines.flat())
    for (const r of (line.records as { evt?: string[] }[] | undefined) ?? []) if (r.evt) out.push(r.evt);
  for (const log of rec.logs) if (log !== undefined) out.push(...eventsFromLog(log).map((e) => e.words));
  return out;
}

describe('records recorded by real kernels (kernel-answers/)', () => {
  it('6.1 type-1 stage-1 domain on StreamID 8: write to a read-only page, write to an unmapped IOVA', () => {
    const p = plainSetup();
    const s1 = s1Domain(p, 8);
    s1.map(0x100000, 0x7000_0000, 0x1000, IOMMU_READ | IOMMU_CACHE);
    expect(p.smmu.translate(8, -1, 0x100000, ACCESS_WRITE)).toBe(-1);
    expect(p.smmu.translate(8, -1, 0x300000, ACCESS_WRITE)).toBe(-1);
    // Words the 6.1 arm64 kernel logged from QEMU: the first two records of the i1-dma-v2 recording.
    const expected = [
      ['0x0000000800000013', '0x0000020000000000', '0x0000000000100000', Z],
      ['0x0000000800000010', '0x0000020000000000', '0x0000000000300000', Z],
    ];
    expect(recorded('6.1-smmuv3', 'i1-dma-v2.jsonl').slice(0, 2)).toEqual(expected);
    expect(p.drv.rawEvents().map(hex)).toEqual(expected);
  });

  it('6.18 iommufd nesting: stage-1 faults (vSID 0x42) and a stage-2 fault on the output IPA (StreamID 8)', () => {
    const n = nestedSetup({ sid: 8 });
    // The same nested STE at vSID 0x42 (iommufd substitutes the vSID; here it is just another StreamID).
    n.drv.writeWords(
      n.drv.steAddr(0x42),
      Array.from({ length: 16 }, (_, i) => n.mem.readU32(n.drv.steAddr(8) + i * 4)),
    );
    // s1_map leaves of b-s1-faults: RW at 0x2000000, read-only at 0x1100000, AF = 0 at 0x1200000,
    // an IPA stage 2 does not map at 0x1300000, an IPA >= 2^44 (CD.IPS) at 0x1400000.
    const s1 = IoPgtable.create(
      n.guest,
      { stage: 1, pgsizeBitmap: 0x40201000, ias: 48, oas: 48 },
      new TableHeap(n.guest, GUEST_IPA + 0x300000, 0x100000),
    )!;
    writeCd(n.guest, n.cdIpa, linuxCd(s1.pgd, 1));
    s1.map(0x2000000, GUEST_IPA + 0x1000, 0x1000, RW);
    s1.map(0x1100000, GUEST_IPA + 0x12000, 0x1000, IOMMU_READ | IOMMU_CACHE);
    s1.map(0x1200000, GUEST_IPA + 0x13000, 0x1000, RW);
    s1.map(0x1300000, 0x80_0001_3000, 0x1000, RW);
    s1.map(0x1400000, 0x1000_0001_3000, 0x1000, RW);
    // Clear AF in the 0x1200000 leaf (the probe's af=0): find it from a trace.
    const leaf = s1Read(n.smmu, 0x42, 0x1200000, 3);
    n.guest.writeU32(leaf.addr, leaf.words[0] & ~0x400);

    expect(n.smmu.translate(0x42, -1, 0x10000, ACCESS_WRITE)).toBe(-1);
    expect(n.smmu.translate(0x42, -1, 0x3000000, ACCESS_READ)).toBe(-1);
    expect(n.smmu.translate(0x42, -1, 0x1100000, ACCESS_WRITE)).toBe(-1);
    expect(n.smmu.translate(0x42, -1, 0x1100000, ACCESS_READ)).not.toBe(-1);
    expect(n.smmu.translate(0x42, -1, 0x1200000, ACCESS_WRITE)).toBe(-1);
    expect(n.smmu.translate(0x42, -1, 0x1400000, ACCESS_WRITE)).toBe(-1);
    expect(n.smmu.translate(8, -1, 0x1300000, ACCESS_WRITE)).toBe(-1);
    // Words from 6.18-iommufd a-nested-happy / b-s1-faults (vEVENTQ records and the host log).
    const words = n.drv.rawEvents().map(hex);
    const real = ['a-nested-happy.jsonl', 'b-s1-faults.jsonl'].flatMap((f) => recorded('6.18-iommufd', f));
    for (const w of words) expect(real).toContainEqual(w);
    expect(words).toEqual([
      ['0x0000004200000010', '0x0000020000000000', '0x0000000000010000', Z],
      ['0x0000004200000010', '0x0000020800000000', '0x0000000003000000', Z],
      ['0x0000004200000013', '0x0000020000000000', '0x0000000001100000', Z],
      ['0x0000004200000012', '0x0000020000000000', '0x0000000001200000', Z],
      ['0x0000004200000011', '0x0000020000000000', '0x0000000001400000', Z],
      ['0x0000000800000010', '0x0000028000000000', '0x0000000001300000', '0x0000008000013000'],
    ]);
  });
});

// Reference §3.5 (which fault, S2 bit, CLASS and IPA for each failure), §3.6 (S2PTW), §4.1 (layout).
describe('stage-2 faults carry S2 = 1, the IPA, and the CLASS of what stage 2 translated', () => {
  it('CLASS CD: the CD at an IPA stage 2 does not map (a write is still RnW = 0)', () => {
    const n = nestedSetup();
    n.drv.writeSte(n.sid, { V: 1, Config: 7, S1ContextPtr: 0x3000_0000, ...s2SteFields(n.s2, n.vmid) });
    expect(n.smmu.translate(n.sid, -1, 0x5000, ACCESS_WRITE)).toBe(-1);
    expect(n.drv.rawEvents().map(hex)).toEqual([
      ['0x0000000800000010', '0x0000008000000000', '0x0000000000005000', '0x0000000030000000'],
    ]);
  });

  it('CLASS TT: CD.TTB0 at an unmapped IPA, and a lower-level table at an unmapped IPA', () => {
    const n = nestedSetup();
    writeCd(n.guest, n.cdIpa, linuxCd(0x3000_0000, 1));
    expect(n.smmu.translate(n.sid, -1, 0x8000_0000, ACCESS_READ)).toBe(-1);
    // IPA = the level-0 descriptor's address: TTB0 + index(VA) * 8 = 0x30000000 + 1 * 8.
    expect(n.drv.rawEvents().map(hex)).toEqual([
      ['0x0000000800000010', '0x0000018800000000', '0x0000000080000000', '0x0000000030000000'],
    ]);
    // A level-1 table descriptor pointing at an unmapped IPA: still stage 2, CLASS TT (QEMU 10.0
    // reports S2 = 0 here; reference §11 calls that a deviation).
    const n2 = nestedSetup();
    n2.s1.map(0x1000000, GUEST_IPA + 0x200000, 0x1000, RW);
    const l1 = s1Read(n2.smmu, n2.sid, 0x1000000, 1);
    n2.guest.writeU32(l1.addr, 0x3000_0003);
    n2.smmu.translate(n2.sid, -1, 0x1000000, ACCESS_WRITE);
    const [e] = n2.drv.events();
    // The descriptor IPA is 0x30000000 + 8 * 8; the record keeps IPA[55:12] (Linux EVTQ_3_IPA).
    expect([e.name, e.s2, e.cls, e.rnw, e.ipa, e.inputAddr]).toEqual([
      'F_TRANSLATION',
      1,
      'TT',
      0,
      0x3000_0000,
      0x1000000,
    ]);
  });

  it('CLASS TT permission fault: TTRnW = 1 (a table read); S2PTW turns a Device-mapped table into one', () => {
    const n = nestedSetup();
    n.s1.map(0x1000000, GUEST_IPA + 0x200000, 0x1000, RW);
    // Remap the guest page holding the level-0 table as Device memory in stage 2 (MMIO).
    const pgdPage = n.s1.pgd;
    const pgdPa = n.guest.pa(pgdPage);
    n.s2.unmap(pgdPage, 0x1000);
    n.s2.map(pgdPage, pgdPa, 0x1000, IOMMU_READ | IOMMU_WRITE | IOMMU_MMIO);
    expect(n.smmu.translate(n.sid, -1, 0x1000000, ACCESS_READ)).toBe(-1);
    const [e] = n.drv.events();
    expect([e.name, e.s2, e.cls, e.ttRead, e.ipa]).toEqual(['F_PERMISSION', 1, 'TT', 1, pgdPage]);
    expect(e.words[1]).toBe('0x0000118800000000');
  });

  it('CLASS IN: the output IPA not mapped / not writable at stage 2', () => {
    const n = nestedSetup();
    n.s2.map(0x2000_0000, 0x9000_0000, 0x1000, IOMMU_READ);
    n.s1.map(0x1000000, 0x2000_0000, 0x1000, RW);
    n.s1.map(0x1001000, 0x2000_1000, 0x1000, RW);
    n.smmu.translate(n.sid, -1, 0x1000010, ACCESS_WRITE);
    n.smmu.translate(n.sid, -1, 0x1001010, ACCESS_READ);
    expect(n.drv.rawEvents().map(hex)).toEqual([
      ['0x0000000800000013', '0x0000028000000000', '0x0000000001000010', '0x0000000020000000'],
      ['0x0000000800000010', '0x0000028800000000', '0x0000000001001010', '0x0000000020001000'],
    ]);
  });
});

// Type codes and their fields: reference §4.1-4.2 (IHI 0070 §7.3); fetch addresses §2.1 / §3.5.
describe('every other event type, all 32 bytes', () => {
  it('C_BAD_STREAMID (with SSV and SubstreamID), C_BAD_STE, C_BAD_SUBSTREAMID, C_BAD_CD', () => {
    const p = plainSetup();
    p.drv.writeSte(6, { V: 0, Config: 4 });
    s1Domain(p, 7, { V: 0 });
    p.drv.writeSte(10, { V: 1, Config: 4 });
    p.smmu.translate(300, 5, 0x1000, ACCESS_READ);
    p.smmu.translate(6, -1, 0x1000, ACCESS_READ);
    p.smmu.translate(10, 4, 0x1000, ACCESS_READ);
    p.smmu.translate(7, -1, 0x1000, ACCESS_READ);
    expect(p.drv.rawEvents().map(hex)).toEqual([
      ['0x0000012c00005802', Z, Z, Z],
      ['0x0000000600000004', Z, Z, Z],
      ['0x0000000a00004008', Z, Z, Z],
      ['0x000000070000000a', Z, Z, Z],
    ]);
  });

  it('F_STREAM_DISABLED (substreams on, no SubstreamID, S1DSS terminate)', () => {
    const p = plainSetup({ preset: 'full' });
    p.drv.writeSte(9, { V: 1, Config: 5, S1ContextPtr: 0x600000, S1CDMax: 2, S1DSS: 0 });
    p.smmu.translate(9, -1, 0x1000, ACCESS_READ);
    expect(p.drv.rawEvents().map(hex)).toEqual([['0x0000000900000006', Z, Z, Z]]);
  });

  it('F_STE_FETCH and F_CD_FETCH carry the fetch address [55:3]', () => {
    const p = plainSetup();
    // Beyond the 64 GiB of RAM but inside the 44-bit OAS.
    const nowhere = 0x20_0000_0000;
    p.drv.writeSte(11, { V: 1, Config: 5, S1ContextPtr: nowhere + 0x40 });
    p.smmu.translate(11, -1, 0x1000, ACCESS_READ);
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN);
    p.drv.write64(REG.STRTAB_BASE, nowhere);
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
    p.smmu.translate(5, -1, 0x1000, ACCESS_READ);
    expect(p.drv.rawEvents().map(hex)).toEqual([
      ['0x0000000b00000009', Z, Z, '0x0000002000000040'],
      ['0x0000000500000003', Z, Z, '0x0000002000000140'],
    ]);
  });

  it('F_WALK_EABT: a stage-1 table outside RAM (S2 = 0, CLASS TT) and a stage-2 table outside RAM (S2 = 1)', () => {
    const p = plainSetup();
    const nowhere = 0x20_0000_0000;
    writeCd(p.mem, 0x400000, linuxCd(nowhere, 1));
    p.drv.writeSte(12, { V: 1, Config: 5, S1ContextPtr: 0x400000 });
    // VA 2^39 uses level-0 index 1: the aborting fetch is TTB0 + 8.
    p.smmu.translate(12, -1, 2 ** 39, ACCESS_WRITE);
    const s2 = IoPgtable.create(p.mem, { stage: 2, pgsizeBitmap: 0x40201000, ias: 44, oas: 44 }, p.heap)!;
    p.drv.writeSte(13, { V: 1, Config: 6, ...s2SteFields(s2, 2), S2TTB: nowhere });
    p.smmu.translate(13, -1, 0x1000, ACCESS_READ);
    expect(p.drv.rawEvents().map(hex)).toEqual([
      ['0x0000000c0000000b', '0x0000010000000000', '0x0000008000000000', '0x0000002000000008'],
      ['0x0000000d0000000b', '0x0000028800000000', '0x0000000000001000', '0x0000002000000000'],
    ]);
  });
});

describe('recording', () => {
  it('stage-1 faults need CD.R, stage-2 faults STE.S2R; configuration errors are always recorded (reference §4.3)', () => {
    const p = plainSetup();
    s1Domain(p, 8, { R: 0 });
    expect(p.smmu.translate(8, -1, 0x300000, ACCESS_WRITE)).toBe(-1);
    expect(p.smmu.result.event).toBe(0x10);
    const s2 = IoPgtable.create(p.mem, { stage: 2, pgsizeBitmap: 0x40201000, ias: 44, oas: 44 }, p.heap)!;
    p.drv.writeSte(9, { V: 1, Config: 6, ...s2SteFields(s2, 2), S2R: 0 });
    expect(p.smmu.translate(9, -1, 0x1000, ACCESS_READ)).toBe(-1);
    p.drv.writeSte(10, { V: 0 });
    p.smmu.translate(10, -1, 0, ACCESS_READ);
    expect(p.drv.events().map((e) => e.name)).toEqual(['C_BAD_STE']);
  });

  // The architected overflow flag (reference §4.3 names it; QEMU raises GERROR instead); IHI 0070 §7.4.
  it('a full queue drops records and toggles EVENTQ_PROD.OVFLG once until acknowledged', () => {
    const p = plainSetup({ evtqLog2: 1 });
    s1Domain(p, 8);
    const fault = (va: number) => p.smmu.translate(8, -1, va, ACCESS_READ);
    fault(0x1000);
    fault(0x2000);
    fault(0x3000); // dropped: queue of 2 is full
    expect(p.drv.reg(REG.EVENTQ_PROD) >>> 0).toBe((EVENTQ_OVFLG | 0b10) >>> 0);
    expect(p.drv.events().map((e) => e.inputAddr)).toEqual([0x1000, 0x2000]);
    // Still unacknowledged: more drops do not toggle again; space left is used normally.
    fault(0x4000);
    fault(0x5000);
    fault(0x6000);
    expect(p.drv.reg(REG.EVENTQ_PROD) >>> 31).toBe(1);
    expect(p.drv.events().map((e) => e.inputAddr)).toEqual([0x4000, 0x5000]);
    // Acknowledge (OVACKFLG = OVFLG), overflow again: OVFLG toggles back to 0.
    p.drv.write(REG.EVENTQ_CONS, (p.drv.reg(REG.EVENTQ_CONS) | EVENTQ_OVFLG) >>> 0);
    for (const va of [0x7000, 0x8000, 0x9000]) fault(va);
    expect(p.drv.reg(REG.EVENTQ_PROD) >>> 31).toBe(0);
    expect(p.smmu.eventq.discarded).toBe(3);
  });

  it('with EVENTQEN = 0 records are discarded without overflow (reference §4.3)', () => {
    const p = plainSetup();
    s1Domain(p, 8);
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_SMMUEN);
    for (let i = 0; i < 100; i++) p.smmu.translate(8, -1, 0x1000 * i, ACCESS_READ);
    expect(p.drv.reg(REG.EVENTQ_PROD)).toBe(0);
    expect(p.smmu.eventq.written).toBe(0);
  });

  it('a queue outside RAM raises GERROR.EVENTQ_ABT_ERR and stops delivery until acknowledged', () => {
    const p = plainSetup();
    s1Domain(p, 8);
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_SMMUEN);
    p.drv.write64(REG.EVENTQ_BASE, 0x20_0000_0000 + 6);
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
    p.smmu.translate(8, -1, 0x1000, ACCESS_READ);
    expect(p.drv.reg(REG.GERROR) & GERROR_EVENTQ_ABT_ERR).toBe(GERROR_EVENTQ_ABT_ERR);
    expect(p.drv.reg(REG.EVENTQ_PROD)).toBe(0);
    // Back to a good queue: still nothing while the error is active (IHI 0070 §7.2.1), then delivery.
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_SMMUEN);
    p.drv.write64(REG.EVENTQ_BASE, EVTQ + 6);
    p.drv.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
    p.smmu.translate(8, -1, 0x2000, ACCESS_READ);
    expect(p.smmu.eventq.written).toBe(0);
    p.drv.write(REG.GERRORN, p.drv.reg(REG.GERROR));
    p.smmu.translate(8, -1, 0x3000, ACCESS_READ);
    expect(p.drv.events().map((e) => e.inputAddr)).toEqual([0x3000]);
  });

  it('the eventq interrupt (wired line, and the MSI when SMMU_IDR0.MSI)', () => {
    const p = plainSetup({ preset: 'full' });
    s1Domain(p, 8, { IPS: 5 });
    p.smmu.translate(8, -1, 0x1000, ACCESS_READ);
    expect(p.irqs).toEqual([]);
    p.drv.write64(REG.EVENTQ_IRQ_CFG0, 0x900000);
    p.drv.write(REG.EVENTQ_IRQ_CFG1, 0xcafe);
    p.drv.write(REG.IRQ_CTRL, IRQ_CTRL_EVENTQ_IRQEN);
    expect(p.drv.reg(REG.IRQ_CTRLACK)).toBe(IRQ_CTRL_EVENTQ_IRQEN);
    p.smmu.translate(8, -1, 0x2000, ACCESS_READ);
    expect(p.irqs).toEqual(['eventq']);
    expect(p.mem.readU32(0x900000)).toBe(0xcafe);
  });
});
