/**
 * virtio-iommu: the driver keeps no page tables; it sends ATTACH/MAP/UNMAP requests to the
 * virtio-iommu device, which holds the mappings and translates endpoint DMA (QEMU's model).
 * As recorded under QEMU 7.2 on x86: page_size_mask 0xfffffffffffff000, input range [0, 2^64 - 1],
 * the MSI window reported as a reserved region by the PROBE request, and no MSI isolation, so
 * type-1 refuses to attach (EPERM) unless vfio_iommu_type1.allow_unsafe_interrupts=1.
 * Reference: vfio-type1.md §5, kernel-answers README (6.12-virtio rows).
 */

import type { PhysMem } from '../mm/physmem.ts';
import { EINVAL } from '../uapi/errno.ts';
import type { KernelProfile } from '../uapi/profile.ts';
import { type DomainTables, IommuDomain } from './domain.ts';
import type { IommuDriver } from './driver.ts';
import type { Device, IommuHw } from './group.ts';
import { X86_MSI_WINDOW } from './intel.ts';
import { type Range, RangeTree } from './range-tree.ts';
import {
  IOMMU_MMIO,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuCap,
  type IotlbGather,
  type ResvRegion,
} from './types.ts';

/** VIRTIO_IOMMU_MAP_F_* */
const MAP_F_READ = 1;
const MAP_F_WRITE = 2;
const MAP_F_MMIO = 4;

interface Mapping extends Range {
  pa: number;
  flags: number;
}

/**
 * One domain's mappings. The device refuses a MAP that overlaps (QEMU's virtio_iommu_map: S_INVAL);
 * the driver's interval tree accepts overlaps, and since MAP statuses come back asynchronously and
 * are not checked, the driver ends up holding what the device refused.
 */
class MappingTable {
  /** Its `overlapped`: the table has held overlapping mappings (the driver's, after a refused MAP). */
  readonly tree = new RangeTree<Mapping>();
  /** What the last find() returned, while the table has not changed since (unmap follows a lookup). */
  private found: Mapping | undefined;

  constructor(private readonly allowOverlap: boolean) {}

  /**
   * The mapping with the lowest start that contains `iova` (interval_tree_iter_first(iova, iova)):
   * the lowest-starting mapping that ends after `iova`, if it starts at or below it. (Not
   * [iova, iova + 1): above 2^53 `iova + 1` rounds back to `iova` and the top page was never found.)
   */
  find(iova: number): Mapping | undefined {
    const m = this.tree.firstOverlapping(iova, Number.POSITIVE_INFINITY);
    this.found = m;
    return m !== undefined && m.iova <= iova ? m : undefined;
  }

  /**
   * firstOverlapping(start, end): the lowest-starting mapping that ends after `start`, if it starts
   * before `end`. A find(start) since the last change already found it.
   */
  private first(start: number, end: number): Mapping | undefined {
    const f = this.found;
    if (f !== undefined && f.iova === start) return f;
    return this.tree.firstOverlapping(start, end);
  }

  insert(m: Mapping): boolean {
    this.found = undefined;
    if (!this.allowOverlap) return this.tree.insertIfFree(m);
    this.tree.insert(m);
    return true;
  }

  /**
   * The driver's removal (viommu_del_mappings): every mapping overlapping [start, end) goes whole,
   * until one that starts below `start` (a split, which virtio-iommu cannot do). Returns bytes removed.
   */
  removeDriver(start: number, end: number): number {
    let bytes = 0;
    const first = this.first(start, end);
    this.found = undefined;
    for (let m = first; m !== undefined && m.iova < end; ) {
      if (m.iova < start) break;
      // Without overlaps the next mapping starts at or after this one's end: none is left in range
      // when that end is `end` (one search fewer per UNMAP).
      const next = this.tree.overlapped || m.iova + m.size < end ? this.tree.next(m) : undefined;
      bytes += m.size;
      this.tree.remove(m);
      m = next;
    }
    return bytes;
  }

  /** The device's UNMAP: mappings inside [start, end) go; one straddling the range stops it (S_RANGE). */
  removeDevice(start: number, end: number): void {
    const first = this.first(start, end);
    this.found = undefined;
    for (let m = first; m !== undefined && m.iova < end; ) {
      if (m.iova < start || m.iova + m.size > end) return;
      // The device's mappings never overlap: the next starts at or after this one's end, so none is
      // left in range when that end is `end` (one search fewer per UNMAP request).
      const next = m.iova + m.size < end ? this.tree.next(m) : undefined;
      this.tree.remove(m);
      m = next;
    }
  }
}

/** The virtio-iommu device: endpoints attached to domains, each domain a mapping table. */
class VirtioIommuDevice implements IommuHw {
  readonly domains = new Map<number, MappingTable>();
  readonly endpoints = new Map<number, number>();
  /** Faults the device reported on its event queue. */
  readonly faults: { endpoint: number; iova: number; write: boolean }[] = [];
  lastPageRemaining = 0;

  constructor(readonly mem: PhysMem) {}

  /** VIRTIO_IOMMU_T_ATTACH */
  attach(domain: number, endpoint: number): void {
    if (!this.domains.has(domain)) this.domains.set(domain, new MappingTable(false));
    this.endpoints.set(endpoint, domain);
  }

