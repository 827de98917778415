/**
 * The io_pagetable of an IOAS (drivers/iommu/iommufd/io_pagetable.c, pages.c, 6.18): areas of user
 * memory at IOVAs, reserved ranges (domain apertures, devices' reserved regions such as the SW MSI
 * window), allowed ranges, the paging domains filled from it, and the IOVA alignment they impose.
 *
 * Pinning follows the domains, not IOAS_MAP: an area is pinned when the IOAS has a domain to fill
 * (at IOAS_MAP with a domain, or when the first domain is added), and unpinned when the last domain
 * goes or the area is unmapped. Each IOAS_MAP has its own pages, so the same user page mapped twice is
 * pinned and charged twice. iommufd charges mm->pinned_vm (VmPin) always, and, for a task without
 * CAP_IPC_LOCK, the user's locked_vm (not VmLck) against RLIMIT_MEMLOCK; RLIMIT_MODE "mm" charges
 * mm->locked_vm (VmLck) instead, as VFIO does (oracle 6.18-iommufd x7-iommufd-pin, x8-iommufd-user-memlock).
 *
 * IOVAs and lengths are bigints here: without a domain any alignment and any address up to 2^64 - 2
 * is allowed. Mapping into a domain converts to numbers (a domain's aperture is below 2^53).
 */

import type { IommuDomain } from '../iommu/domain.ts';
import type { Device } from '../iommu/group.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../iommu/types.ts';
import type { Current } from '../mm/file.ts';
import type { MmStruct } from '../mm/mm.ts';
import { PAGE_SIZE } from '../mm/physmem.ts';
import { CAP_IPC_LOCK, type Task } from '../mm/task.ts';
import { EADDRINUSE, EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EOVERFLOW } from '../uapi/errno.ts';
import { IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } from '../uapi/iommufd.ts';
import { lowestBit } from '../uapi/u64.ts';

export const ULONG_MAX = 0xffff_ffff_ffff_ffffn;
const PAGE = BigInt(PAGE_SIZE);

/** The accounting of a pages object: none (CAP_IPC_LOCK), the user's locked_vm, or the mm's (VFIO's). */
export type AccountMode = 'none' | 'user' | 'mm';

/** Per-user locked_vm (struct user_struct), shared by a user's processes. */
export interface UserAccounts {
  lockedVm(uid: number): number;
  addLockedVm(uid: number, pages: number): void;
}

/** struct iopt_pages for user memory: [uptr, uptr + npages pages) of the mapping task. */
export class IoptPages {
  /** Pinned physical runs in page order, or null while not pinned. */
  runs: { pa: number; count: number }[] | null = null;
  /** Pages charged (last_npinned). */
  charged = 0;

  constructor(
    readonly users: UserAccounts,
    readonly mm: MmStruct,
    readonly task: Task,
    readonly uid: number,
    /** Page-aligned start. */
    readonly uptr: bigint,
    readonly npages: number,
    readonly writable: boolean,
    public accountMode: AccountMode,
  ) {}

  /**
   * Pins every page (pin_user_pages, FOLL_LONGTERM, FOLL_WRITE when writable), then charges them
   * (iopt_pages_update_pinned): all of it or nothing. VM_PFNMAP memory cannot be pinned (EFAULT).
   */
  pin(): number {
    if (this.runs !== null) return 0;
    if (this.uptr + BigInt(this.npages) * PAGE > BigInt(Number.MAX_SAFE_INTEGER)) return -EFAULT;
    const runs: { pa: number; count: number }[] = [];
    const undo = (r: number): number => {
      for (const run of runs) this.mm.unpin(run.pa, run.count);
      return r;
    };
    let done = 0;
    const base = Number(this.uptr);
    while (done < this.npages) {
      const n = this.mm.pinRun(base + done * PAGE_SIZE, this.npages - done, this.writable);
      if (n < 0) return undo(n);
      if (this.mm.runReserved) return undo(-EFAULT);
      const last = runs[runs.length - 1];
      if (last !== undefined && last.pa + last.count * PAGE_SIZE === this.mm.runPa) last.count += n;
      else runs.push({ pa: this.mm.runPa, count: n });
      done += n;
    }
    const r = this.charge(this.npages);
    if (r < 0) return undo(r);
    this.runs = runs;
    return 0;
  }

