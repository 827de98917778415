/**
 * Invariants that hold after every step, read from what the hardware sees, not from the driver's
 * bookkeeping:
 *  - isolation: every translation any STE (SMMUv3), context entry (VT-d) or endpoint (virtio-iommu)
 *    gives a device lands inside a DMA mapping of its container, on a frame pinned for it (or the
 *    shared zero page / device memory, which are never pinned), writable only where the mapping is;
 *    every leaf of the tables is enumerated from the descriptor bytes in memory (VMSAv8-64 and VT-d
 *    formats written out here from the architecture), and on the SMMU a sample of addresses that
 *    were ever mapped is also translated through the TLB (a stale entry is a breach);
 *  - after every fd is closed: no page pinned, locked_vm 0, no STE that lets a device in (V = 0 or
 *    Config = abort), no VT-d context, no virtio-iommu endpoint, no translation of any address.
 */

import { ACCESS_READ, ACCESS_WRITE } from '../../src/pgtable/index.ts';
import { decodeCd, decodeSte, REG } from '../../src/smmu/index.ts';
import { TWO_64 } from './facts.ts';
import { FuzzFailure, type World } from './world.ts';

export interface Tracked {
  /** IOVA ranges that were ever mapped in this run (probe points for the TLB). */
  ranges: { iova: bigint; size: bigint }[];
  seen: Map<string, true>;
}

interface Mapping {
  iova: number;
  end: number;
  prot: number;
}

interface Leaf {
  iova: number;
  size: number;
  pa: number;
  write: boolean;
}

const TWO_32 = 4294967296;

/**
 * The DMA mappings of the group's container: the shadow's when there is one, else the model's; null
 * when the device is attached through iommufd (its IOAS decides, which this check does not read:
 * then only the pins of what the device reaches are checked).
 */
function mappings(w: World): Mapping[] | null {
  const sh = w.shadow;
  if (sh !== null) {
    const c = sh.group.container;
    if (c === null || c.type === 0) return [];
    return c.dmas.map((d) => ({ iova: Number(d.iova), end: Number(d.iova + d.size), prot: d.prot }));
  }
  const g = w.host.vfio.groups.get(w.host.groups[0].id)!;
  const it = g.container?.iommu;
  if (!it) return w.host.groups[0].domain !== null ? null : [];
  return [...it.s.dmas].map((d) => ({ iova: d.iova, end: d.iova + d.size, prot: d.prot }));
}

/** Leaves of a VMSAv8-64 table, 4 KiB granule (IHI 0070 / Arm ARM D8): stage 1 AP[2] = bit 7 read-only; stage 2 S2AP[1] = bit 7 write. */
function lpaeLeaves(
  w: World,
  table: number,
  level: number,
  entries: number,
  base: number,
  stage: 1 | 2,
  out: Leaf[],
): void {
  const mem = w.host.phys;
  const span = 2 ** (12 + 9 * (3 - level));
  for (let i = 0; i < entries; i++) {
    const slot = table + i * 8;
    if (!mem.contains(slot, 8)) return;
    const lo = mem.readU32(slot);
    if ((lo & 1) === 0) continue;
    const hi = mem.readU32(slot + 4);
    const addr = (hi & 0xffff) * TWO_32 + ((lo & 0xfffff000) >>> 0);
    const va = base + i * span;
    if (level < 3 && (lo & 3) === 3) {
      lpaeLeaves(w, addr, level + 1, 512, va, stage, out);
      continue;
    }
    if (level === 3 && (lo & 3) !== 3) continue;
    if (level === 0) continue; // no level-0 blocks with a 4 KiB granule
    const write = stage === 1 ? (lo & 0x80) === 0 : (lo & 0x80) !== 0;
    out.push({ iova: va, size: span, pa: addr, write });
  }
}

