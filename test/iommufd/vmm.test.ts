/**
 * The two nesting paths side by side on the same guest: type 6 + vfio-nest's binding extension (a 6.1
 * host: docs/nesting-uapi.md) and iommufd (a 6.18 host built with IOMMUFD: docs/iommufd.md). The guest
 * runs the same SMMU driver against the same VirtualSmmu, so its stream table, CD and stage-1 tables are
 * byte for byte the same; the nested DMA of a-nested-happy (kernel-answers/6.18-iommufd, seq 34-40) must
 * land the same bytes through both, and a stage-1 fault must reach the guest's event queue the same way.
 */

import { describe, expect, it } from 'vitest';
import { GuestSmmuDriver } from '../../src/guest/smmu-driver.ts';
import { Host } from '../../src/host/host.ts';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../../src/iommu/types.ts';
import { ACCESS_READ } from '../../src/pgtable/index.ts';
import { REG } from '../../src/smmu/index.ts';
import { IommufdVmm } from '../../src/vmm/iommufd-vmm.ts';
import { Vmm, VmmError } from '../../src/vmm/vmm.ts';
import type { VmmBase } from '../../src/vmm/vmm-base.ts';
import { physicalSte } from '../helpers/host-smmu.ts';

const IPA = 0x4000_0000;
const RW = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
// a-nested-happy: the source pattern at buffer 0x1000 (seed 3), VA 0x2000000 -> IPA 0x40001000,
// VA 0x1000000-0x1001fff -> IPA 0x40010000-0x40011fff.
const SRC_VA = 0x200_0000;
const SRC_IPA = IPA + 0x1000;
const DST_VA = 0x100_0000;
const DST_IPA = IPA + 0x1_0000;
const NEST_IGNORE = { 'arm_smmu_v3.nest_ignore_coherency': '1' };

function guestOn(vmm: VmmBase): GuestSmmuDriver {
  const guest = new GuestSmmuDriver(vmm.vsmmu, vmm.ram, IPA + (12 << 20), IPA + (16 << 20));
  guest.init();
  guest.attachStage1(vmm.vsid, 1);
  expect(vmm.lastError).toBe(0);
  expect(guest.map(vmm.vsid, DST_VA, DST_IPA, 0x2000, RW)).toBe(0);
  expect(guest.map(vmm.vsid, SRC_VA, SRC_IPA, 0x1000, RW)).toBe(0);
  vmm.ram.write(
    SRC_IPA,
    Uint8Array.from({ length: 0x800 }, (_, i) => (i * 7 + 3) & 0xff),
  );
  return guest;
}

function type6(): { vmm: Vmm; guest: GuestSmmuDriver } {
  const host = new Host({ kernel: '6.1', iommu: 'smmuv3', nestBind: true });
  const vmm = new Vmm(host, { ramSize: 16 << 20 });
  return { vmm, guest: guestOn(vmm) };
}

function iommufd(params: Record<string, string> = NEST_IGNORE): { vmm: IommufdVmm; guest: GuestSmmuDriver } {
  const host = new Host({ kernel: '6.18', iommu: 'smmuv3', iommufd: true, params });
  const vmm = new IommufdVmm(host, { ramSize: 16 << 20 });
  return { vmm, guest: guestOn(vmm) };
}

/** a-nested-happy seq 34-40 on one side: the bytes at the three targets afterwards. */
function nestedDma(vmm: VmmBase): Uint8Array[] {
  vmm.ram.fill(DST_IPA, 0x2000, 0);
  vmm.eduDma(SRC_VA, 0x800, 0);
  vmm.eduDma(DST_VA, 0x800, 1);
  vmm.eduDma(DST_VA + 0x1800, 0x800, 1);
  return [
    vmm.ram.read(DST_IPA, 0x800),
    vmm.ram.read(DST_IPA + 0x1800, 0x800),
    vmm.ram.read(DST_IPA + 0x1000, 0x800),
  ];
}

