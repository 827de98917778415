/**
 * Nesting end to end (issue 5): type 6 on a 6.1 SMMUv3 host maps guest RAM at stage 2; the guest
 * programs stage 1 through its virtual SMMU; vfio-nest's binding extension makes the host STE nested;
 * the edu copies real bytes through both stages; faults reach the right owner.
 * Expected values: nested-iommu.md §3.3 (24 reads), §3.5 (S2/CLASS attribution), §5.3 (stale entries).
 */

import { describe, expect, it } from 'vitest';
import { GuestSmmuDriver } from '../../src/guest/smmu-driver.ts';
import { Host } from '../../src/host/host.ts';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../../src/iommu/types.ts';
import { ACCESS_READ } from '../../src/pgtable/index.ts';
import { REG } from '../../src/smmu/index.ts';
import { Vmm } from '../../src/vmm/vmm.ts';

const IPA = 0x4000_0000;
const RW = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
// The edu reaches 28-bit bus addresses (its dma_mask): guest VAs stay below 2^28.
const SRC_VA = 0x100_0000;
const DST_VA = 0x200_0000;
const SRC_IPA = IPA + 0x10_0000;
const DST_IPA = IPA + 0x20_0000;

function boot(kernel: '6.1' | '3.19' = '6.1') {
  const host = new Host({ kernel, iommu: 'smmuv3', nestBind: true });
  const vmm = new Vmm(host, { ramSize: 16 << 20 });
  const guest = new GuestSmmuDriver(vmm.vsmmu, vmm.ram, IPA + (12 << 20), IPA + (16 << 20));
  guest.init();
  guest.attachStage1(vmm.vsid, 1);
  expect(vmm.lastError).toBe(0);
  expect(guest.map(vmm.vsid, SRC_VA, SRC_IPA, 0x10000, RW)).toBe(0);
  expect(guest.map(vmm.vsid, DST_VA, DST_IPA, 0x10000, RW)).toBe(0);
  const pattern = Uint8Array.from({ length: 0x10000 }, (_, i) => (i * 7 + 3) & 0xff);
  vmm.ram.write(SRC_IPA, pattern);
  const drv = host.iommu as ArmSmmuV3;
  return { host, vmm, guest, pattern, drv, sid: host.devices[0].rid };
}

describe('type 6 + the guest stage 1, end to end', () => {
  for (const kernel of ['6.1', '3.19'] as const)
    it(`${kernel}: a 64 KiB pattern crosses both stages, and a cold nested miss makes 24 reads`, () => {
      const { host, vmm, pattern, sid } = boot(kernel);
      const w = host.smmu!.walkTrace(sid, -1, SRC_VA, ACCESS_READ);
      expect(w.pa).toBeGreaterThanOrEqual(0);
      expect(w.trace.walkReads).toHaveLength(24);
      expect(w.trace.walkReads.filter((r) => r.kind === 's1')).toHaveLength(4);
      vmm.copy(SRC_VA, DST_VA, 0x10000);
      expect(vmm.ram.read(DST_IPA, 0x10000)).toEqual(pattern);
    });

  // nested-iommu.md §2.3 (Config 0b111) and §3.1 (S1ContextPtr is an IPA).
  it('the host STE is nested (Config 7) with the guest CD table IPA and the host stage 2', () => {
    const { host, guest, vmm, sid } = boot();
    const w = host.smmu!.walkTrace(sid, -1, SRC_VA, ACCESS_READ);
    const ste = w.trace.reads.find((r) => r.kind === 'ste')!;
    expect(ste.words[0] & 0xf).toBe(0xf); // V | Config 0b111
    const cd = w.trace.reads.find((r) => r.kind === 'cd')!;
    expect(cd.addr).toBe(guest.streams.get(vmm.vsid)!.cd); // the CD was fetched at its IPA
  });
});