  /** Unpins every page and uncharges them (update_unpinned). */
  unpin(): void {
    if (this.runs === null) return;
    for (const run of this.runs) this.mm.unpin(run.pa, run.count);
    this.runs = null;
    this.uncharge();
  }

  /** iopt_pages_update_pinned(inc): ENOMEM over the limit; pinned_vm counts every mode. */
  private charge(n: number): number {
    switch (this.accountMode) {
      case 'user': {
        const limit = this.task.memlock.cur >> 12n;
        if (BigInt(this.users.lockedVm(this.uid) + n) > limit) return -ENOMEM;
        this.users.addLockedVm(this.uid, n);
        break;
      }
      case 'mm': {
        const r = this.mm.accountLockedVm(n, true, false, this.task.memlock.cur);
        if (r < 0) return r;
        break;
      }
    }
    this.mm.pinnedVm += n;
    this.charged = n;
    return 0;
  }

  private uncharge(): void {
    const n = this.charged;
    if (this.accountMode === 'user') this.users.addLockedVm(this.uid, -n);
    else if (this.accountMode === 'mm') this.mm.accountLockedVm(n, false, false, 0n);
    this.mm.pinnedVm -= n;
    this.charged = 0;
  }
}

export interface IoptArea {
  iova: bigint;
  /** Inclusive. */
  last: bigint;
  pages: IoptPages;
  /** Offset of the first byte in the first page (0 whenever a domain is attached). */
  pageOffset: number;
  /** IOMMU_READ / IOMMU_WRITE / IOMMU_CACHE. */
  prot: number;
}

interface Range {
  start: bigint;
  last: bigint;
}

interface Reserved extends Range {
  owner: unknown;
}

/** The IOMMU_IOAS_MAP flags as iommu prot bits (conv_iommu_prot): IOMMU_CACHE always. */
export function ioasProt(flags: number): number {
  let prot = IOMMU_CACHE;
  if (flags & IOMMU_IOAS_MAP_WRITEABLE) prot |= IOMMU_WRITE;
  if (flags & IOMMU_IOAS_MAP_READABLE) prot |= IOMMU_READ;
  return prot;
}

function roundupPow2(x: bigint): bigint {
  let p = 1n;
  while (p < x) p <<= 1n;
  return p;
}

/** Sort order of ranges by start. */
function byStart(a: Range, b: Range): number {
  return a.start < b.start ? -1 : a.start > b.start ? 1 : 0;
}

function overlaps(a: Range, start: bigint, last: bigint): boolean {
  return a.start <= last && a.last >= start;
}

export class IoPagetable {
  /** Areas sorted by IOVA. */
  readonly areas: IoptArea[] = [];
  readonly reserved: Reserved[] = [];
  allowed: Range[] = [];
  /** Domains in the order they were added (iopt->domains). */
  readonly domains: IommuDomain[] = [];
  /** The largest minimum page size of the domains (1 without one). */
  iovaAlignment = 1n;
  disableLargePages = false;

  /** iopt_area_iter_first: the lowest area that intersects [start, last]. */
  private areaFirst(start: bigint, last: bigint): IoptArea | undefined {
    return this.areas.find((a) => a.iova <= last && a.last >= start);
  }

  private reservedFirst(start: bigint, last: bigint): Reserved | undefined {
    return this.reserved.find((r) => overlaps(r, start, last));
  }

  /** iopt_check_iova: alignment (EINVAL), wrap (EOVERFLOW), reserved (EINVAL), an area there (EEXIST). */
  checkIova(iova: bigint, length: bigint): number {
    if (iova & (this.iovaAlignment - 1n)) return -EINVAL;
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return -EOVERFLOW;
    if (this.reservedFirst(iova, last) !== undefined) return -EINVAL;
    if (this.areaFirst(iova, last) !== undefined) return -EEXIST;
    return 0;
  }

