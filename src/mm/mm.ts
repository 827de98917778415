/**
 * A process address space (mm_struct): VMAs of anonymous memory backed by 4 KiB pages or 2 MiB /
 * 1 GiB huge pages, PFN-mapped device memory, page faults, user copies, long-term pinning with
 * per-folio pin counts, and the locked_vm / pinned_vm counters of /proc/self/status.
 *
 * Cost follows work: a huge page is one folio (one frame allocation, one pin counter), pages are
 * allocated on first touch, and reading memory nobody wrote returns zeros without allocating
 * (the shared zero page).
 */

import { EFAULT, EINVAL, ENOMEM } from '../uapi/errno.ts';
import { PfnTable } from './pfn-table.ts';
import {
  type ExternalMemory,
  FRAME_BYTES,
  FRAME_LG2S,
  type FrameLg2,
  PAGE_SHIFT,
  PAGE_SIZE,
  type PhysMem,
} from './physmem.ts';

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;

/** A device region mapped into a process: CPU loads and stores become MMIO accesses. */
export interface MmioOps {
  read(offset: number, len: number): number;
  write(offset: number, len: number, value: number): void;
}

/**
 * Copies `len` bytes between `buf[off..]` and device registers at `base` as naturally aligned,
 * little-endian accesses of at most `max` bytes (a power of two): how CPU loads and stores on a BAR
 * mapping, and vfio-pci's pread/pwrite of config space and BARs, reach the device.
 */
export function mmioPieces(
  ops: MmioOps,
  base: number,
  buf: Uint8Array,
  off: number,
  len: number,
  max: number,
  write: boolean,
): void {
  let pos = 0;
  while (pos < len) {
    let n = max;
    while (n > 1 && ((base + pos) % n !== 0 || pos + n > len)) n >>= 1;
    if (write) {
      let value = 0;
      for (let i = n - 1; i >= 0; i--) value = value * 256 + buf[off + pos + i];
      ops.write(base + pos, n, value);
    } else {
      let value = ops.read(base + pos, n);
      for (let i = 0; i < n; i++) {
        buf[off + pos + i] = value % 256;
        value = Math.floor(value / 256);
      }
    }
    pos += n;
  }
}

export interface Vma {
  start: number;
  /** Exclusive end. */
  end: number;
  prot: number;
  /** log2 of the backing page size: 12, 21 (2 MiB) or 30 (1 GiB). */
  pageLg2: FrameLg2;
  /** VM_PFNMAP: device memory at a fixed physical address; no struct pages, never pinned or charged. */
  pfnmapBase?: number;
  /** Device registers behind a PFN mapping (a BAR): accesses go to the device. */
  mmio?: MmioOps;
  /** Offset of the VMA's start within the device region. */
  mmioOffset?: number;
  /**
   * Page index within the VMA -> frame number (physical address / 4 KiB) of the folio backing it:
   * small integers, so the map holds no boxed doubles (physical addresses pass 2^31).
   */
  pages: Map<number, number>;
  /** A mapping of a program outside the model (see ExternalAddressSpace): its folios' bytes live there. */
  external?: { anonymous: boolean };
}

/** One mapping of a program outside the model, as its /proc/self/maps line describes it. */
export interface ExternalMapping {
  start: number;
  /** Exclusive end. */
  end: number;
  prot: number;
  pageLg2: FrameLg2;
  /** Private anonymous memory: untouched pages read as the shared zero page. */
  anonymous: boolean;
}

/**
 * The address space of a process whose memory is a real program's (a client of `vfio-nest serve`).
 * The model learns the program's mappings when it first meets an address and keeps them (the server
 * tells it of munmap); each folio it faults in is a model frame attached to the program's page
 * (PhysMem.attachExternal), so pinning, charging and IOMMU mappings stay the model's and a device's
 * DMA reads and writes the program's bytes. Calls are synchronous.
 */
export interface ExternalAddressSpace {
  readonly memory: ExternalMemory;
  /** The program's mapping that contains `va`, or undefined where nothing is mapped. */
  lookup(va: number): ExternalMapping | undefined;
  /** Whether the program's anonymous page at `va` holds data of its own (false: the zero page). */
  populated(va: number): boolean;
}

