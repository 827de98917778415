/**
 * An arm-smmu-v3 paging domain (struct arm_smmu_domain): its stage, decided when the domain is
 * finalised on an SMMU (ARM_SMMU_DOMAIN_S1 / S2 / NESTED, NESTED being a stage-2 domain), its
 * io-pgtable tables in host memory, its ASID or VMID, and the TLB invalidation Linux issues when
 * leaves are removed. Reference: nested-iommu.md §7.0, seed-era.md §4.5, vfio-type1.md §6.
 */

import type { PhysMem } from '../mm/physmem.ts';
import { IoPgtable, POW2, type TableAllocator } from '../pgtable/index.ts';
import { CMD_TLBI_NH_ALL, CMD_TLBI_NH_ASID, CMD_TLBI_S12_VMALL } from '../smmu/index.ts';
import { ENOMEM, ERANGE } from '../uapi/errno.ts';
import type { ArmSmmuV3 } from './arm-smmu-v3.ts';
import { type DomainTables, IommuDomain, modPow2 } from './domain.ts';
import type { IotlbGather, NestedS1Config, S1FaultRecord } from './types.ts';

export type ArmSmmuStage = 'S1' | 'S2' | 'NESTED';

/** Table pages from host memory frames: 4 KiB tables, larger (concatenated) start tables in 2 MiB frames. */
export class HostTableAllocator implements TableAllocator {
  constructor(private readonly mem: PhysMem) {}

  allocTable(bytes: number): number {
    return this.mem.allocFrame(bytes <= 4096 ? 12 : 21);
  }

  freeTable(addr: number, bytes: number): void {
    this.mem.freeFrame(addr, bytes <= 4096 ? 12 : 21);
  }
}

export class ArmSmmuDomain extends IommuDomain {
  /** The stage asked for; the finalised stage is `finalStage`. */
  stage: ArmSmmuStage = 'S1';
  /** Set when the domain is finalised on this SMMU (smmu_domain->smmu). */
  finalised = false;
  finalStage: 'S1' | 'S2' = 'S1';
  pgtbl: IoPgtable | null = null;
  asid = 0;
  vmid = 0;
  /** The stage-1 context-descriptor table (one CD, linear). */
  cdTable = -1;
  /** Allocated with IOMMU_HWPT_ALLOC_NEST_PARENT (iommufd): a stage-2 parent of nested domains. */
  nestParent = false;
  /** vfio-nest extension: the guest's stage 1 bound on this nesting domain. */
  s1cfg: NestedS1Config | null = null;
  /** Stage-1 faults of guest-owned streams, waiting for the VMM. */
  readonly faults: S1FaultRecord[] = [];
  faultsLost = 0;

  constructor(readonly driver: ArmSmmuV3) {
    super();
    this.pgsizeBitmap = driver.pgsizeBitmap;
  }

  /**
   * arm_smmu_domain_finalise: an SMMU without stage 1 makes every domain stage 2; one without stage 2
   * makes every domain stage 1 — silently, so type 6 on a stage-1-only SMMU gets a stage-1 domain.
   * Stage 1: IAS 48 (VA_BITS), OAS = the SMMU's IAS; stage 2 and NESTED: IAS and OAS of the SMMU.
   */
  finalise(): number {
    const d = this.driver;
    let stage = this.stage;
    if (!d.s1p) stage = 'S2';
    if (!d.s2p) stage = 'S1';
    this.finalStage = stage === 'S1' ? 'S1' : 'S2';
    const s1 = this.finalStage === 'S1';
    const ias = s1 ? 48 : d.ias;
    const oas = s1 ? d.ias : d.oas;
    const pgtbl = IoPgtable.create(
      d.mem,
      { stage: s1 ? 1 : 2, pgsizeBitmap: d.pgsizeBitmapNumber, ias, oas, coherentWalk: d.coherent },
      d.tables,
    );
    if (pgtbl === null) return -ENOMEM;
    if (s1) {
      const asid = d.asids.alloc();
      if (asid < 0) {
        pgtbl.free();
        return -ENOMEM;
      }
      const cd = d.tables.allocTable(64);
      if (cd < 0) {
        d.asids.free(asid);
        pgtbl.free();
        return -ENOMEM;
      }
      this.asid = asid;
      this.cdTable = cd;
    } else {
      const vmid = d.vmids.alloc();
      if (vmid < 0) {
        pgtbl.free();
        return -ENOMEM;
      }
      this.vmid = vmid;
    }
    this.pgtbl = pgtbl;
    this.pgsizeBitmap = BigInt(pgtbl.pgsizeBitmap);
    this.apertureStart = 0n;
    this.apertureEnd = (1n << BigInt(ias)) - 1n;
    this.finalised = true;
    if (s1) d.writeCd(this);
    return 0;
  }