/** Leaves of a VT-d second-level table (R bit 0, W bit 1, PS bit 7). */
function vtdLeaves(w: World, table: number, level: number, base: number, out: Leaf[]): void {
  const mem = w.host.phys;
  const span = 2 ** (12 + 9 * (level - 1));
  for (let i = 0; i < 512; i++) {
    const slot = table + i * 8;
    const lo = mem.readU32(slot);
    if ((lo & 3) === 0) continue;
    const hi = mem.readU32(slot + 4);
    const addr = (hi & 0xfffff) * TWO_32 + ((lo & 0xfffff000) >>> 0);
    const va = base + i * span;
    if (level > 1 && (lo & 0x80) === 0) {
      vtdLeaves(w, addr, level - 1, va, out);
      continue;
    }
    out.push({ iova: va, size: span, pa: addr, write: (lo & 2) !== 0 });
  }
}

/** The start level and entries of a 4 KiB-granule table for an input size of `ias` bits. */
function geometry(ias: number, sl0?: number): { level: number; entries: number } {
  const level = sl0 !== undefined ? [2, 1, 0, 3][sl0] : 4 - Math.ceil((ias - 12) / 9);
  return { level, entries: 2 ** Math.max(0, ias - (12 + 9 * (3 - level))) };
}

function readWords(w: World, addr: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = w.host.phys.readU32(addr + i * 4);
  return out;
}

/** Every STE with V = 1, found by walking the stream table from STRTAB_BASE (2-level or linear). */
export function validStes(w: World): { sid: number; words: Uint32Array }[] {
  const smmu = w.host.smmu!;
  const mem = w.host.phys;
  const base =
    (smmu.readReg32(REG.STRTAB_BASE + 4) & 0xffffff) * TWO_32 +
    ((smmu.readReg32(REG.STRTAB_BASE) & ~63) >>> 0);
  const cfg = smmu.readReg32(REG.STRTAB_BASE_CFG);
  const log2size = cfg & 0x3f;
  const split = (cfg >>> 6) & 0x1f;
  const out: { sid: number; words: Uint32Array }[] = [];
  const ste = (addr: number, sid: number) => {
    if (mem.contains(addr, 64) && (mem.readU32(addr) & 1) === 1)
      out.push({ sid, words: readWords(w, addr, 16) });
  };
  if (((cfg >>> 16) & 3) !== 1) {
    for (let sid = 0; sid < 2 ** Math.min(log2size, 12); sid++) ste(base + sid * 64, sid);
    return out;
  }
  for (let i = 0; i < 2 ** Math.max(0, log2size - split); i++) {
    const lo = mem.readU32(base + i * 8);
    const hi = mem.readU32(base + i * 8 + 4);
    const span = lo & 0x1f;
    if (span === 0) continue;
    const l2 = (hi & 0xffffff) * TWO_32 + ((lo & 0xffffffc0) >>> 0);
    for (let j = 0; j < 2 ** Math.min(span - 1, split); j++) ste(l2 + j * 64, i * 2 ** split + j);
  }
  return out;
}

