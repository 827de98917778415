/**
 * The register file: preset ID words, enables and their acknowledgements, guarded registers, GBPA's
 * update protocol, GERROR/GERRORN, IRQ_CTRL and the MSI configuration registers.
 */
import { describe, expect, it } from 'vitest';
import { PhysMem } from '../../src/mm/physmem.ts';
import {
  CR0_CMDQEN,
  CR0_EVENTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  decodeFeatures,
  GBPA_ABORT,
  GBPA_UPDATE,
  IRQ_CTRL_EVENTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  REG,
  SMMU_PRESETS,
  Smmu,
} from '../../src/smmu/index.ts';
import { KERNEL_ANSWERS, loadRecording } from '../helpers/recordings.ts';

function dev(preset = 'qemu-virt') {
  const smmu = new Smmu(new PhysMem(), { preset });
  return { smmu, r: (o: number) => smmu.readReg32(o), w: (o: number, v: number) => smmu.writeReg32(o, v) };
}

describe('ID registers', () => {
  it('qemu-virt reads back the words Linux 6.18 got from QEMU 10 (IOMMU_GET_HW_INFO)', () => {
    // kernel-answers/6.18-iommufd/a-nested-happy.jsonl, get_hw_info: idr[0..5], iidr, aidr.
    const { r } = dev();
    const idr = [REG.IDR0, REG.IDR1, REG.IDR2, REG.IDR3, REG.IDR4, REG.IDR5].map(r);
    expect(idr).toEqual([0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x00000074]);
    expect([r(REG.IIDR), r(REG.AIDR)]).toEqual([0, 1]);
    // The same words, read from the recording.
    const rec = loadRecording(KERNEL_ANSWERS, '6.18-iommufd', 'a-nested-happy.jsonl');
    const hw = rec.lines.flat().find((l) => l.op === 'get_hw_info')!;
    expect(idr.map((v) => `0x${v.toString(16).padStart(8, '0')}`)).toEqual(hw.idr);
    expect([r(REG.IIDR), r(REG.AIDR)].map((v) => `0x${v.toString(16)}`)).toEqual([hw.iidr, hw.aidr]);
  });

  it('decodes the features the words claim (IHI 0070 §6.3.1-6.3.6)', () => {
    const f = decodeFeatures(SMMU_PRESETS['qemu-virt']);
    expect({
      s1p: f.s1p,
      s2p: f.s2p,
      oas: f.oasBits,
      ias: f.iasBits,
      granules: f.granules,
      sid: f.sidSize,
      ssid: f.ssidSize,
      cmdqs: f.cmdqs,
      eventqs: f.eventqs,
      stall: f.stallModel,
      term: f.termModel,
      stLevel: f.stLevel,
      msi: f.msi,
      ril: f.ril,
      had: f.had,
      xnx: f.xnx,
      asid16: f.asid16,
      vmid16: f.vmid16,
    }).toEqual({
      s1p: true,
      s2p: true,
      oas: 44,
      ias: 44,
      granules: [12, 14, 16],
      sid: 16,
      ssid: 0,
      cmdqs: 19,
      eventqs: 19,
      stall: 1,
      term: true,
      stLevel: 1,
      msi: false,
      ril: true,
      had: true,
      xnx: true,
      asid16: true,
      vmid16: true,
    });
  });

  it('single-stage presets clear S2P or S1P', () => {
    expect(dev('qemu-virt-s1').r(REG.IDR0)).toBe(0x0d44101a);
    expect(dev('qemu-virt-s1').r(REG.IDR3) & 0x10).toBe(0);
    expect(dev('s2').r(REG.IDR0)).toBe(0x0d441019);
  });

  it('ID registers ignore writes; unknown offsets read as zero and ignore writes', () => {
    const { r, w } = dev();
    w(REG.IDR0, 0);
    expect(r(REG.IDR0)).toBe(0x0d44101b);
    w(0x3000, 5);
    expect(r(0x3000)).toBe(0);
  });
});

