/**
 * The command queue: every invalidation's reach (a stale translation survives a table edit until the
 * right command and a CMD_SYNC; the wrong one changes nothing), configuration-cache invalidation,
 * CERROR_ILL and CERROR_ABT with GERROR.CMDQ_ERR and its acknowledgement, and CMD_SYNC signalling.
 *
 * Expected reaches: IHI 0070 §4.3-4.4 and reference §5.3; the recorded 6.18 behaviour (§11: stale
 * after a PTE change, wrong-ASID TLBI_NH_VA changes nothing, CFGI_CD alone does not flush).
 */
import { describe, expect, it } from 'vitest';
import { ACCESS_READ, IoPgtable } from '../../src/pgtable/index.ts';
import {
  CERROR_ABT,
  CERROR_ILL,
  CMD_ATC_INV,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_PREFETCH_ADDR,
  CMD_PREFETCH_CONFIG,
  CMD_PRI_RESP,
  CMD_RESUME,
  CMD_STALL_TERM,
  CMD_SYNC,
  CMD_TLBI_EL2_ALL,
  CMD_TLBI_EL2_VA,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  CMD_TLBI_S2_IPA,
  CMD_TLBI_S12_VMALL,
  type CommandFields,
  CR0_CMDQEN,
  CR0_EVENTQEN,
  CR0_SMMUEN,
  CS_IRQ,
  EVT_C_BAD_CD,
  encodeCommand,
  GERROR_CMDQ_ERR,
  GERROR_MSI_CMDQ_ABT_ERR,
  REG,
} from '../../src/smmu/index.ts';
import {
  CMDQ,
  GUEST_IPA,
  GUEST_PA,
  linuxCd,
  nestedSetup,
  plainSetup,
  RW,
  s1Read,
  s2SteFields,
  writeCd,
} from './driver.ts';

const VA = 0x1000000;
const IPA_A = GUEST_IPA + 0x200000;
const IPA_B = GUEST_IPA + 0x201000;
const PA_A = GUEST_PA + 0x200000;
const PA_B = GUEST_PA + 0x201000;

type Nested = ReturnType<typeof nestedSetup>;

/** Translates, edits the stage-1 leaf behind the SMMU's back, runs `invalidate`, syncs, translates. */
function afterStage1Edit(invalidate: (n: Nested) => void) {
  const n = nestedSetup();
  n.s1.map(VA, IPA_A, 0x1000, RW);
  expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
  n.s1.unmap(VA, 0x1000);
  n.s1.map(VA, IPA_B, 0x1000, RW);
  // The TLB still holds the old translation (a real 6.18 + QEMU did the same, reference §11).
  expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
  invalidate(n);
  // Consumed but not completed: nothing changes before the CMD_SYNC.
  expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
  n.drv.cmd(CMD_SYNC);
  expect(n.smmu.pendingInvalidations).toBe(0);
  return n.smmu.translate(n.sid, -1, VA, ACCESS_READ);
}