/** What the hardware lets the device reach: the leaves of every table a context points at. */
function reachable(w: World): { leaves: Leaf[]; contexts: number } {
  const host = w.host;
  const leaves: Leaf[] = [];
  let contexts = 0;
  const rid = host.devices[0].rid;
  if (host.smmu !== null) {
    for (const { sid, words } of validStes(w)) {
      const ste = decodeSte(words);
      if (ste.Config === 0) continue; // abort
      contexts++;
      if (ste.Config === 4) throw new FuzzFailure(`STE ${sid} is bypass: the device reaches all memory`);
      if (sid !== rid)
        throw new FuzzFailure(`STE ${sid} translates, but no device of this host has that StreamID`);
      if (ste.Config & 2) {
        // Stage 2 (S2TTB; the walk of a nested STE's stage 1 is bounded by it too).
        if (ste.S2TG !== 0)
          throw new FuzzFailure(`STE ${sid}: stage-2 granule ${ste.S2TG} is not the 4 KiB the driver uses`);
        const g = geometry(64 - ste.S2T0SZ, ste.S2SL0);
        lpaeLeaves(w, ste.S2TTB, g.level, g.entries, 0, 2, leaves);
      } else {
        const cd = decodeCd(readWords(w, ste.S1ContextPtr, 16));
        if (!cd.V) continue;
        if (cd.TG0 !== 0) throw new FuzzFailure(`CD of STE ${sid}: granule ${cd.TG0} is not 4 KiB`);
        const g = geometry(64 - cd.T0SZ);
        lpaeLeaves(w, cd.TTB0, g.level, g.entries, 0, 1, leaves);
      }
    }
  } else if (host.iommuKind === 'intel') {
    const hw = host.iommu.hw as unknown as { context: Map<number, { root: number; levels: number }> };
    for (const [r, pt] of hw.context) {
      contexts++;
      if (r !== rid)
        throw new FuzzFailure(`a VT-d context for requester ${r}, which is no device of this host`);
      vtdLeaves(w, pt.root, pt.levels, 0, leaves);
    }
  } else {
    const dev = host.iommu.hw as unknown as {
      endpoints: Map<number, number>;
      domains: Map<number, { tree: Iterable<{ iova: number; size: number; pa: number; flags: number }> }>;
    };
    for (const [ep, dom] of dev.endpoints) {
      contexts++;
      if (ep !== rid) throw new FuzzFailure(`a virtio-iommu endpoint ${ep}, which is no device of this host`);
      for (const m of dev.domains.get(dom)?.tree ?? [])
        leaves.push({ iova: m.iova, size: m.size, pa: m.pa, write: (m.flags & 2) !== 0 });
    }
  }
  return { leaves, contexts };
}

/** Whether `pa` is device memory: a BAR of the host's device (never pinned, never charged). */
function deviceMemory(w: World, pa: number): boolean {
  const pci = (
    w.host as unknown as {
      vfioPci: Map<unknown, { barPa: number[]; fn: { bars: ({ size: number } | null)[] } }>;
    }
  ).vfioPci;
  for (const v of pci.values())
    for (let i = 0; i < v.barPa.length; i++) {
      const b = v.fn.bars[i];
      if (b !== null && pa >= v.barPa[i] && pa < v.barPa[i] + b.size) return true;
    }
  return false;
}

