/**
 * A digest of everything a failed ioctl must not change: each container's backend (type, domains,
 * mappings with their charges, dma_avail, page sizes, valid IOVA list, dirty tracking), every leaf
 * of every domain's page table as the hardware reads it (the descriptor bytes, or virtio-iommu's
 * device-side mappings), the SMMU's stream table (L1 descriptors and STEs) and the CDs the STEs
 * point at, group membership, DMA ownership, and each process's locked memory and pins. Two equal
 * digests mean the kernel-visible state is the same.
 *
 * Intermediate table descriptors are left out on purpose: io-pgtable and intel-iommu keep empty
 * tables after an unmap, so a MAP that fails after mapping a first run (and unmapping it again)
 * may leave a new empty table behind in the kernel too. What a device can reach is in the leaves.
 */

import type { IommuDomain } from '../iommu/domain.ts';
import type { PhysMem } from '../mm/physmem.ts';
import { decodeAddress } from '../pgtable/descriptors.ts';
import {
  GRANULE_4K,
  levelShift,
  POW2,
  s2StartLevel,
  startLevelForInput,
  startTableBits,
} from '../pgtable/geometry.ts';
import { decodeCd } from '../smmu/cd.ts';
import { REG } from '../smmu/registers.ts';
import { decodeL1Std, decodeSte, STE_CFG_NESTED, STE_CFG_S1_TRANS, STE_CFG_S2_TRANS } from '../smmu/ste.ts';
import type { VfioContainer } from '../vfio/container.ts';
import type { Host } from './host.ts';
import type { Process } from './process.ts';

const TWO_32 = 4294967296;