describe('TLB invalidation reach on a combined (nested) entry', () => {
  const cases: [string, (n: Nested) => CommandFields & { op: number }, number][] = [
    ['TLBI_NH_VA with the ASID', (n) => ({ op: CMD_TLBI_NH_VA, vmid: n.vmid, asid: n.asid, addr: VA }), PA_B],
    ['TLBI_NH_VA with a wrong ASID', (n) => ({ op: CMD_TLBI_NH_VA, vmid: n.vmid, asid: 2, addr: VA }), PA_A],
    [
      'TLBI_NH_VA at another VA',
      (n) => ({ op: CMD_TLBI_NH_VA, vmid: n.vmid, asid: n.asid, addr: VA + 0x1000 }),
      PA_A,
    ],
    ['TLBI_NH_VA with a wrong VMID', (n) => ({ op: CMD_TLBI_NH_VA, vmid: 9, asid: n.asid, addr: VA }), PA_A],
    ['TLBI_NH_VAA', (n) => ({ op: CMD_TLBI_NH_VAA, vmid: n.vmid, addr: VA }), PA_B],
    ['TLBI_NH_ASID', (n) => ({ op: CMD_TLBI_NH_ASID, vmid: n.vmid, asid: n.asid }), PA_B],
    ['TLBI_NH_ASID with a wrong ASID', (n) => ({ op: CMD_TLBI_NH_ASID, vmid: n.vmid, asid: 7 }), PA_A],
    ['TLBI_NH_ALL', (n) => ({ op: CMD_TLBI_NH_ALL, vmid: n.vmid }), PA_B],
    ['TLBI_NH_ALL with a wrong VMID', () => ({ op: CMD_TLBI_NH_ALL, vmid: 5 }), PA_A],
    ['TLBI_S12_VMALL', (n) => ({ op: CMD_TLBI_S12_VMALL, vmid: n.vmid }), PA_B],
    ['TLBI_NSNH_ALL', () => ({ op: CMD_TLBI_NSNH_ALL }), PA_B],
    // Not required to touch combined entries (reference §5.3; QEMU leaves them too).
    ['TLBI_S2_IPA of the old IPA', (n) => ({ op: CMD_TLBI_S2_IPA, vmid: n.vmid, addr: IPA_A }), PA_A],
    // Configuration invalidation does not reach the TLB (reference §11: CFGI_CD alone does not flush).
    ['CFGI_CD', (n) => ({ op: CMD_CFGI_CD, sid: n.sid, ssid: 0 }), PA_A],
    ['CFGI_STE', (n) => ({ op: CMD_CFGI_STE, sid: n.sid, leaf: 1 }), PA_A],
    // Range invalidation (RIL, reference §5.2): TG 4KB, NUM 3, SCALE 1 -> 8 pages from VA - 0x4000 cover VA.
    [
      'range TLBI_NH_VA covering the VA',
      (n) => ({ op: CMD_TLBI_NH_VA, vmid: n.vmid, asid: n.asid, addr: VA - 0x4000, tg: 1, num: 3, scale: 1 }),
      PA_B,
    ],
    [
      'range TLBI_NH_VA ending before the VA',
      (n) => ({ op: CMD_TLBI_NH_VA, vmid: n.vmid, asid: n.asid, addr: VA - 0x8000, tg: 1, num: 3, scale: 1 }),
      PA_A,
    ],
  ];
  for (const [name, build, expected] of cases) {
    it(`${name} -> ${expected === PA_B ? 'new' : 'stale'} translation`, () => {
      const pa = afterStage1Edit((n) => {
        const { op, ...fields } = build(n);
        n.drv.cmd(op, fields);
      });
      expect(pa).toBe(expected);
    });
  }
});

describe('global entries (nG = 0) match every ASID of the VMID (IHI 0070 §4.4.2)', () => {
  function globalLeaf() {
    const n = nestedSetup();
    n.s1.map(VA, IPA_A, 0x1000, RW);
    // Clear nG in the leaf Linux wrote (it always sets nG for stage 1).
    const leaf = s1Read(n.smmu, n.sid, VA, 3);
    n.guest.writeU32(leaf.addr, leaf.words[0] & ~0x800);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
    n.s1.unmap(VA, 0x1000);
    n.s1.map(VA, IPA_B, 0x1000, RW);
    return n;
  }

  it('TLBI_NH_ASID leaves a global entry; TLBI_NH_VA with any ASID removes it', () => {
    const n = globalLeaf();
    n.drv.cmd(CMD_TLBI_NH_ASID, { vmid: n.vmid, asid: n.asid });
    n.drv.cmd(CMD_SYNC);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
    n.drv.cmd(CMD_TLBI_NH_VA, { vmid: n.vmid, asid: 0x77, addr: VA });
    n.drv.cmd(CMD_SYNC);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_B);
  });

  it('a CD with another ASID in the same VMID hits the global entry', () => {
    const n = globalLeaf();
    writeCd(n.guest, n.cdIpa, linuxCd(n.s1.pgd, 9));
    n.drv.cmd(CMD_CFGI_CD, { sid: n.sid, ssid: 0 });
    n.drv.cmd(CMD_SYNC);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
  });
});