  /**
   * iopt_alloc_iova: the first hole of the allowed ranges (or [4K, ULONG_MAX - 4K]) not reserved and
   * not mapped, aligned to min(roundup_pow_of_two(length), the alignment of `addr`) capped at PAGE_SIZE
   * (no THP), keeping `addr`'s page offset. Never IOVA 0.
   */
  allocIova(addr: bigint, length: bigint): bigint | number {
    const pageOffset = addr % PAGE;
    if (length === 0n || length >= ULONG_MAX / 2n) return -EOVERFLOW;
    let align = roundupPow2(length);
    if (addr !== 0n) {
      const a = 1n << BigInt(lowestBit(addr));
      if (a < align) align = a;
    }
    if (align >= PAGE) align = PAGE;
    if (align < this.iovaAlignment) return -EINVAL;
    const lo = PAGE;
    const hi = ULONG_MAX - PAGE;
    const allowed =
      this.allowed.length === 0
        ? [{ start: lo, last: hi }]
        : this.allowed
            .filter((r) => overlaps(r, lo, hi))
            .map((r) => ({ start: r.start < lo ? lo : r.start, last: r.last > hi ? hi : r.last }))
            .sort(byStart);
    const fits = (start: bigint, last: bigint): bigint | null => {
      const s = (((start + align - 1n) & ~(align - 1n)) | pageOffset) & ULONG_MAX;
      if (start + align - 1n > ULONG_MAX) return null;
      if (s >= last || last - s < length - 1n) return null;
      return s;
    };
    const used = [...this.reserved, ...this.areas.map((a) => ({ start: a.iova, last: a.last }))].sort(
      byStart,
    );
    for (const span of allowed) {
      if (fits(span.start, span.last) === null) continue;
      let cur = span.start;
      for (const u of used) {
        if (u.last < cur) continue;
        if (u.start > span.last) break;
        if (u.start > cur) {
          const s = fits(cur, u.start - 1n);
          if (s !== null) return s;
        }
        if (u.last >= span.last) {
          cur = span.last + 1n;
          break;
        }
        if (u.last + 1n > cur) cur = u.last + 1n;
      }
      if (cur <= span.last) {
        const s = fits(cur, span.last);
        if (s !== null) return s;
      }
    }
    return -ENOSPC;
  }

  /**
   * iopt_map_user_pages for `length` bytes of `current`'s memory at `uptr`: a new pages object, an
   * area at `iova` (or one chosen, without FIXED_IOVA), filled into every domain. Returns the IOVA.
   */
  mapUserPages(
    current: Current,
    users: UserAccounts,
    ctxAccountMode: AccountMode,
    iova: bigint,
    uptr: bigint,
    length: bigint,
    prot: number,
    fixed: boolean,
  ): bigint | number {
    // iopt_alloc_user_pages / iopt_alloc_pages
    if (uptr + length > ULONG_MAX) return -EOVERFLOW;
    if (length > ULONG_MAX - PAGE || length === 0n) return -EINVAL;
    const uptrDown = uptr - (uptr % PAGE);
    const startByte = uptr - uptrDown;
    const npages = (length + startByte + PAGE - 1n) / PAGE;
    let mode: AccountMode = current.task.capable(CAP_IPC_LOCK) ? 'none' : 'user';
    if (ctxAccountMode === 'mm' && mode === 'user') mode = 'mm';
    // iopt_alloc_area_pages
    if (length & (this.iovaAlignment - 1n)) return -EINVAL;
    let at = iova;
    if (!fixed) {
      const r = this.allocIova(uptr, length);
      if (typeof r === 'number') return r;
      at = r;
    } else {
      const r = this.checkIova(at, length);
      if (r < 0) return r;
    }
    // iopt_insert_area
    if (startByte & (this.iovaAlignment - 1n)) return -EINVAL;
    if (npages > BigInt(Number.MAX_SAFE_INTEGER)) return -EINVAL;
    const pages = new IoptPages(
      users,
      current.mm,
      current.task,
      current.task.uid,
      uptrDown,
      Number(npages),
      (prot & IOMMU_WRITE) !== 0,
      mode,
    );
    const area: IoptArea = { iova: at, last: at + length - 1n, pages, pageOffset: Number(startByte), prot };
    const r = this.fillDomains(area);
    if (r < 0) return r;
    this.insertArea(area);
    return at;
  }

  private insertArea(area: IoptArea): void {
    let i = 0;
    while (i < this.areas.length && this.areas[i].iova < area.iova) i++;
    this.areas.splice(i, 0, area);
  }