function pinnedOrReserved(w: World, pa: number, m: Mapping): string | null {
  if (w.proc.mm.pinsAt(pa) > 0) return null;
  if (pa === w.host.phys.zeroPage && (m.prot & 2) === 0) return null; // the shared zero page, read-only
  if (deviceMemory(w, pa)) return null; // a BAR mapped through VM_PFNMAP (peer-to-peer DMA)
  for (const p of w.procs) if (p !== w.proc && p.mm.pinsAt(pa) > 0) return 'pinned by a process that exited';
  return 'not pinned';
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export function checkIsolation(w: World): void {
  const known = mappings(w);
  const maps = known ?? [];
  for (const m of maps) {
    const key = `${m.iova}:${m.end}`;
    if (!w.tracked.seen.has(key)) {
      w.tracked.seen.set(key, true);
      w.tracked.ranges.push({ iova: BigInt(m.iova), size: BigInt(m.end - m.iova) });
      if (w.tracked.ranges.length > 32) w.tracked.ranges.shift();
    }
  }
  const { leaves, contexts } = reachable(w);
  let leafBytes = 0;
  for (const l of leaves) {
    const m =
      known === null
        ? { iova: l.iova, end: l.iova + l.size, prot: 3 }
        : maps.find((x) => x.iova <= l.iova && l.iova + l.size <= x.end);
    if (m === undefined)
      throw new FuzzFailure(
        `the device reaches IOVA ${hex(l.iova)}+${hex(l.size)} -> PA ${hex(l.pa)}, which no mapping covers`,
      );
    if (l.write && (m.prot & 2) === 0)
      throw new FuzzFailure(`IOVA ${hex(l.iova)} is writable by the device, but its mapping is read-only`);
    for (let off = 0; off < l.size; off += 0x1000) {
      const why = pinnedOrReserved(w, l.pa + off, m);
      if (why !== null)
        throw new FuzzFailure(`IOVA ${hex(l.iova + off)} -> PA ${hex(l.pa + off)}: the frame is ${why}`);
      if (off === 0 && l.size > 0x1000) off = l.size - 0x2000; // a block: its first and last page
    }
    leafBytes += l.size;
  }
  // Every mapped byte is reachable (virtio-iommu's device refuses overlapping MAPs: mappings that
  // end at 2^64 may overlap before 6.18, and then the device holds fewer).
  let mapBytes = 0;
  for (const m of maps) mapBytes += m.end - m.iova;
  const overlap = maps.some((a, i) => maps.some((b, j) => i < j && a.iova < b.end && b.iova < a.end));
  if (known !== null && contexts > 0 && !overlap && leafBytes !== mapBytes)
    throw new FuzzFailure(`the tables map ${hex(leafBytes)} bytes, the mappings hold ${hex(mapBytes)}`);
  if (w.host.smmu !== null && known !== null) probeTlb(w, maps);
}

/**
 * Translations through the SMMU's TLB and configuration cache of pages ever mapped: those still
 * mapped fill the caches, the others only look them up (a hit there is a stale entry).
 */
function probeTlb(w: World, maps: Mapping[]): void {
  const smmu = w.host.smmu!;
  const sid = w.host.devices[0].rid;
  // A nested STE translates the guest's addresses through its stage 1: its reach is the stage-2 leaves.
  if (validStes(w).some((s) => s.sid === sid && decodeSte(s.words).Config === 7)) return;
  for (const r of w.tracked.ranges) {
    const first = Number(r.iova);
    const last = Number(r.iova + r.size) - 0x1000;
    for (const page of [first, last, first - 0x1000, last + 0x1000]) {
      if (page < 0 || page >= Number(TWO_64) || page >= 2 ** 53) continue;
      const m = maps.find((x) => x.iova <= page && page < x.end);
      for (const access of [ACCESS_READ, ACCESS_WRITE]) {
        // A mapped page is translated as a device would, filling the TLB (model runs make no DMA of
        // their own), so a later unmap without invalidation leaves an entry the peek below finds.
        const t = smmu.walkTrace(sid, -1, page, access, { caches: m === undefined ? 'peek' : true });
        if (t.pa < 0) continue;
        if (m === undefined) {
          throw new FuzzFailure(
            `StreamID ${sid} still reaches IOVA ${hex(page)} -> PA ${hex(t.pa)} (a stale TLB or table entry)`,
          );
        }
        if (access === ACCESS_WRITE && (m.prot & 2) === 0)
          throw new FuzzFailure(`StreamID ${sid} can write IOVA ${hex(page)}, mapped read-only`);
        const why = pinnedOrReserved(w, t.pa - (t.pa % 0x1000), m);
        if (why !== null)
          throw new FuzzFailure(`IOVA ${hex(page)} -> PA ${hex(t.pa)} through the TLB: the frame is ${why}`);
      }
    }
  }
}

/** After the process exited: nothing pinned or charged, no context lets the device in. */
export function checkTornDown(w: World): void {
  const p = w.proc;
  if (p.mm.lockedVm !== 0)
    throw new FuzzFailure(`locked_vm is ${p.mm.lockedVm} pages after every fd was closed`);
  if (p.mm.pinnedPages !== 0)
    throw new FuzzFailure(`${p.mm.pinnedPages} pages are still pinned after every fd was closed`);
  if (p.mm.pinnedVm !== 0) throw new FuzzFailure(`pinned_vm is ${p.mm.pinnedVm} after every fd was closed`);
  for (const g of w.host.groups) {
    if (g.domain !== null) throw new FuzzFailure(`group ${g.id} is still attached to a domain`);
    if (g.ownerCount !== 0) throw new FuzzFailure(`group ${g.id} still has a DMA owner`);
  }
  const { leaves, contexts } = reachable(w);
  if (contexts !== 0 || leaves.length !== 0)
    throw new FuzzFailure(
      `${contexts} translation contexts (${leaves.length} leaves) remain after every fd was closed`,
    );
  if (w.host.smmu !== null) probeTlb(w, []);
}