// Reference §5.3: TLBI_S2_IPA reaches stage-2-only entries; NH_ALL stage 1 only; S12_VMALL both.
describe('stage-2-only entries and TLBI_S2_IPA', () => {
  function s2Only() {
    const n = nestedSetup();
    // A second device of the same VM, stage 2 only, sharing the stage-2 tables and VMID.
    n.drv.writeSte(9, { V: 1, Config: 6, ...s2SteFields(n.s2, n.vmid) });
    expect(n.smmu.translate(9, -1, IPA_A, ACCESS_READ)).toBe(PA_A);
    n.s2.unmap(IPA_A, 0x1000);
    n.s2.map(IPA_A, 0x7000_0000, 0x1000, RW);
    expect(n.smmu.translate(9, -1, IPA_A, ACCESS_READ)).toBe(PA_A);
    return n;
  }
  const cases: [string, (n: Nested) => CommandFields & { op: number }, number][] = [
    ['TLBI_S2_IPA', (n) => ({ op: CMD_TLBI_S2_IPA, vmid: n.vmid, addr: IPA_A, leaf: 1 }), 0x7000_0000],
    ['TLBI_S2_IPA with another VMID', () => ({ op: CMD_TLBI_S2_IPA, vmid: 3, addr: IPA_A }), PA_A],
    [
      'TLBI_S2_IPA range (TG 4KB, TTL 3)',
      (n) => ({ op: CMD_TLBI_S2_IPA, vmid: n.vmid, addr: IPA_A, tg: 1, ttl: 3 }),
      0x7000_0000,
    ],
    ['TLBI_NH_ALL (stage 1 only)', (n) => ({ op: CMD_TLBI_NH_ALL, vmid: n.vmid }), PA_A],
    ['TLBI_S12_VMALL', (n) => ({ op: CMD_TLBI_S12_VMALL, vmid: n.vmid }), 0x7000_0000],
  ];
  for (const [name, build, expected] of cases) {
    it(name, () => {
      const n = s2Only();
      const { op, ...fields } = build(n);
      n.drv.cmd(op, fields);
      n.drv.cmd(CMD_SYNC);
      expect(n.smmu.translate(9, -1, IPA_A, ACCESS_READ)).toBe(expected);
    });
  }

  it('after a stage-2 change a nested stream needs TLBI_NH_ALL as well (what Linux does for a nest parent, reference §5.3)', () => {
    const n = nestedSetup();
    n.s1.map(VA, IPA_A, 0x1000, RW);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
    n.s2.unmap(IPA_A, 0x1000);
    n.s2.map(IPA_A, 0x7000_0000, 0x1000, RW);
    n.drv.cmd(CMD_TLBI_S2_IPA, { vmid: n.vmid, addr: IPA_A });
    n.drv.cmd(CMD_SYNC);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
    n.drv.cmd(CMD_TLBI_NH_ALL, { vmid: n.vmid });
    n.drv.cmd(CMD_SYNC);
    expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(0x7000_0000);
  });
});

// Reference §5.1 (CFGI_STE_RANGE covers 2^(Range+1) StreamIDs; Range 31 = CFGI_ALL) and §5.3.
describe('configuration cache invalidation', () => {
  it('a changed STE is used only after CFGI_STE (or a range covering it, or CFGI_ALL) and a CMD_SYNC', () => {
    for (const cfgi of [
      { op: CMD_CFGI_STE, sid: 8, leaf: 1 },
      { op: CMD_CFGI_STE_RANGE, sid: 9, range: 1 }, // StreamIDs 8-11
      { op: CMD_CFGI_STE_RANGE, sid: 0, range: 31 }, // CMD_CFGI_ALL
    ]) {
      const n = nestedSetup();
      n.s1.map(VA, IPA_A, 0x1000, RW);
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
      n.drv.writeSte(n.sid, { V: 1, Config: 0 });
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
      n.drv.cmd(CMD_CFGI_STE, { sid: n.sid + 4 });
      n.drv.cmd(CMD_SYNC);
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
      const { op, ...fields } = cfgi;
      n.drv.cmd(op, fields);
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
      n.drv.cmd(CMD_SYNC);
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(-1);
      expect(n.smmu.result.silent).toBe(true);
    }
  });

  it('a changed CD is used only after CFGI_CD or CFGI_CD_ALL and a CMD_SYNC', () => {
    for (const cfgi of [CMD_CFGI_CD, CMD_CFGI_CD_ALL]) {
      const n = nestedSetup();
      n.s1.map(VA, IPA_A, 0x1000, RW);
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
      writeCd(n.guest, n.cdIpa, linuxCd(n.s1.pgd, n.asid, { V: 0 }));
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(PA_A);
      n.drv.cmd(cfgi, { sid: n.sid, ssid: 0 });
      n.drv.cmd(CMD_SYNC);
      expect(n.smmu.translate(n.sid, -1, VA, ACCESS_READ)).toBe(-1);
      expect(n.smmu.result.event).toBe(EVT_C_BAD_CD);
    }
  });
});

describe('prefetch', () => {
  it('CMD_PREFETCH_CONFIG / _ADDR are consumed without effect, even for an invalid STE (IHI 0070 §4.2)', () => {
    const n = nestedSetup();
    n.drv.writeSte(20, { V: 0 });
    n.drv.cmd(CMD_PREFETCH_CONFIG, { sid: 20 });
    n.drv.cmd(CMD_PREFETCH_ADDR, { sid: n.sid, addr: VA, size: 3 });
    n.drv.cmd(CMD_SYNC);
    expect(n.drv.reg(REG.CMDQ_CONS) & 0xfffff).toBe(n.drv.reg(REG.CMDQ_PROD));
    expect(n.drv.events()).toEqual([]);
    expect(n.smmu.tlb.size).toBe(0);
  });
});