  /** iopt_area_fill_domains: pin (first use) and map into every domain; all or nothing. */
  private fillDomains(area: IoptArea): number {
    if (this.domains.length === 0) return 0;
    const r = area.pages.pin();
    if (r < 0) return r;
    for (let i = 0; i < this.domains.length; i++) {
      const e = this.mapArea(area, this.domains[i]);
      if (e < 0) {
        for (let j = 0; j < i; j++) this.unmapArea(area, this.domains[j]);
        area.pages.unpin();
        return e;
      }
    }
    return 0;
  }

  /** Maps an area's pinned pages into one domain (iopt_area_fill_domain); 4 KiB pages with large pages off. */
  private mapArea(area: IoptArea, domain: IommuDomain): number {
    let iova = Number(area.iova);
    let done = 0;
    for (const run of area.pages.runs ?? []) {
      const len = run.count * PAGE_SIZE;
      let r = 0;
      if (this.disableLargePages) {
        for (let off = 0; off < len && r === 0; off += PAGE_SIZE)
          r = domain.map(iova + off, run.pa + off, PAGE_SIZE, area.prot);
      } else {
        r = domain.map(iova, run.pa, len, area.prot);
      }
      if (r < 0) {
        if (done > 0) domain.unmap(Number(area.iova), done);
        return r;
      }
      iova += len;
      done += len;
    }
    return 0;
  }

  private unmapArea(area: IoptArea, domain: IommuDomain): void {
    if (area.pages.runs === null) return;
    domain.unmap(Number(area.iova), Number(area.last - area.iova + 1n));
  }

  /** iopt_area_unfill_domains: out of every domain (IOTLB synced), then unpinned and uncharged. */
  private unfillDomains(area: IoptArea): void {
    for (const d of this.domains) this.unmapArea(area, d);
    area.pages.unpin();
  }

  /**
   * iopt_unmap_iova_range: every area inside [start, last] goes, lowest first; an area that sticks
   * out ends the call with ENOENT after the ones before it went. Returns the bytes unmapped.
   */
  unmapRange(start: bigint, last: bigint): { ret: number; unmapped: bigint } {
    let unmapped = 0n;
    for (;;) {
      const area = this.areaFirst(start, last);
      if (area === undefined) return { ret: 0, unmapped };
      if (area.iova < start || area.last > last) return { ret: -ENOENT, unmapped };
      this.unfillDomains(area);
      this.areas.splice(this.areas.indexOf(area), 1);
      unmapped += area.last - area.iova + 1n;
    }
  }

  /** iopt_unmap_iova: length 0 EINVAL, wrap EOVERFLOW. */
  unmapIova(iova: bigint, length: bigint): { ret: number; unmapped: bigint } {
    if (length === 0n) return { ret: -EINVAL, unmapped: 0n };
    if (iova + length - 1n > ULONG_MAX) return { ret: -EOVERFLOW, unmapped: 0n };
    return this.unmapRange(iova, iova + length - 1n);
  }

  unmapAll(): { ret: number; unmapped: bigint } {
    return this.unmapRange(0n, ULONG_MAX);
  }

  /** iopt_reserve_iova: an area or an allowed range there is EADDRINUSE. */
  reserve(start: bigint, last: bigint, owner: unknown): number {
    if (this.areaFirst(start, last) !== undefined || this.allowed.some((r) => overlaps(r, start, last)))
      return -EADDRINUSE;
    this.reserved.push({ start, last, owner });
    return 0;
  }

  removeReserved(owner: unknown): void {
    for (let i = this.reserved.length - 1; i >= 0; i--)
      if (this.reserved[i].owner === owner) this.reserved.splice(i, 1);
  }

  /**
   * iopt_table_enforce_dev_resv_regions: every reserved region of the device but direct-relaxable
   * ones, owned by the device; EADDRINUSE (and none kept) when a mapping is in the way.
   */
  enforceDevResvRegions(dev: Device): number {
    for (const r of dev.iommu.getResvRegions(dev)) {
      if (r.type === 'direct-relaxable') continue;
      const e = this.reserve(r.start, r.end, dev);
      if (e < 0) {
        this.removeReserved(dev);
        return e;
      }
    }
    return 0;
  }

  /** All areas conform to a larger alignment (iopt_check_iova_alignment): EADDRINUSE if not. */
  private checkAlignment(align: bigint): number {
    const m = align - 1n;
    for (const a of this.areas)
      if (a.iova & m || (a.last - a.iova + 1n) & m || BigInt(a.pageOffset) & m) return -EADDRINUSE;
    return 0;
  }