describe('control registers', () => {
  it('CR0ACK follows CR0; unsupported enables read as zero', () => {
    const { r, w } = dev();
    w(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_PRIQEN);
    expect(r(REG.CR0)).toBe(CR0_CMDQEN | CR0_EVENTQEN);
    expect(r(REG.CR0ACK)).toBe(CR0_CMDQEN | CR0_EVENTQEN);
  });

  it('guarded registers ignore writes while their enable is set (SMMUv3.2 rule)', () => {
    const { r, w } = dev();
    w(REG.STRTAB_BASE, 0x1000);
    w(REG.CMDQ_BASE, 0x2000 | 4);
    w(REG.EVENTQ_BASE, 0x3000 | 4);
    w(REG.CR2, 2);
    w(REG.CR0, CR0_SMMUEN | CR0_CMDQEN | CR0_EVENTQEN);
    w(REG.STRTAB_BASE, 0x5000);
    w(REG.STRTAB_BASE_CFG, 3);
    w(REG.CMDQ_BASE, 0x6000 | 4);
    w(REG.CMDQ_CONS, 3);
    w(REG.EVENTQ_BASE, 0x7000 | 4);
    w(REG.EVENTQ_PROD, 3);
    w(REG.CR2, 0);
    expect(
      [
        REG.STRTAB_BASE,
        REG.STRTAB_BASE_CFG,
        REG.CMDQ_BASE,
        REG.CMDQ_CONS,
        REG.EVENTQ_BASE,
        REG.EVENTQ_PROD,
        REG.CR2,
      ].map(r),
    ).toEqual([0x1000, 0, 0x2004, 0, 0x3004, 0, 2]);
    // EVENTQ_CONS and CMDQ_PROD are always writable.
    w(REG.EVENTQ_CONS, 0x80000001);
    expect(r(REG.EVENTQ_CONS)).toBe(0x80000001);
  });

  it('GBPA: only a write with Update = 1 takes effect, and Update reads back 0 at once', () => {
    const { r, w } = dev();
    w(REG.GBPA, GBPA_ABORT);
    expect(r(REG.GBPA)).toBe(0);
    w(REG.GBPA, (GBPA_UPDATE | GBPA_ABORT | (2 << 16)) >>> 0);
    expect(r(REG.GBPA)).toBe((GBPA_ABORT | (2 << 16)) >>> 0);
  });

  it('IRQ_CTRLACK follows IRQ_CTRL; the PRI enable needs PRI', () => {
    const { r, w } = dev();
    w(REG.IRQ_CTRL, IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_EVENTQ_IRQEN | IRQ_CTRL_PRIQ_IRQEN);
    expect(r(REG.IRQ_CTRLACK)).toBe(IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_EVENTQ_IRQEN);
  });

  it('MSI configuration registers: RAZ/WI without MSIs, writable with IRQEN clear', () => {
    const q = dev();
    q.w(REG.GERROR_IRQ_CFG1, 7);
    expect(q.r(REG.GERROR_IRQ_CFG1)).toBe(0);
    const f = dev('full');
    f.w(REG.GERROR_IRQ_CFG0, 0x1003);
    f.w(REG.GERROR_IRQ_CFG1, 7);
    expect([f.r(REG.GERROR_IRQ_CFG0), f.r(REG.GERROR_IRQ_CFG1)]).toEqual([0x1000, 7]);
    f.w(REG.IRQ_CTRL, IRQ_CTRL_GERROR_IRQEN);
    f.w(REG.GERROR_IRQ_CFG1, 9);
    expect(f.r(REG.GERROR_IRQ_CFG1)).toBe(7);
  });

  it('queue LOG2SIZE reads back as written but is capped at IDR1.CMDQS / EVENTQS for use', () => {
    const { smmu, r, w } = dev();
    w(REG.CMDQ_BASE, 0x10000 | 31);
    expect(r(REG.CMDQ_BASE)).toBe(0x1001f);
    expect(smmu.cmdq.base.log2size).toBe(19);
  });
});