/** A folio, kept by the frame number of its head page. */
interface Folio {
  /** Physical address of its first byte. */
  head: number;
  lg2: FrameLg2;
  /** Pinned 4 KiB subpages (FOLL_PIN references). */
  pins: number;
  /** Still mapped by a VMA; an unmapped folio lives on while pinned. */
  mapped: boolean;
}

export interface MmapOptions {
  /** MAP_FIXED address; chosen top-down otherwise. */
  addr?: number;
  prot?: number;
  /** MAP_HUGETLB page size: 21 (2 MiB) or 30 (1 GiB). */
  hugeLg2?: 21 | 30;
  /** Map device memory at this physical address (a BAR), as remap_pfn_range does. */
  pfnmapBase?: number;
  /** The device registers behind it, and the offset of the mapping within them. */
  mmio?: MmioOps;
  mmioOffset?: number;
}

/** Where mmap() starts looking, top-down, as on x86-64 and arm64 with 47/48-bit user space. */
const MMAP_TOP = 0x7f00_0000_0000;

export class MmStruct {
  readonly vmas: Vma[] = [];
  /** Pages charged by mlock and long-term pins (VmLck). */
  lockedVm = 0;
  /** Pages counted by pin accounting that uses pinned_vm (VmPin; iommufd). */
  pinnedVm = 0;
  /** Folios of each size by head / size (a table per size keeps each one dense). */
  private readonly folios: Record<FrameLg2, PfnTable<Folio>> = {
    12: new PfnTable(),
    21: new PfnTable(),
    30: new PfnTable(),
  };
  private mmapBase = MMAP_TOP;
  /** Physical address of the run found by the last successful pinRun(). */
  runPa = 0;
  /** Whether that run was reserved memory (PFNMAP): not pinned, not charged. */
  runReserved = false;
  /** Set for a process whose memory lives outside the model: unknown addresses are looked up there. */
  external: ExternalAddressSpace | undefined = undefined;

  constructor(
    readonly phys: PhysMem,
    /** FOLL_LONGTERM read pins of untouched anonymous pages get the zero page (kernels before 6.x's unsharing). */
    readonly longtermPinsZeroPage = false,
  ) {}

  /** mmap(2) for anonymous or device memory. Returns the address or -errno. */
  mmap(len: number, options: MmapOptions = {}): number {
    const pageLg2: FrameLg2 = options.hugeLg2 ?? 12;
    const align = FRAME_BYTES[pageLg2];
    if (len <= 0 || !Number.isSafeInteger(len)) return -EINVAL;
    const size = Math.ceil(len / align) * align;
    let start: number;
    if (options.addr !== undefined) {
      if (options.addr % align !== 0) return -EINVAL;
      start = options.addr;
      this.munmap(start, size);
    } else {
      start = Math.floor((this.mmapBase - size) / align) * align;
      while (this.overlapping(start, start + size) !== undefined) {
        const v = this.overlapping(start, start + size)!;
        start = Math.floor((v.start - size) / align) * align;
      }
      if (start <= 0) return -ENOMEM;
      this.mmapBase = start;
    }
    const vma: Vma = {
      start,
      end: start + size,
      prot: options.prot ?? PROT_READ | PROT_WRITE,
      pageLg2,
      pages: new Map(),
    };
    if (options.pfnmapBase !== undefined) vma.pfnmapBase = options.pfnmapBase;
    if (options.mmio !== undefined) {
      vma.mmio = options.mmio;
      vma.mmioOffset = options.mmioOffset ?? 0;
    }
    this.insertVma(vma);
    return start;
  }