describe('type 6 + the binding extension and iommufd, on the same guest', () => {
  it('the guest builds the same stream table, CD and stage-1 tables on both', () => {
    const a = type6();
    const b = iommufd();
    const heap = (v: VmmBase) => v.ram.read(IPA + (12 << 20), 0x4_0000);
    // Not two empty heaps: the guest wrote its tables there.
    expect(heap(a.vmm).some((x) => x !== 0)).toBe(true);
    expect(heap(b.vmm)).toEqual(heap(a.vmm));
    expect(b.guest.streams.get(b.vmm.vsid)!.cd).toBe(a.guest.streams.get(a.vmm.vsid)!.cd);
  });

  it('the nested DMA of a-nested-happy lands the same bytes through both (recorded: seq 37, 39, 40)', () => {
    const a = nestedDma(type6().vmm);
    const b = nestedDma(iommufd().vmm);
    const pattern = Uint8Array.from({ length: 0x800 }, (_, i) => (i * 7 + 3) & 0xff);
    for (const side of [a, b]) {
      expect(side[0]).toEqual(pattern); // cmp_buf 0x1000 vs 0x10000: first_diff -1
      expect(side[1]).toEqual(pattern); // cmp_buf 0x1000 vs 0x11800: first_diff -1
      expect(side[2]).toEqual(new Uint8Array(0x800)); // lower half of 0x11000 untouched (a=3, b=0)
    }
    expect(b).toEqual(a);
  });

  it('both install the same nested STE: Config 7, the guest CD table IPA, MEV, over the stage 2', () => {
    const a = type6();
    const b = iommufd();
    const sa = physicalSte(a.vmm.host);
    const sb = physicalSte(b.vmm.host);
    for (const s of [sa, sb]) {
      expect(s.V).toBe(1);
      expect(s.Config).toBe(7);
      expect(s.MEV).toBe(1);
      expect(s.S2R).toBe(1);
    }
    const keys = [
      'S1ContextPtr',
      'S1Fmt',
      'S1CDMax',
      'S1DSS',
      'S1CIR',
      'S1COR',
      'S1CSH',
      'S2T0SZ',
      'S2SL0',
      'S2TG',
      'S2PS',
    ] as const;
    for (const k of keys) expect(sb[k], k).toBe(sa[k]);
  });

  it('a stage-1 fault reaches the guest queue with the vSID on both (type 6: GET_FAULTS; iommufd: the vEVENTQ)', () => {
    for (const { vmm, guest } of [type6(), iommufd()]) {
      const drv = vmm.host.iommu as ArmSmmuV3;
      const before = drv.eventLog.length;
      vmm.eduDma(0x1_0000, 4, 1); // a-nested-happy seq 41: VA 0x10000, not mapped at stage 1
      const ev = guest.events();
      expect(ev).toHaveLength(1);
      expect(ev[0]).toMatchObject({
        type: 0x10,
        sid: vmm.vsid,
        s2: 0,
        cls: 'IN',
        rnw: 0,
        inputAddr: 0x1_0000,
      });
      expect(drv.eventLog.length).toBe(before); // the host logs nothing
    }
  });
});

