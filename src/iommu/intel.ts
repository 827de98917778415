/**
 * intel-iommu (VT-d) as the recordings show it under QEMU 7.2's q35 model (aw-bits 39):
 * second-level tables written as real entries in host memory, page sizes 4K|2M|1G
 * (iova_pgsizes 0x40201000), aperture [0, 2^39 - 1], the interrupt window 0xfee00000-0xfeefffff
 * reserved as an MSI region, interrupt remapping on (isolated MSIs), no snoop control (so
 * DMA_CC_IOMMU answers 0), and no nesting hook (type 6 gets EINVAL).
 * Reference: vfio-type1.md §5 (R: intel-iommu rows).
 */

import type { PhysMem } from '../mm/physmem.ts';
import { fls } from '../pgtable/index.ts';
import { EFAULT, ENOMEM } from '../uapi/errno.ts';
import type { KernelProfile } from '../uapi/profile.ts';
import { type DomainTables, IommuDomain, modPow2 } from './domain.ts';
import type { IommuDriver } from './driver.ts';
import type { Device, IommuHw } from './group.ts';
import { IOMMU_READ, IOMMU_WRITE, type IommuCap, type IotlbGather, type ResvRegion } from './types.ts';
import { DMA_PTE_READ, DMA_PTE_WRITE, VtdPageTable } from './vtd-pgtable.ts';

export interface IntelIommuOptions {
  /** Guest address width: 39 (QEMU 7.2, the recordings) or 48 (QEMU 9+). */
  awBits?: 39 | 48;
}

/** The x86 interrupt address window, reserved in every DMA address space. */
export const X86_MSI_WINDOW: ResvRegion = { start: 0xfee0_0000n, end: 0xfeef_ffffn, type: 'msi' };

class IntelDomain extends IommuDomain {
  readonly pt: VtdPageTable;

  constructor(
    readonly driver: IntelIommu,
    mem: PhysMem,
    awBits: number,
  ) {
    super();
    this.pt = new VtdPageTable(mem, awBits === 39 ? 3 : 4);
    this.pgsizeBitmap = 0x4020_1000n; // 4K | 2M | 1G: second-level super pages
    this.apertureStart = 0n;
    this.apertureEnd = (1n << BigInt(awBits)) - 1n;
    this.maxAddr = 2 ** awBits - 1;
  }

  /** The last address the domain's address width can translate. */
  private readonly maxAddr: number;

  protected mapPages(iova: number, pa: number, pgsize: number, count: number, prot: number): number {
    // intel_iommu_map: an address beyond the domain's width is EFAULT ("iommu width is not sufficient
    // for the mapped address"); only kernels without the valid-IOVA list (3.19) get this far.
    if (iova + pgsize * count - 1 > this.maxAddr) return -EFAULT;
    const lg2 = fls(pgsize);
    // Before 6.18 a write-only mapping came out readable: the edu read a flags=2 mapping on 6.1 and
    // 6.12 but not on 6.18 (oracle i1-dma-v2 seq 22-24 on intel: a=1 on 6.1/6.12, a=0 on 6.18).
    if (this.driver.profile.writeOnlyReadable && prot & IOMMU_WRITE) prot |= IOMMU_READ;
    for (let i = 0; i < count; i++) {
      if (this.pt.mapOne(iova + i * pgsize, pa + i * pgsize, lg2, prot) < 0) {
        if (i > 0) this.unmap(iova, i * pgsize);
        return -ENOMEM;
      }
    }
    return count * pgsize;
  }

  protected unmapPages(iova: number, pgsize: number, count: number, _gather: IotlbGather): number {
    let done = 0;
    while (done < pgsize * count) {
      const n = this.pt.unmapOne(iova + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  iovaToPhys(iova: number): number {
    return this.pt.lookup(iova) ? this.pt.outPa : -1;
  }

  leafSize(iova: number): number {
    return this.pt.lookup(iova) ? this.pt.outSize : 0;
  }

  override hwTables(): DomainTables {
    return { kind: 'vtd', root: this.pt.root, levels: this.pt.levels };
  }

  protected override resolve(iova: number): number {
    if (!this.pt.lookup(iova)) {
      this.resolvedRemaining = 0;
      return -1;
    }
    const size = this.pt.outSize;
    this.resolvedRemaining = size - modPow2(iova, fls(size));
    return this.pt.outPa;
  }

  override free(): void {
    this.pt.free();
  }
}

/** The VT-d hardware: context entries point at second-level tables, which it walks per access. */
class VtdHw implements IommuHw {
  /** Requester ID -> the domain's page table (the context entry's SLPTPTR). */
  readonly context = new Map<number, VtdPageTable>();
  /** Faults recorded (fault recording registers), most recent last. */
  readonly faults: { rid: number; iova: number; write: boolean }[] = [];
  lastPageRemaining = 0;

  constructor(readonly mem: PhysMem) {}

  translate(dev: Device, iova: number, write: boolean): number {
    const pt = this.context.get(dev.rid);
    const lo = pt ? pt.lookup(iova) : 0;
    if (!pt || !lo || !(lo & (write ? DMA_PTE_WRITE : DMA_PTE_READ))) {
      this.faults.push({ rid: dev.rid, iova, write });
      return -1;
    }
    this.lastPageRemaining = pt.outSize - (iova % pt.outSize);
    return pt.outPa;
  }
}

export class IntelIommu implements IommuDriver {
  readonly name = 'intel-iommu';
  readonly hw: VtdHw;
  readonly awBits: number;

  constructor(
    readonly profile: KernelProfile,
    readonly mem: PhysMem,
    options: IntelIommuOptions = {},
  ) {
    this.awBits = options.awBits ?? 39;
    this.hw = new VtdHw(mem);
  }

  capable(_dev: Device, cap: IommuCap): boolean {
    return cap === 'cache-coherency' || cap === 'intr-remap';
  }

  domainAllocPaging(_dev: Device): IommuDomain | number {
    return new IntelDomain(this, this.mem, this.awBits);
  }

  attachDev(domain: IommuDomain, dev: Device): number {
    this.hw.context.set(dev.rid, (domain as IntelDomain).pt);
    return 0;
  }

  detachDev(_domain: IommuDomain, dev: Device): void {
    this.hw.context.delete(dev.rid);
  }

  getResvRegions(_dev: Device): ResvRegion[] {
    return [X86_MSI_WINDOW];
  }

  hasIsolatedMsi(_dev: Device): boolean {
    return true;
  }
}