  private domainAlignment(domain: IommuDomain): bigint {
    const bitmap = domain.pgsizeBitmap;
    return bitmap === 0n ? 1n : 1n << BigInt(lowestBit(bitmap));
  }

  /**
   * iopt_table_add_domain: the alignment the domain needs (above PAGE_SIZE EINVAL; areas that do not
   * conform EADDRINUSE), its aperture reserved, then every area pinned (first domain) and mapped.
   */
  addDomain(domain: IommuDomain): number {
    let align = this.domainAlignment(domain);
    if (align < this.iovaAlignment) align = this.iovaAlignment;
    if (align > PAGE) return -EINVAL;
    if (align !== this.iovaAlignment) {
      const r = this.checkAlignment(align);
      if (r < 0) return r;
    }
    if (domain.apertureStart !== 0n) {
      const r = this.reserve(0n, domain.apertureStart - 1n, domain);
      if (r < 0) {
        this.removeReserved(domain);
        return r;
      }
    }
    if (domain.apertureEnd !== ULONG_MAX) {
      const r = this.reserve(domain.apertureEnd + 1n, ULONG_MAX, domain);
      if (r < 0) {
        this.removeReserved(domain);
        return r;
      }
    }
    const first = this.domains.length === 0;
    for (let i = 0; i < this.areas.length; i++) {
      const area = this.areas[i];
      let r = first ? area.pages.pin() : 0;
      if (r === 0) r = this.mapArea(area, domain);
      if (r < 0) {
        if (first) area.pages.unpin();
        for (let j = 0; j < i; j++) {
          this.unmapArea(this.areas[j], domain);
          if (first) this.areas[j].pages.unpin();
        }
        this.removeReserved(domain);
        return r;
      }
    }
    this.iovaAlignment = align;
    this.domains.push(domain);
    return 0;
  }

  /** iopt_table_remove_domain: unmapped from it; the last domain unpins everything; alignment recomputed. */
  removeDomain(domain: IommuDomain): void {
    const i = this.domains.indexOf(domain);
    if (i < 0) return;
    this.domains.splice(i, 1);
    for (const area of this.areas) {
      this.unmapArea(area, domain);
      if (this.domains.length === 0) area.pages.unpin();
    }
    this.removeReserved(domain);
    this.recalcAlignment();
  }

  private recalcAlignment(): void {
    let align = this.disableLargePages ? PAGE : 1n;
    for (const d of this.domains) {
      const a = this.domainAlignment(d);
      if (a > align) align = a;
    }
    this.iovaAlignment = align;
  }

  /** iopt_disable_large_pages: EINVAL once domains have pages mapped. */
  disableLarge(): number {
    if (this.disableLargePages) return 0;
    if (this.domains.length > 0 && this.areas.length > 0) return -EINVAL;
    const prev = this.iovaAlignment;
    this.disableLargePages = true;
    this.recalcAlignment();
    if (this.iovaAlignment > prev) {
      const r = this.checkAlignment(this.iovaAlignment);
      if (r < 0) {
        this.disableLargePages = false;
        this.iovaAlignment = prev;
        return r;
      }
    }
    return 0;
  }

  enableLarge(): void {
    this.disableLargePages = false;
    this.recalcAlignment();
  }

  /** The holes of the reserved ranges over [0, ULONG_MAX] (IOMMU_IOAS_IOVA_RANGES). */
  holes(): Range[] {
    const rs = [...this.reserved].sort(byStart);
    const out: Range[] = [];
    let cur = 0n;
    for (const r of rs) {
      if (r.last < cur) continue;
      if (r.start > cur) out.push({ start: cur, last: r.start - 1n });
      if (r.last >= ULONG_MAX) return out;
      cur = r.last + 1n;
    }
    out.push({ start: cur, last: ULONG_MAX });
    return out;
  }

  /** iopt_set_allow_iova: EADDRINUSE when an allowed range meets a reserved one (nothing changes). */
  setAllowed(ranges: Range[]): number {
    for (const a of ranges) if (this.reservedFirst(a.start, a.last) !== undefined) return -EADDRINUSE;
    this.allowed = ranges;
    return 0;
  }
}