  protected mapPages(iova: number, pa: number, pgsize: number, count: number, prot: number): number {
    if (this.pgtbl === null) return -ERANGE;
    return this.pgtbl.mapPages(iova, pa, pgsize, count, prot);
  }

  protected unmapPages(iova: number, pgsize: number, count: number, gather: IotlbGather): number {
    if (this.pgtbl === null) return 0;
    const r = this.pgtbl.unmapPages(iova, pgsize, count);
    if (r > 0) gather.pgsize = Math.max(gather.pgsize, pgsize);
    return r;
  }

  /** arm_lpae_iova_to_phys, the leaf left in the io-pgtable's probe. */
  private lookup(iova: number): boolean {
    return this.pgtbl?.lookup(iova) === true;
  }

  iovaToPhys(iova: number): number {
    return this.lookup(iova) ? this.pgtbl!.probe.oa : -1;
  }

  leafSize(iova: number): number {
    return this.lookup(iova) ? POW2[this.pgtbl!.probe.sizeLg2] : 0;
  }

  override hwTables(): DomainTables {
    const t = this.pgtbl;
    return t === null
      ? null
      : { kind: 'lpae', pgd: t.pgd, startLevel: t.startLevel, entries: t.pgdBytes / 8 };
  }

  /** The PA and the rest of its leaf from one walk (vfio's unmap loop asks for both per leaf). */
  protected override resolve(iova: number): number {
    if (!this.lookup(iova)) {
      this.resolvedRemaining = 0;
      return -1;
    }
    const p = this.pgtbl!.probe;
    this.resolvedRemaining = POW2[p.sizeLg2] - modPow2(iova, p.sizeLg2);
    return p.oa;
  }

  /**
   * arm_smmu_iotlb_sync -> arm_smmu_tlb_inv_range_domain: leaf invalidation of the gathered range,
   * by TLBI_NH_VA (ASID) at stage 1 or TLBI_S2_IPA (VMID) at stage 2, as range commands when the
   * SMMU has RIL, then CMD_SYNC. The pages are unpinned only after this returns.
   */
  override iotlbSync(gather: IotlbGather): void {
    if (gather.end <= gather.start || !this.finalised) return;
    this.driver.tlbInvRange(this, gather.start, gather.end - gather.start, gather.pgsize || 4096, true);
    // TLBI_S2_IPA need not touch combined stage-1+2 entries (nested-iommu.md §5.3): on a nest parent
    // (arm_smmu_tlb_inv_range_domain) or with a guest stage 1 bound, drop every stage-1 entry of the
    // VMID too.
    if (this.nestParent || this.s1cfg !== null) this.driver.issue([[CMD_TLBI_NH_ALL, { vmid: this.vmid }]]);
  }

  override free(): void {
    if (!this.finalised) return;
    const d = this.driver;
    // Every translation of the domain goes: by ASID at stage 1, by VMID (both stages) at stage 2.
    d.issue([
      this.finalStage === 'S1'
        ? [CMD_TLBI_NH_ASID, { asid: this.asid }]
        : [CMD_TLBI_S12_VMALL, { vmid: this.vmid }],
    ]);
    this.pgtbl?.free();
    this.pgtbl = null;
    if (this.finalStage === 'S1') {
      d.tables.freeTable(this.cdTable, 64);
      d.asids.free(this.asid);
    } else {
      d.vmids.free(this.vmid);
    }
    this.finalised = false;
  }
}
