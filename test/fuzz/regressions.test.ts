/**
 * Every bug the fuzzers found, as the smallest sequence that showed it, with the rule that decides
 * the right answer. Each was a divergence between the model and the shadow (or an invariant break);
 * each is fixed in src/ and must stay fixed.
 */

import { describe, expect, it } from 'vitest';
import { GuestSmmuDriver } from '../../src/guest/smmu-driver.ts';
import { Host } from '../../src/host/host.ts';
import type { Process } from '../../src/host/process.ts';
import {
  openContainer,
  openGroup,
  type VfioContainerHandle,
  type VfioGroupHandle,
} from '../../src/host/vfio-api.ts';
import { REG } from '../../src/smmu/index.ts';
import { EFAULT } from '../../src/uapi/errno.ts';
import type { KernelVersion } from '../../src/uapi/profile.ts';
import { Vmm } from '../../src/vmm/vmm.ts';
import type { FuzzConfig } from './facts.ts';
import { mappedSetup, type Op } from './ops.ts';
import { World } from './world.ts';

function assigned(kernel: KernelVersion, iommu: 'intel' | 'virtio' | 'smmuv3', type = 3) {
  const host = new Host({
    kernel,
    iommu,
    params: iommu === 'virtio' ? { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' } : {},
  });
  const p = host.spawn();
  const c = openContainer(p) as VfioContainerHandle;
  const g = openGroup(p, host.groups[0].id) as VfioGroupHandle;
  expect(g.setContainer(c)).toBe(0);
  expect(c.setIommu(type)).toBe(0);
  return { host, p, c, g, dev: host.devices[0] };
}

function reach(host: Host, iova: number, write = false): number {
  const hw = host.iommu.hw as unknown as { faults?: unknown[] };
  const n = hw.faults?.length ?? 0;
  const pa = host.iommu.hw.translate(host.devices[0], iova, write, 4);
  hw.faults?.splice(n);
  return pa;
}

describe('regressions found by the fuzzers', () => {
  it('virtio-iommu: an UNMAP request covers the whole mapping the driver removed (viommu_unmap_pages)', () => {
    // One MAP request of 16 pages whose IOVA and PA are not congruent mod 8 KiB; the core then unmaps
    // it with a first 4 KiB piece, which removes the driver's whole mapping. The UNMAP sent to the
    // device must cover [iova, iova + unmapped), or the device keeps translating to unpinned pages.
    for (const kernel of ['3.19', '6.12'] as const) {
      const { host, p, c } = assigned(kernel, 'virtio');
      const huge = p.mmap(4 << 20, { hugeLg2: 21 });
      expect(c.mapDma({ vaddr: huge + 14 * 4096, iova: 0x10_1000, size: 0x1_0000 })).toBe(0);
      expect(reach(host, 0x10_5000)).toBeGreaterThan(0);
      expect(c.unmapDma({ iova: 0x10_1000, size: 0x1_0000 })).toEqual({ ret: 0, size: 0x1_0000n });
      expect(reach(host, 0x10_1000)).toBe(-1);
      expect(reach(host, 0x10_5000)).toBe(-1);
      expect(p.mm.pinnedPages).toBe(0);
    }
  });

  it('virtio-iommu: a MAP that fails after mapping a first run leaves nothing in the device', () => {
    // 3.19's 64 KiB RLIMIT_MEMLOCK without CAP_IPC_LOCK: 16 pages pin and map, the 17th is ENOMEM.
    const { host, p, c } = assigned('3.19', 'virtio', 1);
    const huge = p.mmap(4 << 20, { hugeLg2: 21 });
    p.task.setCapabilities(0);
    expect(c.mapDma({ vaddr: huge + 14 * 4096, iova: 0x10_1000, size: 0x10_0000 })).toBe(-12);
    expect(reach(host, 0x10_1000)).toBe(-1);
    expect(p.mm.lockedVm).toBe(0);
  });

  it('intel-iommu: a MAP beyond the domain width is EFAULT, not aliased into the low IOVAs (3.19)', () => {
    // 3.19 has no valid-IOVA list (vfio-type1.md §8, seed-era.md §3.1), so the driver decides:
    // intel_iommu_map refuses an address its 39-bit width cannot translate ("iommu width is not
    // sufficient for the mapped address", EFAULT). The model used to index the 3-level table modulo
    // 2^39 and let the device reach the buffer at IOVA 1 MiB.
    const { host, p, c } = assigned('3.19', 'intel');
    const buf = p.mmap(1 << 20);
    for (const iova of [2 ** 39 + 0x10_0000, 2 ** 48, 2n ** 64n - 0x1000n])
      expect(c.mapDma({ vaddr: buf, iova, size: 0x1000 })).toBe(-EFAULT);
    expect(reach(host, 0x10_0000)).toBe(-1);
    expect(p.mm.pinnedPages).toBe(0);
    // A range that starts inside and ends beyond fails whole.
    expect(c.mapDma({ vaddr: buf, iova: 2 ** 39 - 0x1000, size: 0x2000 })).toBe(-EFAULT);
    expect(reach(host, 2 ** 39 - 0x1000)).toBe(-1);
  });

  it.each(['3.19', '6.1'] as const)(
    '%s: hugetlb memory has no zero page: a read-only map of it is charged',
    (kernel) => {
      // The shared zero page backs read faults of untouched anonymous 4 KiB memory only (vfio-type1.md
      // §4; R 6.1 x2-zero-page): a hugetlb fault always allocates a huge page, which is pinned and charged.
      const { p, c } = assigned(kernel, 'intel');
      const huge = p.mmap(2 << 20, { hugeLg2: 21 });
      expect(c.mapDma({ vaddr: huge, iova: 0x10_0000, size: 0x4000, flags: 1 })).toBe(0);
      expect(p.mm.lockedVm).toBe(4);
      expect(p.mm.pinnedPages).toBe(4);
    },
  );

  it('6.1: a read-only map over touched then untouched pages charges only the touched ones', () => {
    // pin_user_pages returns the zero page for the untouched pages; vfio counts it reserved, which
    // ends the run: the untouched pages are neither faulted in nor charged (vfio-type1.md §4).
    const { p, c } = assigned('6.1', 'intel');
    const buf = p.mmap(1 << 20);
    p.writeMemory(buf, new Uint8Array(4 * 4096).fill(1));
    expect(c.mapDma({ vaddr: buf, iova: 0x10_0000, size: 0x2_0000, flags: 1 })).toBe(0);
    expect(p.mm.lockedVm).toBe(4);
    expect(p.mm.pinnedPages).toBe(4);
    // The untouched pages stay untouched: a later write map of them charges them then.
    expect(c.mapDma({ vaddr: buf + 0x4000, iova: 0x20_0000, size: 0x1_c000 })).toBe(0);
    expect(p.mm.lockedVm).toBe(32);
  });

  it('6.1: unpinning a physically contiguous run that starts on the zero page drops the pins after it', () => {
    // A read-only map over [touched x4, untouched, touched, untouched...]: the untouched pages pin the
    // shared zero page, and the zero page can sit right below a touched page's frame, so the unmap
    // finds one physically contiguous run [zero page, touched page]. vfio_unpin_pages_remote skips
    // the reserved pfn and unpins the next; the model used to stop at the first unpinned page.
    for (const kernel of ['3.19', '6.1'] as const) {
      const { p, c } = assigned(kernel, 'intel', 1);
      const buf = p.mmap(1 << 20);
      expect(c.mapDma({ vaddr: buf, iova: 0x10_0000, size: 0x4000 })).toBe(0);
      p.writeMemory(buf + 5 * 4096, new Uint8Array(4096).fill(1));
      expect(c.mapDma({ vaddr: buf, iova: 0x10_4000, size: 0x10_0000, flags: 1 })).toBe(0);
      // The case the fuzzer met: the zero page's frame is right below page 5's.
      expect(p.host.phys.zeroPage + 4096).toBe(p.mm.fault(buf + 5 * 4096, false, false));
      expect(p.mm.pinnedPages).toBe(4 + 5);
      expect(c.unmapDma({ iova: 0, size: 0, flags: kernel === '6.1' ? 2 : 0 }).ret).toBe(
        kernel === '6.1' ? 0 : -22,
      );
      p.exit();
      expect(p.mm.pinnedPages).toBe(0);
      expect(p.mm.lockedVm).toBe(0);
    }
  });

  it('3.19 has neither the no-IOMMU mode (4.5) nor dma_entry_limit (5.1): no parameter, CHECK_EXTENSION(8) = 0', () => {
    // seed-era.md §2.1: NOIOMMU_IOMMU did not exist in 3.19 (0 before and after SET_IOMMU); the
    // model offered /sys/module/vfio/parameters/enable_unsafe_noiommu_mode and then answered 1.
    const host = new Host({ kernel: '3.19', iommu: 'intel' });
    const p = host.spawn();
    expect(p.open('/sys/module/vfio/parameters/enable_unsafe_noiommu_mode')).toBe(-2);
    expect(p.open('/sys/module/vfio_iommu_type1/parameters/dma_entry_limit')).toBe(-2);
    const c = openContainer(p) as VfioContainerHandle;
    expect(c.checkExtension(8)).toBe(0);
    expect(() => new Host({ kernel: '3.19', params: { 'vfio.enable_unsafe_noiommu_mode': '1' } })).toThrow(
      /unknown module parameter 'vfio.enable_unsafe_noiommu_mode'/,
    );
    // 6.1 has both: with the parameter set, an empty container answers 1 for ext 8 (vfio-type1.md §3.2).
    const h61 = new Host({ kernel: '6.1', params: { 'vfio.enable_unsafe_noiommu_mode': '1' } });
    expect((openContainer(h61.spawn()) as VfioContainerHandle).checkExtension(8)).toBe(1);
  });

  describe("the VMM's virtual SMMUv3 under a hostile guest (guest-fuzz.ts)", () => {
    const setup = () => {
      const host = new Host({ kernel: '6.1', iommu: 'smmuv3', nestBind: true });
      const vmm = new Vmm(host, { ramSize: 4 << 20, ipaBase: 0x4000_0000 });
      const guest = new GuestSmmuDriver(vmm.vsmmu, vmm.ram, 0x4010_0000, 0x4040_0000);
      guest.init();
      return { vmm, v: vmm.vsmmu };
    };
    const record = (): [bigint, bigint, bigint, bigint] => [0x10n, 0n, 0n, 0n];

    it('a full event queue keeps the overflow flagged however many records it drops (IHI 0070 §7.4)', () => {
      const { v } = setup();
      const base = v.readReg32(REG.EVENTQ_BASE);
      v.writeReg32(REG.CR0, v.readReg32(REG.CR0) & ~4);
      v.writeReg32(REG.EVENTQ_BASE, ((base & ~0x1f) | 1) >>> 0); // two entries
      v.writeReg32(REG.EVENTQ_PROD, 0);
      v.writeReg32(REG.EVENTQ_CONS, 0);
      v.writeReg32(REG.CR0, v.readReg32(REG.CR0) | 4);
      expect([v.deliverEvent(record(), 0x10), v.deliverEvent(record(), 0x10)]).toEqual([true, true]);
      // The third and fourth are lost: OVFLG toggles once and stays set until the guest acknowledges.
      expect([v.deliverEvent(record(), 0x10), v.deliverEvent(record(), 0x10)]).toEqual([false, false]);
      expect(v.readReg32(REG.EVENTQ_PROD) >>> 31).not.toBe(v.readReg32(REG.EVENTQ_CONS) >>> 31);
      expect(v.dropped).toBe(2);
    });

    it('queues and a stream table outside guest RAM abort instead of throwing', () => {
      const { vmm, v } = setup();
      v.writeReg32(REG.CR0, 0);
      v.writeReg32(REG.EVENTQ_BASE, 0x1000 | 5); // IPA 0x1000: not guest RAM
      v.writeReg32(REG.EVENTQ_BASE + 4, 0);
      v.writeReg32(REG.CMDQ_BASE, 0x2000 | 5);
      v.writeReg32(REG.CMDQ_BASE + 4, 0);
      v.writeReg32(REG.STRTAB_BASE, 0);
      v.writeReg32(REG.CR0, 0xd);
      // An event: GERROR.EVENTQ_ABT_ERR.
      expect(v.deliverEvent(record(), 0x10)).toBe(false);
      expect((v.readReg32(REG.GERROR) ^ v.readReg32(REG.GERRORN)) & 4).toBe(4);
      // A command: CMDQ_CONS.ERR = CERROR_ABT (2), GERROR.CMDQ_ERR.
      v.writeReg32(REG.CMDQ_PROD, 1);
      expect((v.readReg32(REG.CMDQ_CONS) >>> 24) & 0x7f).toBe(2);
      expect((v.readReg32(REG.GERROR) ^ v.readReg32(REG.GERRORN)) & 1).toBe(1);
      // A vSTE change with the stream table outside RAM: an invalid vSTE, the device aborted.
      expect(() => vmm.steChanged(vmm.vsid)).not.toThrow();
      expect(() => vmm.eduDma(0x1000, 4, 0)).not.toThrow();
    });
  });
});

describe('the fuzz checks themselves', () => {
  const cfg: FuzzConfig = { kernel: '6.12', iommu: 'smmuv3', params: {} };
  const setup = (w: World) => {
    for (const op of mappedSetup(3)) w.step(op);
  };
  /** UNMAP_DMA of what setup mapped. */
  const unmapAll: Op = {
    k: 'unmap',
    fd: { sel: 'container', i: 0 },
    iova: 0x10_0000n,
    size: 0x4000n,
    flags: 0,
    argsz: 24,
    via: 'bytes',
  };

  it('a stray leaf in the stage-1 table is an isolation breach', () => {
    const w = new World(cfg);
    setup(w);
    // Copy the leaf of IOVA 1 MiB to IOVA 1 MiB + 64 KiB, behind the driver's back.
    const dom = w.host.groups[0].domain as unknown as { pgtbl: { pgd: number } };
    const leafSlot = findLeafSlot(w.host, dom.pgtbl.pgd, 0x10_0000);
    const mem = w.host.phys;
    mem.writeU32(leafSlot + 16 * 8, mem.readU32(leafSlot));
    mem.writeU32(leafSlot + 16 * 8 + 4, mem.readU32(leafSlot + 4));
    expect(() => w.step({ k: 'setIommu', fd: { sel: 'container', i: 0 }, type: 3 })).not.toThrow(); // fails, no check
    expect(() => w.step(unmapAll)).toThrow(
      /the device reaches IOVA 0x110000\+0x1000 -> PA 0x[0-9a-f]+, which no mapping covers/,
    );
  });

  it('an answer that differs from the references is reported with the step and host', () => {
    const w = new World(cfg);
    setup(w);
    // Pretend the shadow believed in a different dma_entry_limit: the next MAP's dma_avail differs.
    w.shadow!.group.container!.avail += 1;
    expect(() =>
      w.step({ k: 'info', fd: { sel: 'container', i: 0 }, argsz: 4096, len: -1, via: 'bytes' }),
    ).toThrow(/GET_INFO: expected .*"avail":65535.*got .*"avail":65534/s);
  });

  it('a failed call that changes state is caught by the digest', () => {
    const w = new World(cfg);
    setup(w);
    const p: Process = w.proc;
    const real = p.ioctl.bind(p);
    // A broken ioctl: unmaps, then reports failure.
    p.ioctl = (fd, req, arg) => {
      if (req === 0x3b72) {
        real(fd, req, arg);
        return -22;
      }
      return real(fd, req, arg);
    };
    expect(() => w.step(unmapAll)).toThrow(
      /returned -EINVAL, the references say 0|failed but changed the state/,
    );
  });
});

/** The slot of the level-3 descriptor of `iova` in a 4-level 4 KiB stage-1 table. */
function findLeafSlot(host: Host, pgd: number, iova: number): number {
  let table = pgd;
  for (let level = 0; level < 3; level++) {
    const slot = table + (Math.floor(iova / 2 ** (39 - 9 * level)) % 512) * 8;
    const lo = host.phys.readU32(slot);
    const hi = host.phys.readU32(slot + 4);
    table = (hi & 0xffff) * 2 ** 32 + ((lo & 0xfffff000) >>> 0);
  }
  return table + (Math.floor(iova / 4096) % 512) * 8;
}