describe('faults go to their owner, and the DMA moves no byte', () => {
  it('a stage-1 hole: F_TRANSLATION (S2=0) in the guest event queue with the vSID; the host logs nothing', () => {
    const { vmm, guest, drv } = boot();
    const before = drv.eventLog.length;
    vmm.ram.fill(DST_IPA, 0x10, 0xaa);
    vmm.eduDma(0x300_0000, 4, 1); // unmapped VA
    const ev = guest.events();
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({
      type: 0x10,
      sid: vmm.vsid,
      s2: 0,
      cls: 'IN',
      inputAddr: 0x300_0000,
      rnw: 0,
    });
    expect(drv.eventLog.length).toBe(before);
  });

  // Queue mechanics: nested-iommu.md §4.3; the acknowledgement (CONS.OVACKFLG := PROD.OVFLG) is the
  // architecture's (IHI 0070 §7.4, as src/vmm/vsmmu.ts applies it), no reference section states it.
  it("the guest's event read acknowledges PROD.OVFLG as it stands, not what CONS.OVACKFLG held", () => {
    const { vmm, guest } = boot();
    vmm.vsmmu.writeReg32(REG.EVENTQ_CONS, 0x8000_0000);
    expect(guest.events()).toHaveLength(0);
    expect(vmm.vsmmu.readReg32(REG.EVENTQ_CONS)).toBe(0);
  });

  it('a stage-2 hole under a stage-1 table page: S2=1 CLASS=TT with the IPA, kept by the host', () => {
    const { vmm, guest, drv, sid } = boot();
    const s = guest.streams.get(vmm.vsid)!;
    // The guest's level-0 entry points at a level-1 table IPA that stage 2 does not map (no TLBI:
    // nothing was cached for this VA yet).
    const hole = 0x80_0000_0000;
    vmm.ram.writeU32(s.pgtbl.pgd, (hole % 2 ** 32) + 3);
    vmm.ram.writeU32(s.pgtbl.pgd + 4, Math.floor(hole / 2 ** 32));
    const before = drv.eventLog.length;
    vmm.eduDma(0x300_0000, 4, 0);
    expect(guest.events()).toHaveLength(0);
    const e = drv.eventLog.slice(before);
    expect(e).toHaveLength(1);
    expect(e[0].type).toBe(0x10);
    expect(Number(e[0].words[0] >> 32n)).toBe(sid);
    expect((e[0].words[1] >> 39n) & 1n).toBe(1n); // S2
    expect((e[0].words[1] >> 40n) & 3n).toBe(1n); // CLASS TT
    expect(e[0].words[3] & ~0xfffn).toBe(BigInt(hole)); // IPA
  });

  it('a stage-2 hole under the output page: S2=1 CLASS=IN, the host keeps it, nothing written', () => {
    const { vmm, guest, drv } = boot();
    const outside = 0x80_0000_0000;
    expect(guest.map(vmm.vsid, 0x300_0000, outside, 0x1000, RW)).toBe(0);
    const before = drv.eventLog.length;
    vmm.eduDma(0x300_0000, 4, 1);
    const e = drv.eventLog.slice(before);
    expect(e).toHaveLength(1);
    expect((e[0].words[1] >> 39n) & 1n).toBe(1n);
    expect((e[0].words[1] >> 40n) & 3n).toBe(2n); // CLASS IN
    expect(e[0].words[3] & ~0xfffn).toBe(BigInt(outside));
    expect(guest.events()).toHaveLength(0);
  });

  it('the CD table at an unmapped IPA: S2=1 CLASS=CD', () => {
    const { vmm, guest, drv } = boot();
    guest.writeSte(vmm.vsid, { V: 1, Config: 5, S1ContextPtr: 0x80_0000_0000, S1CIR: 1, S1COR: 1, S1CSH: 3 });
    expect(vmm.lastError).toBe(0);
    const before = drv.eventLog.length;
    vmm.ram.fill(DST_IPA, 0x10, 0x5a);
    vmm.eduDma(DST_VA, 4, 1);
    const e = drv.eventLog.slice(before);
    expect(e).toHaveLength(1);
    expect((e[0].words[1] >> 40n) & 3n).toBe(0n); // CLASS CD
    expect((e[0].words[1] >> 39n) & 1n).toBe(1n);
    expect([...vmm.ram.read(DST_IPA, 4)]).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
  });
});

describe('invalidation and unmap', () => {
  it('a stale stage-1 translation stays until the guest invalidates (TLBI_NH_VA, forwarded)', () => {
    const { vmm, guest } = boot();
    vmm.eduDma(SRC_VA, 4, 0); // the edu's buffer now holds the pattern's first bytes (not zero)
    vmm.eduDma(DST_VA, 4, 1); // fills the TLB for DST_VA
    const s = guest.streams.get(vmm.vsid)!;
    // Repoint DST_VA to another page without invalidating.
    s.pgtbl.unmap(DST_VA, 0x1000);
    expect(guest.map(vmm.vsid, DST_VA, IPA + 0x30_0000, 0x1000, RW)).toBe(0);
    vmm.ram.fill(DST_IPA, 4, 0);
    vmm.ram.fill(IPA + 0x30_0000, 4, 0);
    vmm.eduDma(DST_VA, 4, 1);
    expect([...vmm.ram.read(IPA + 0x30_0000, 4)]).toEqual([0, 0, 0, 0]); // the old page got it
    expect([...vmm.ram.read(DST_IPA, 4)]).not.toEqual([0, 0, 0, 0]);
    guest.invalidateVa(vmm.vsid, DST_VA, 99); // the wrong ASID changes nothing
    vmm.ram.fill(DST_IPA, 4, 0);
    vmm.eduDma(DST_VA, 4, 1);
    expect([...vmm.ram.read(IPA + 0x30_0000, 4)]).toEqual([0, 0, 0, 0]);
    guest.invalidateVa(vmm.vsid, DST_VA);
    vmm.eduDma(DST_VA, 4, 1);
    expect([...vmm.ram.read(IPA + 0x30_0000, 4)]).not.toEqual([0, 0, 0, 0]);
  });

  // vfio-type1.md §5 (unmap order: IOMMU unmap, sync, unpin, uncharge locked_vm).
  it('UNMAP_DMA of guest RAM removes stage 2 before unpinning: DMA then faults at stage 2; locked_vm returns', () => {
    const { vmm, drv } = boot();
    const locked = vmm.proc.mm.lockedVm;
    expect(locked).toBe((16 << 20) / 4096);
    vmm.eduDma(SRC_VA, 4, 0); // warm the TLB
    expect(vmm.container.unmapDma({ iova: 0, size: 0, flags: 2 })).toEqual({
      ret: 0,
      size: BigInt(16 << 20),
    });
    expect(vmm.proc.mm.lockedVm).toBe(0);
    expect(vmm.proc.mm.pinnedPages).toBe(0);
    const before = drv.eventLog.length;
    vmm.eduDma(SRC_VA, 4, 0);
    const e = drv.eventLog.slice(before);
    expect(e.length).toBeGreaterThan(0);
    expect((e[0].words[1] >> 39n) & 1n).toBe(1n); // stage 2 (the CD fetch, first)
  });
});