// IHI 0070 §4.4.2.8-9 (TLBI_EL2_*; CR2.E2H selects the EL2 entries), as src/smmu/device.ts cites it.
describe('EL2 StreamWorld (full preset: SMMU_IDR0.Hyp)', () => {
  it('EL2 entries are reached by TLBI_EL2_*, not by TLBI_NH_*', () => {
    const { mem, smmu, drv, heap } = plainSetup({ preset: 'full' });
    const s1 = IoPgtable.create(mem, { stage: 1, pgsizeBitmap: 0x40201000, ias: 48, oas: 48 }, heap)!;
    s1.map(VA, 0x5000_0000, 0x1000, RW);
    writeCd(mem, 0x400000, linuxCd(s1.pgd, 0, { IPS: 5, EPD1: 0, T1SZ: 16, TG1: 2 }));
    // STRW = 0b10 with CR2.E2H = 0: NS-EL2 (one table, no ASID).
    drv.writeSte(3, { V: 1, Config: 5, S1ContextPtr: 0x400000, STRW: 2 });
    expect(smmu.translate(3, -1, VA, ACCESS_READ)).toBe(0x5000_0000);
    s1.unmap(VA, 0x1000);
    s1.map(VA, 0x6000_0000, 0x1000, RW);
    drv.cmd(CMD_TLBI_NH_ALL, { vmid: 0 });
    drv.cmd(CMD_TLBI_NSNH_ALL);
    drv.cmd(CMD_SYNC);
    expect(smmu.translate(3, -1, VA, ACCESS_READ)).toBe(0x5000_0000);
    drv.cmd(CMD_TLBI_EL2_VA, { addr: VA });
    drv.cmd(CMD_SYNC);
    expect(smmu.translate(3, -1, VA, ACCESS_READ)).toBe(0x6000_0000);
    s1.unmap(VA, 0x1000);
    s1.map(VA, 0x7000_0000, 0x1000, RW);
    drv.cmd(CMD_TLBI_EL2_ALL);
    drv.cmd(CMD_SYNC);
    expect(smmu.translate(3, -1, VA, ACCESS_READ)).toBe(0x7000_0000);
  });
});