describe('the iommufd VMM', () => {
  it('without nest_ignore_coherency QEMU-like SMMUs refuse the vIOMMU (a-nested-happy seq 15: EOPNOTSUPP)', () => {
    const host = new Host({ kernel: '6.18', iommu: 'smmuv3', iommufd: true });
    expect(() => new IommufdVmm(host)).toThrow(new VmmError('IOMMU_VIOMMU_ALLOC', 95));
  });

  // nested-iommu.md §11 (recorded: stale entry, wrong ASID changes nothing) and §7.4 (TLBI_NH_VA forwarded).
  it('a stale stage-1 translation stays until the guest TLBI_NH_VA, passed raw to IOMMU_HWPT_INVALIDATE', () => {
    const { vmm, guest } = iommufd();
    vmm.eduDma(SRC_VA, 4, 0);
    vmm.eduDma(DST_VA, 4, 1); // fills the TLB for DST_VA
    const s = guest.streams.get(vmm.vsid)!;
    s.pgtbl.unmap(DST_VA, 0x1000);
    expect(guest.map(vmm.vsid, DST_VA, IPA + 0x30_0000, 0x1000, RW)).toBe(0);
    vmm.ram.fill(DST_IPA, 4, 0);
    vmm.eduDma(DST_VA, 4, 1);
    expect([...vmm.ram.read(IPA + 0x30_0000, 4)]).toEqual([0, 0, 0, 0]); // the old page got it
    guest.invalidateVa(vmm.vsid, DST_VA, 99); // wrong ASID: nothing
    vmm.eduDma(DST_VA, 4, 1);
    expect([...vmm.ram.read(IPA + 0x30_0000, 4)]).toEqual([0, 0, 0, 0]);
    guest.invalidateVa(vmm.vsid, DST_VA);
    expect(vmm.lastError).toBe(0);
    vmm.eduDma(DST_VA, 4, 1);
    expect([...vmm.ram.read(IPA + 0x30_0000, 4)]).not.toEqual([0, 0, 0, 0]);
  });

  // nested-iommu.md §7.3 (a guest STE change is a new nested HWPT; vSTE Config 4 -> the S2 STE, Config 6)
  // and §11 (recorded: a bypass vSTE gives S2 only).
  it('a new vSTE is a new nested HWPT: bypass gives stage 2 only, and the old HWPT is destroyed', () => {
    const { vmm, guest } = iommufd();
    const first = vmm.nestedId!;
    guest.writeSte(vmm.vsid, { V: 1, Config: 4 });
    expect(vmm.lastError).toBe(0);
    expect(vmm.nestedId).not.toBe(first);
    expect(vmm.iommufd.destroy(first)).toBe(-2); // ENOENT: gone already
    expect(physicalSte(vmm.host).Config).toBe(6);
    // Stage 2 only: the IOVA is the IPA, and it lands on the VMM's page behind that guest address.
    vmm.ram.fill(SRC_IPA, 4, 0x11);
    const pa = vmm.host.smmu!.translate(vmm.host.devices[0].rid, -1, SRC_IPA, ACCESS_READ);
    expect(pa).toBe(vmm.proc.mm.fault(vmm.ram.vaddr + (SRC_IPA - IPA), false));
  });

  it('stage-2 faults stay with the host, with the physical StreamID (b-s1-faults seq 42)', () => {
    const { vmm, guest } = iommufd();
    expect(guest.map(vmm.vsid, 0x130_0000, 0x80_0001_3000, 0x1000, RW)).toBe(0);
    const drv = vmm.host.iommu as ArmSmmuV3;
    const before = drv.eventLog.length;
    vmm.eduDma(0x130_0000, 4, 1);
    expect(guest.events()).toHaveLength(0);
    const e = drv.eventLog.slice(before);
    expect(e).toHaveLength(1);
    expect(Number(e[0].words[0] >> 32n)).toBe(vmm.host.devices[0].rid);
    expect(e[0].words[1]).toBe(0x0000_0280_0000_0000n); // S2, CLASS IN, write
  });

  it('shutdown unbinds, destroys everything and unpins guest RAM (VmPin back to 0)', () => {
    const { vmm } = iommufd();
    expect(vmm.proc.status().VmPin_kB).toBe(16 << 10);
    vmm.shutdown();
    expect(vmm.proc.mm.pinnedVm).toBe(0);
    expect(vmm.proc.mm.pinnedPages).toBe(0);
    expect(physicalSte(vmm.host).Config).toBe(0); // abort: back to the blocking domain
    // The vSMMU's ID registers are the host SMMU's, stage 2 hidden.
    expect(vmm.vsmmu.readReg32(REG.IDR0) & 1).toBe(0);
  });
});