  /** munmap(2): removes [addr, addr+len); pinned folios stay allocated until unpinned. */
  munmap(addr: number, len: number): number {
    if (addr % PAGE_SIZE !== 0 || len <= 0) return -EINVAL;
    const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    for (let i = this.vmas.length - 1; i >= 0; i--) {
      const v = this.vmas[i];
      if (v.end <= addr || v.start >= end) continue;
      this.vmas.splice(i, 1);
      const unit = FRAME_BYTES[v.pageLg2];
      // Keep the parts outside the range (split at huge-page boundaries, as hugetlb requires).
      const lo = Math.max(v.start, Math.floor(addr / unit) * unit);
      const hi = Math.min(v.end, Math.ceil(end / unit) * unit);
      if (v.start < lo) this.insertVma(this.slice(v, v.start, lo));
      if (hi < v.end) this.insertVma(this.slice(v, hi, v.end));
      for (const [idx, pfn] of v.pages) {
        const va = v.start + idx * unit;
        if (va >= lo && va < hi) this.releaseMapping(pfn * PAGE_SIZE);
      }
    }
    return 0;
  }

  findVma(va: number): Vma | undefined {
    let lo = 0;
    let hi = this.vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.vmas[mid];
      if (va < v.start) hi = mid - 1;
      else if (va >= v.end) lo = mid + 1;
      else return v;
    }
    return this.external === undefined ? undefined : this.discover(va);
  }

  /** Learns the external mapping at `va`, clipped to the gap between the VMAs already known. */
  private discover(va: number): Vma | undefined {
    const m = this.external!.lookup(va);
    if (m === undefined || va < m.start || va >= m.end) return undefined;
    let start = m.start;
    let end = m.end;
    for (const v of this.vmas) {
      if (v.end <= va) start = Math.max(start, v.end);
      else {
        end = Math.min(end, v.start);
        break;
      }
    }
    const vma: Vma = {
      start,
      end,
      prot: m.prot,
      pageLg2: m.pageLg2,
      pages: new Map(),
      external: { anonymous: m.anonymous },
    };
    this.insertVma(vma);
    return vma;
  }

  /**
   * Resolves a user address to a physical address, faulting the page in.
   * `write` needs PROT_WRITE; reading an untouched anonymous page returns -1 (the zero page)
   * unless `populate` asks for a real page. Returns the physical address or -EFAULT/-ENOMEM.
   */
  fault(va: number, write: boolean, populate = write): number {
    const v = this.findVma(va);
    if (v === undefined) return -EFAULT;
    return this.faultIn(v, va, write, populate);
  }

  /** fault() once the VMA holding `va` is known (pinRun walks one VMA folio by folio). */
  private faultIn(v: Vma, va: number, write: boolean, populate: boolean): number {
    if (v.prot === PROT_NONE) return -EFAULT;
    if (write && !(v.prot & PROT_WRITE)) return -EFAULT;
    if (v.pfnmapBase !== undefined) return v.pfnmapBase + (va - v.start);
    const unit = FRAME_BYTES[v.pageLg2];
    const idx = Math.floor((va - v.start) / unit);
    let pfn = v.pages.get(idx);
    if (pfn === undefined) {
      // External memory: only the program knows whether it wrote the page.
      if (!populate && (v.external === undefined || (v.external.anonymous && !this.external!.populated(va))))
        return -1;
      const pa = this.phys.allocFrame(v.pageLg2);
      if (pa < 0) return -ENOMEM;
      if (v.external !== undefined)
        this.phys.attachExternal(pa, v.pageLg2, this.external!.memory, v.start + idx * unit);
      pfn = pa / PAGE_SIZE;
      v.pages.set(idx, pfn);
      this.folios[v.pageLg2].set(pa / unit, { head: pa, lg2: v.pageLg2, pins: 0, mapped: true });
    }
    return pfn * PAGE_SIZE + ((va - v.start) % unit);
  }

  /** copy_from_user: reads process memory; -EFAULT where nothing is mapped. */
  readUser(va: number, dst: Uint8Array, dstOff: number, len: number): number {
    const m = this.findVma(va);
    if (m?.mmio !== undefined) return this.mmioAccess(m, va, dst, dstOff, len, false);
    while (len > 0) {
      const inPage = Math.min(len, PAGE_SIZE - (va % PAGE_SIZE));
      const pa = this.fault(va, false);
      if (pa < -1) return pa;
      if (pa === -1) dst.fill(0, dstOff, dstOff + inPage);
      else this.phys.readBytes(pa, dst, dstOff, inPage);
      va += inPage;
      dstOff += inPage;
      len -= inPage;
    }
    return 0;
  }

  /** copy_to_user: writes process memory, faulting pages in; -EFAULT where not writable. */
  writeUser(va: number, src: Uint8Array, srcOff: number, len: number): number {
    const m = this.findVma(va);
    if (m?.mmio !== undefined) return this.mmioAccess(m, va, src, srcOff, len, true);
    while (len > 0) {
      const inPage = Math.min(len, PAGE_SIZE - (va % PAGE_SIZE));
      const pa = this.fault(va, true);
      if (pa < 0) return pa;
      this.phys.writeBytes(pa, src, srcOff, inPage);
      va += inPage;
      srcOff += inPage;
      len -= inPage;
    }
    return 0;
  }

  /** Loads or stores on a device mapping: naturally aligned accesses of up to 8 bytes. */
  private mmioAccess(v: Vma, va: number, buf: Uint8Array, off: number, len: number, write: boolean): number {
    if (va + len > v.end || (write && !(v.prot & PROT_WRITE))) return -EFAULT;
    mmioPieces(v.mmio!, (v.mmioOffset ?? 0) + (va - v.start), buf, off, len, 8, write);
    return 0;
  }

  /** memset on user memory; zeroing an untouched page leaves it untouched. */
  fillUser(va: number, len: number, byte: number): number {
    while (len > 0) {
      const inPage = Math.min(len, PAGE_SIZE - (va % PAGE_SIZE));
      const pa = this.fault(va, true, byte !== 0);
      if (pa < -1) return pa;
      if (pa >= 0) this.phys.fill(pa, inPage, byte);
      va += inPage;
      len -= inPage;
    }
    return 0;
  }

  /**
   * pin_user_pages(FOLL_LONGTERM [| FOLL_WRITE]) of the longest physically contiguous run of at
   * most `maxPages` 4 KiB pages starting at `va`. Returns the number of pages (> 0) with the
   * run's address in `runPa`, or -errno. PFNMAP memory is resolved, not pinned (`runReserved`).
   * Cost is per folio, not per page.
   */
  pinRun(va: number, maxPages: number, write: boolean): number {
    const v = this.findVma(va);
    if (v === undefined || v.prot === PROT_NONE || (write && !(v.prot & PROT_WRITE))) return -EFAULT;
    // Only 4 KiB anonymous memory reads the shared zero page: a hugetlb fault always allocates.
    const zeroReads = !write && this.longtermPinsZeroPage && v.pfnmapBase === undefined && v.pageLg2 === 12;
    if (zeroReads) {
      const pa = this.fault(va, false, false);
      if (pa === -1) {
        // The shared zero page: reserved, so not pinned or charged, and never contiguous with the next.
        this.runPa = this.phys.zeroPage;
        this.runReserved = true;
        return 1;
      }
    }
    const first = this.fault(va, write, true);
    if (first < 0) return first;
    this.runPa = first;
    if (v.pfnmapBase !== undefined) {
      this.runReserved = true;
      return Math.min(maxPages, (v.end - va) / PAGE_SIZE);
    }
    this.runReserved = false;
    let pages = 0;
    let cur = va;
    let expect = first;
    const unit = FRAME_BYTES[v.pageLg2];
    while (pages < maxPages && cur < v.end) {
      // An untouched page further on reads as the zero page, which ends the run (it is reserved).
      const pa =
        cur === va
          ? first
          : zeroReads && this.faultIn(v, cur, false, false) === -1
            ? -1
            : this.faultIn(v, cur, write, true);
      if (pa !== expect) break;
      const inFolio = Math.min(maxPages - pages, (unit - ((cur - v.start) % unit)) / PAGE_SIZE);
      this.folios[v.pageLg2].get(Math.floor(pa / unit))!.pins += inFolio;
      pages += inFolio;
      cur += inFolio * PAGE_SIZE;
      expect = pa + inFolio * PAGE_SIZE;
    }
    return pages;
  }

  /** unpin_user_pages of `pages` 4 KiB pages starting at physical address `pa`. */
  unpin(pa: number, pages: number): void {
    while (pages > 0) {
      const f = this.folioOf(pa);
      if (f === undefined) {
        // Not a folio we pinned (the shared zero page, PFNMAP memory): nothing to drop for this page,
        // but a physically contiguous run may go on into pinned pages (vfio_unpin_pages_remote
        // skips reserved pfns one by one).
        pa += PAGE_SIZE;
        pages--;
        continue;
      }
      const n = Math.min(pages, (f.head + FRAME_BYTES[f.lg2] - pa) / PAGE_SIZE);
      f.pins -= n;
      if (f.pins < 0) throw new Error(`unpin below zero at ${pa.toString(16)}`);
      if (f.pins === 0 && !f.mapped) this.freeFolio(f);
      pa += n * PAGE_SIZE;
      pages -= n;
    }
  }

  /** Long-term pins held on the folio that contains physical address `pa` (0: none, or not this mm's). */
  pinsAt(pa: number): number {
    return this.folioOf(pa)?.pins ?? 0;
  }

  /** Pinned 4 KiB pages over all folios (for invariants). */
  get pinnedPages(): number {
    let n = 0;
    for (const lg2 of FRAME_LG2S) for (const f of this.folios[lg2].values()) n += f.pins;
    return n;
  }

  /**
   * account_locked_vm: charges or uncharges `pages` to locked_vm. Charging beyond the RLIMIT_MEMLOCK
   * soft limit (in pages) fails with ENOMEM unless the caller holds CAP_IPC_LOCK (mm/util.c).
   */
  accountLockedVm(pages: number, inc: boolean, capIpcLock: boolean, limitBytes: bigint): number {
    if (!inc) {
      this.lockedVm = Math.max(0, this.lockedVm - pages);
      return 0;
    }
    if (!capIpcLock && BigInt(this.lockedVm + pages) > limitBytes >> BigInt(PAGE_SHIFT)) return -ENOMEM;
    this.lockedVm += pages;
    return 0;
  }

  /** Tears the address space down (process exit): every VMA unmapped. */
  exit(): void {
    for (const v of [...this.vmas]) this.munmap(v.start, v.end - v.start);
  }

  /** The folio that contains `pa`, trying each folio size smallest first. */
  private folioOf(pa: number): Folio | undefined {
    for (let i = 0; i < FRAME_LG2S.length; i++) {
      const lg2 = FRAME_LG2S[i];
      const f = this.folios[lg2].get(Math.floor(pa / FRAME_BYTES[lg2]));
      if (f !== undefined) return f;
    }
    return undefined;
  }

  private releaseMapping(pa: number): void {
    const f = this.folioOf(pa);
    if (f === undefined) return;
    f.mapped = false;
    if (f.pins === 0) this.freeFolio(f);
    else this.phys.detachExternal(pa); // pinned: the folio keeps the program's bytes
  }

  private freeFolio(f: Folio): void {
    this.folios[f.lg2].delete(f.head / FRAME_BYTES[f.lg2]);
    this.phys.freeFrame(f.head, f.lg2);
  }

  private overlapping(start: number, end: number): Vma | undefined {
    return this.vmas.find((v) => v.start < end && v.end > start);
  }

  private insertVma(vma: Vma): void {
    let i = 0;
    while (i < this.vmas.length && this.vmas[i].start < vma.start) i++;
    this.vmas.splice(i, 0, vma);
  }

  private slice(v: Vma, start: number, end: number): Vma {
    const unit = FRAME_BYTES[v.pageLg2];
    const pages = new Map<number, number>();
    const shift = (start - v.start) / unit;
    for (const [idx, pfn] of v.pages) {
      const va = v.start + idx * unit;
      if (va >= start && va < end) pages.set(idx - shift, pfn);
    }
    const out: Vma = { start, end, prot: v.prot, pageLg2: v.pageLg2, pages };
    if (v.external !== undefined) out.external = v.external;
    if (v.pfnmapBase !== undefined) out.pfnmapBase = v.pfnmapBase + (start - v.start);
    if (v.mmio !== undefined) {
      out.mmio = v.mmio;
      out.mmioOffset = (v.mmioOffset ?? 0) + (start - v.start);
    }
    return out;
  }
}