/** FNV-1a over 32-bit words: cheap, allocation-free, enough to tell states apart. */
class Hash {
  h = 0x811c9dc5;
  n = 0;
  word(w: number): void {
    let h = this.h;
    for (let i = 0; i < 4; i++) {
      h ^= (w >>> (i * 8)) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
    this.h = h >>> 0;
    this.n++;
  }
  num(v: number): void {
    this.word(v % TWO_32);
    this.word(Math.floor(v / TWO_32));
  }
  get value(): string {
    return `${this.n}:${this.h.toString(16)}`;
  }
}

/** One 4 KiB table read in one go, per level of the walk (the digest runs on every step of a fuzz run). */
const TABLE_BUFS = Array.from({ length: 6 }, () => new Uint32Array(1024));

function readTable(mem: PhysMem, table: number, level: number, entries: number): Uint32Array {
  const words = TABLE_BUFS[level];
  const bytes = new Uint8Array(words.buffer, 0, Math.min(entries, 512) * 8);
  mem.readBytes(table, bytes, 0, bytes.byteLength);
  return words;
}

/** Every valid leaf of an LPAE table (VMSAv8-64, 4 KiB granule): its input address and descriptor words. */
function lpaeLeaves(
  mem: PhysMem,
  table: number,
  level: number,
  entries: number,
  base: number,
  out: Hash,
): void {
  const span = POW2[levelShift(GRANULE_4K, level)];
  // A start table of concatenated pages is read a page (512 entries) at a time.
  for (let first = 0; first < entries; first += 512) {
    const n = Math.min(512, entries - first);
    if (!mem.contains(table + first * 8, n * 8)) return;
    const w = readTable(mem, table + first * 8, level, n);
    for (let j = 0; j < n; j++) {
      const lo = w[2 * j];
      if ((lo & 1) === 0) continue;
      const hi = w[2 * j + 1];
      const va = base + (first + j) * span;
      if (level < 3 && (lo & 3) === 3) {
        const next = decodeAddress(lo, hi, GRANULE_4K, false);
        if (mem.contains(next, 4096)) lpaeLeaves(mem, next, level + 1, 512, va, out);
        continue;
      }
      if (level === 3 && (lo & 3) !== 3) continue;
      out.num(va);
      out.word(lo);
      out.word(hi);
    }
  }
}

/** Every present leaf of a VT-d second-level table (R|W set; PS marks a super page). */
function vtdLeaves(mem: PhysMem, table: number, level: number, base: number, out: Hash): void {
  const span = 2 ** (12 + 9 * (level - 1));
  const w = readTable(mem, table, level, 512);
  for (let i = 0; i < 512; i++) {
    const lo = w[2 * i];
    if ((lo & 3) === 0) continue;
    const hi = w[2 * i + 1];
    const va = base + i * span;
    if (level > 1 && (lo & 0x80) === 0) {
      const next = (hi & 0xfffff) * TWO_32 + ((lo & 0xfffff000) >>> 0);
      if (mem.contains(next, 4096)) vtdLeaves(mem, next, level - 1, va, out);
      continue;
    }
    out.num(va);
    out.word(lo);
    out.word(hi);
  }
}

/** The leaves of a 4 KiB-granule table for `ias` input bits, from SL0 (stage 2) or the size (stage 1). */
function tableLeaves(mem: PhysMem, table: number, ias: number, sl0: number | undefined, out: Hash): void {
  const level = sl0 !== undefined ? s2StartLevel(GRANULE_4K, sl0) : startLevelForInput(GRANULE_4K, ias);
  const entries = 2 ** Math.min(13, Math.max(0, startTableBits(GRANULE_4K, level, ias)));
  lpaeLeaves(mem, table, level, entries, 0, out);
}

/** The leaves of one domain's tables as its hardware reads them. */
function domainLeaves(host: Host, domain: IommuDomain): string {
  const h = new Hash();
  const t = domain.hwTables();
  if (t?.kind === 'lpae') lpaeLeaves(host.phys, t.pgd, t.startLevel, t.entries, 0, h);
  else if (t?.kind === 'vtd') vtdLeaves(host.phys, t.root, t.levels, 0, h);
  else if (t?.kind === 'mappings') {
    for (const m of t.mappings) {
      h.num(m.iova);
      h.num(m.size);
      h.num(m.pa);
      h.word(m.flags);
    }
  }
  return h.value;
}

/**
 * The SMMU's stream table as the SMMU reads it (STRTAB_BASE / STRTAB_BASE_CFG): every non-zero L1
 * descriptor, every STE with V = 1, and the first CD of each STE whose Config has stage 1.
 */
function streamTable(host: Host): string | null {
  const smmu = host.smmu;
  if (smmu === null) return null;
  const mem = host.phys;
  const h = new Hash();
  const base =
    (smmu.readReg32(REG.STRTAB_BASE + 4) & 0xffffff) * TWO_32 +
    ((smmu.readReg32(REG.STRTAB_BASE) & ~63) >>> 0);
  const cfg = smmu.readReg32(REG.STRTAB_BASE_CFG);
  const log2size = cfg & 0x3f;
  const twoLevel = ((cfg >>> 16) & 3) === 1;
  const split = (cfg >>> 6) & 0x1f;
  const words = new Uint32Array(16);
  const read16 = (addr: number): void => {
    for (let i = 0; i < 16; i++) words[i] = mem.readU32(addr + i * 4);
  };
  const ste = (addr: number, sid: number): void => {
    if (!mem.contains(addr, 64) || (mem.readU32(addr) & 1) === 0) return;
    h.word(sid);
    read16(addr);
    for (const w of words) h.word(w);
    const e = decodeSte(words);
    if (e.Config === STE_CFG_S1_TRANS) {
      // Stage 1 only: the CD (a PA) and the leaves of its TTB0 table (4 KiB granule).
      if (mem.contains(e.S1ContextPtr, 64)) {
        read16(e.S1ContextPtr);
        for (const w of words) h.word(w);
        const cd = decodeCd(words);
        const ias = 64 - cd.T0SZ;
        if (cd.TG0 === 0 && ias > 12 && mem.contains(cd.TTB0, 8))
          tableLeaves(mem, cd.TTB0, ias, undefined, h);
      }
    } else if (e.Config === STE_CFG_S2_TRANS || e.Config === STE_CFG_NESTED) {
      // Stage 2 (a nested STE's stage 1 is the guest's, in its own memory): the leaves of S2TTB.
      const ias = 64 - e.S2T0SZ;
      if (e.S2TG === 0 && ias > 12 && mem.contains(e.S2TTB, 8)) tableLeaves(mem, e.S2TTB, ias, e.S2SL0, h);
    }
  };
  if (!twoLevel) {
    for (let sid = 0; sid < 2 ** Math.min(log2size, 12); sid++) ste(base + sid * 64, sid);
    return h.value;
  }
  const l1 = 2 ** Math.max(0, log2size - split);
  for (let i = 0; i < l1; i++) {
    const lo = mem.readU32(base + i * 8);
    const hi = mem.readU32(base + i * 8 + 4);
    if (lo === 0 && hi === 0) continue;
    h.word(i);
    h.word(lo);
    h.word(hi);
    const l1d = decodeL1Std(lo, hi);
    if (l1d.Span === 0) continue;
    for (let j = 0; j < 2 ** Math.min(l1d.Span - 1, split); j++) ste(l1d.L2Ptr + j * 64, i * 2 ** split + j);
  }
  return h.value;
}

function containerDigest(host: Host, c: VfioContainer): unknown {
  const it = c.iommu;
  if (it === null) return { groups: c.groups.map((g) => g.id), iommu: null };
  const s = it.s;
  const dmas = [...s.dmas].map((d) => ({
    iova: d.iova,
    size: d.size,
    vaddr: d.vaddr.toString(16),
    prot: d.prot,
    locked: d.lockedPages,
    cap: d.lockCap,
    inval: d.vaddrInvalid,
    dirty: d.dirtyBitmap,
  }));
  return {
    groups: c.groups.map((g) => g.id),
    v2: it.v2,
    nesting: it.nesting,
    domains: s.domains.map((d) => ({
      groups: d.groups.map((g) => g.id),
      leaves: domainLeaves(host, d.domain),
    })),
    dmas,
    avail: s.dmaAvail,
    pgsize: s.pgsizeBitmap.toString(16),
    iova: s.iovaList.map((r) => `${r.start.toString(16)}-${r.end.toString(16)}`),
    dirty: s.dirtyPageTracking,
    vaddrInvalid: s.vaddrInvalidCount,
  };
}

export function stateDigest(host: Host, procs: Process[]): string {
  const containers = new Set<VfioContainer>();
  for (const g of host.vfio.groups.values()) if (g.container) containers.add(g.container);
  for (const p of procs)
    for (const fd of p.openFds) {
      const f = p.fdget(fd);
      if (f?.kind === 'vfio-container') containers.add(f as VfioContainer);
    }
  return JSON.stringify({
    groups: [...host.vfio.groups.values()].map((g) => ({
      id: g.id,
      open: g.openedFile !== null,
      container: g.container !== null,
      devices: g.openDevices,
      owner: g.iommuGroup.ownerCount,
      domain: g.iommuGroup.domain !== null,
    })),
    containers: [...containers].map((c) => containerDigest(host, c)),
    strtab: streamTable(host),
    procs: procs.map((p) => ({
      fds: p.openFds,
      locked: p.mm.lockedVm,
      pinnedVm: p.mm.pinnedVm,
      pinned: p.mm.pinnedPages,
      memlock: `${p.task.memlock.cur}/${p.task.memlock.max}`,
      caps: p.task.capEff,
    })),
  });
}