// CMDQ_CONS.ERR, GERROR.CMDQ_ERR and the stop until GERRORN: reference §5.1 and IHI 0070 §7.1. Which
// commands are ILLEGAL: IHI 0070 §4.1.3 and each command's description; 0x07 (not architected,
// QEMU's CFGI_ALL) reference §5.1; the range TLBI encodings reference §5.2 (IHI 0070 §4.4.1.1).
describe('command errors', () => {
  const queue = (preset: string) => plainSetup({ preset });

  const illegal: [string, string, Uint32Array][] = [
    ['reserved opcode 0x00', 'qemu-virt', encodeCommand(0x00)],
    ['CMD_CFGI_VMS_PIDM without MPAM', 'qemu-virt', encodeCommand(0x07)],
    ['CMD_TLBI_EL3_ALL on the non-secure queue', 'qemu-virt', encodeCommand(0x18)],
    ['CMD_TLBI_S_S2_IPA on the non-secure queue', 'qemu-virt', encodeCommand(0x5a)],
    ['CMD_TLBI_EL2_ALL without Hyp', 'qemu-virt', encodeCommand(CMD_TLBI_EL2_ALL)],
    ['CMD_CFGI_STE with SSec = 1', 'qemu-virt', encodeCommand(CMD_CFGI_STE, { ssec: 1 })],
    ['CMD_SYNC with CS = 0b11', 'qemu-virt', encodeCommand(CMD_SYNC, { cs: 3 })],
    ['CMD_RESUME without the stall model', 'qemu-virt', encodeCommand(CMD_RESUME)],
    ['CMD_STALL_TERM without the stall model', 'qemu-virt', encodeCommand(CMD_STALL_TERM)],
    ['CMD_PRI_RESP without PRI', 'qemu-virt', encodeCommand(CMD_PRI_RESP)],
    ['CMD_ATC_INV without ATS', 'qemu-virt', encodeCommand(CMD_ATC_INV)],
    ['range TLBI with NUM = SCALE = TTL = 0', 'qemu-virt', encodeCommand(CMD_TLBI_NH_VA, { tg: 1 })],
    [
      'range TLBI, 16KB TG with TTL = 1 and no DS',
      'qemu-virt',
      encodeCommand(CMD_TLBI_S2_IPA, { tg: 2, ttl: 1 }),
    ],
    ['CMD_TLBI_NH_ALL on a stage-2-only SMMU', 's2', encodeCommand(CMD_TLBI_NH_ALL)],
    ['CMD_CFGI_CD on a stage-2-only SMMU', 's2', encodeCommand(CMD_CFGI_CD)],
    ['CMD_TLBI_S2_IPA on a stage-1-only SMMU', 'qemu-virt-s1', encodeCommand(CMD_TLBI_S2_IPA)],
    ['CMD_TLBI_S12_VMALL on a stage-1-only SMMU', 'qemu-virt-s1', encodeCommand(CMD_TLBI_S12_VMALL)],
  ];
  for (const [name, preset, bad] of illegal) {
    it(`${name}: CERROR_ILL, consumption stops at it until GERRORN acknowledges`, () => {
      const { smmu, drv, irqs } = queue(preset);
      drv.write(REG.IRQ_CTRL, 1);
      const cons0 = drv.reg(REG.CMDQ_CONS) & 0xfffff;
      drv.cmd(CMD_TLBI_NSNH_ALL);
      drv.submit(bad);
      drv.cmd(CMD_SYNC);
      // CONS stays at the illegal command; ERR [30:24] = CERROR_ILL; GERROR.CMDQ_ERR toggled.
      expect(drv.reg(REG.CMDQ_CONS)).toBe(((CERROR_ILL << 24) | (cons0 + 1)) >>> 0);
      expect(drv.reg(REG.GERROR) ^ drv.reg(REG.GERRORN)).toBe(GERROR_CMDQ_ERR);
      expect(irqs).toEqual(['gerror']);
      // More PROD writes do not restart it.
      drv.cmd(CMD_SYNC);
      expect(drv.reg(REG.CMDQ_CONS) & 0xfffff).toBe(cons0 + 1);
      // Replace the command and acknowledge: everything left is consumed.
      drv.writeWords(CMDQ + (cons0 + 1) * 16, encodeCommand(CMD_SYNC));
      drv.write(REG.GERRORN, drv.reg(REG.GERROR));
      expect(drv.reg(REG.CMDQ_CONS) & 0xfffff).toBe(cons0 + 4);
      expect(smmu.commandsConsumed).toBe(3 + 4);
    });
  }

  it('a command queue outside RAM is CERROR_ABT (reference §5.1: ERR 2 = read abort)', () => {
    const { drv } = queue('qemu-virt');
    drv.write(REG.CR0, CR0_EVENTQEN | CR0_SMMUEN);
    drv.write64(REG.CMDQ_BASE, 0x20_0000_0000 + 8);
    drv.write(REG.CMDQ_CONS, 0);
    drv.write(REG.CMDQ_PROD, 0);
    drv.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
    drv.write(REG.CMDQ_PROD, 1);
    expect(drv.reg(REG.CMDQ_CONS)).toBe(CERROR_ABT << 24);
    expect(drv.reg(REG.GERROR) & GERROR_CMDQ_ERR).toBe(GERROR_CMDQ_ERR);
  });
});

// CMD_SYNC CS = 1 (IRQ), MSIData, MSIAddr: reference §5.1; completion then signal: IHI 0070 §4.7.3.
describe('CMD_SYNC completion signals', () => {
  it('CS = IRQ writes MSIData to MSIAddr when the SMMU has MSIs, and raises the cmdq-sync line', () => {
    const { mem, drv, irqs } = plainSetup({ preset: 'full' });
    drv.sync({ cs: CS_IRQ, msiAddr: 0x900004, msiData: 0x12345678 });
    expect(mem.readU32(0x900004)).toBe(0x12345678);
    expect(irqs).toEqual(['cmdq-sync']);
    drv.sync({ cs: CS_IRQ, msiAddr: 0x20_0000_0000, msiData: 1 });
    expect(drv.reg(REG.GERROR) & GERROR_MSI_CMDQ_ABT_ERR).toBe(GERROR_MSI_CMDQ_ABT_ERR);
  });

  it('without MSIs (qemu-virt) only the wired line signals', () => {
    const { mem, drv, irqs } = plainSetup();
    drv.sync({ cs: CS_IRQ, msiAddr: 0x900004, msiData: 0x12345678 });
    expect(mem.readU32(0x900004)).toBe(0);
    expect(irqs).toEqual(['cmdq-sync']);
  });
});