  /** VIRTIO_IOMMU_T_DETACH */
  detach(endpoint: number): void {
    this.endpoints.delete(endpoint);
  }

  /** VIRTIO_IOMMU_T_MAP: 0 (VIRTIO_IOMMU_S_OK) or -errno for the request's status. */
  map(domain: number, start: number, end: number, pa: number, flags: number): number {
    const t = this.domains.get(domain);
    if (t === undefined) return -EINVAL;
    return t.insert({ iova: start, size: end - start, pa, flags }) ? 0 : -EINVAL;
  }

  /** VIRTIO_IOMMU_T_UNMAP */
  unmap(domain: number, start: number, end: number): void {
    this.domains.get(domain)?.removeDevice(start, end);
  }

  translate(dev: Device, iova: number, write: boolean): number {
    const domain = this.endpoints.get(dev.rid);
    const m = domain === undefined ? undefined : this.domains.get(domain)?.find(iova);
    if (m === undefined || !(m.flags & (write ? MAP_F_WRITE : MAP_F_READ))) {
      this.faults.push({ endpoint: dev.rid, iova, write });
      return -1;
    }
    this.lastPageRemaining = m.iova + m.size - iova;
    return m.pa + (iova - m.iova);
  }
}

class VirtioDomain extends IommuDomain {
  /** The driver's own interval tree, used for iova_to_phys. */
  private readonly mappings = new MappingTable(true);

  constructor(
    readonly driver: VirtioIommu,
    readonly id: number,
  ) {
    super();
    this.pgsizeBitmap = driver.pageSizeMask;
    this.apertureStart = 0n;
    this.apertureEnd = driver.inputEnd;
  }

  protected mapPages(iova: number, pa: number, pgsize: number, count: number, prot: number): number {
    const size = pgsize * count;
    let flags = 0;
    if (prot & IOMMU_READ) flags |= MAP_F_READ;
    if (prot & IOMMU_WRITE) flags |= MAP_F_WRITE;
    if (prot & IOMMU_MMIO) flags |= MAP_F_MMIO;
    this.mappings.insert({ iova, size, pa, flags });
    // The request's status is not checked (viommu_add_req + iotlb_sync_map): a refused MAP is silent.
    this.driver.device.map(this.id, iova, iova + size, pa, flags);
    return size;
  }

  protected unmapPages(iova: number, pgsize: number, count: number, _gather: IotlbGather): number {
    const end = iova + pgsize * count;
    const bytes = this.mappings.removeDriver(iova, end);
    // viommu_unmap_pages: the UNMAP request covers what the driver removed, [iova, iova + unmapped),
    // which is more than asked when a whole MAP's mapping went (the device cannot split one either).
    if (bytes > 0) this.driver.device.unmap(this.id, iova, iova + bytes);
    return bytes;
  }

  iovaToPhys(iova: number): number {
    const m = this.mappings.find(iova);
    return m === undefined ? -1 : m.pa + (iova - m.iova);
  }

  leafSize(iova: number): number {
    const m = this.mappings.find(iova);
    return m === undefined ? 0 : m.size;
  }

  /** The device's mapping table for this domain: what endpoint DMA sees (the driver's may differ). */
  override hwTables(): DomainTables {
    const t = this.driver.device.domains.get(this.id);
    return t === undefined ? null : { kind: 'mappings', mappings: t.tree };
  }

  /** A mapping is any multiple of 4 KiB at any 4 KiB boundary: the rest of it is to its own end. */
  protected override resolve(iova: number): number {
    const m = this.mappings.find(iova);
    if (m === undefined) {
      this.resolvedRemaining = 0;
      return -1;
    }
    this.resolvedRemaining = m.iova + m.size - iova;
    return m.pa + (iova - m.iova);
  }
}

export class VirtioIommu implements IommuDriver {
  readonly name = 'virtio-iommu';
  readonly device: VirtioIommuDevice;
  /** Device config page_size_mask and input_range end. */
  readonly pageSizeMask = 0xffff_ffff_ffff_f000n;
  readonly inputEnd = 0xffff_ffff_ffff_ffffn;
  private nextDomain = 1;

  constructor(
    readonly profile: KernelProfile,
    mem: PhysMem,
  ) {
    this.device = new VirtioIommuDevice(mem);
  }

  get hw(): IommuHw {
    return this.device;
  }

  capable(_dev: Device, cap: IommuCap): boolean {
    return cap === 'cache-coherency';
  }

  domainAllocPaging(_dev: Device): IommuDomain | number {
    return new VirtioDomain(this, this.nextDomain++);
  }

  attachDev(domain: IommuDomain, dev: Device): number {
    this.device.attach((domain as VirtioDomain).id, dev.rid);
    return 0;
  }

  detachDev(_domain: IommuDomain, dev: Device): void {
    this.device.detach(dev.rid);
  }

  getResvRegions(_dev: Device): ResvRegion[] {
    return [X86_MSI_WINDOW];
  }

  hasIsolatedMsi(_dev: Device): boolean {
    return false;
  }
}
