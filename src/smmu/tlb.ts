/**
 * The SMMU TLB: cached final translations tagged as the architecture tags them (IHI 0070 §3.17,
 * reference §9): StreamWorld, VMID, ASID (or global, nG = 0), and the kind of entry, stage-1-only,
 * stage-2-only or combined stage 1+2, so that invalidations by VA, by IPA and by VMID reach exactly the
 * entries they must (TLBI_S2_IPA leaves combined entries alone, §5.3).
 *
 * Only leaf translations are cached (no walk caches): every miss is a full walk. Capacity and the
 * replacement policy are configuration ("qemu-like": 256 entries, flush everything when full).
 *
 * The table is an open-addressing hash in typed arrays keyed by (context, size, page number), so a
 * lookup allocates nothing and keys never box (page numbers exceed 2^31).
 */
import { INV_POW2, POW2 } from '../pgtable/index.ts';

export const TLB_S1 = 1;
export const TLB_S2 = 2;
export const TLB_S12 = 3;

/** StreamWorlds of a non-secure SMMU (IHI 0070 §3.3.3). */
export const WORLD_NS_EL1 = 0;
export const WORLD_NS_EL2 = 1;
export const WORLD_NS_EL2_E2H = 2;

export type TlbPolicy = 'flush-all' | 'fifo';

/** One tag: StreamWorld, kind, VMID (-1: none), ASID (-1: global or not ASID-tagged). */
export class TlbContext {
  readonly id: number;
  readonly world: number;
  readonly kind: number;
  readonly vmid: number;
  readonly asid: number;
  /** id * 64: tag of an entry of size 2^k is tagBase + k. */
  readonly tagBase: number;
  /** Entries per size (log2) and the sizes present, smallest first. */
  readonly sizeCount = new Int32Array(64);
  sizes: number[] = [];
  /** The smallest size present (log2) and 2^-size: the micro-TLB is probed with it first. */
  size0 = 64;
  inv0 = 0;
  count = 0;
  /**
   * A direct-mapped micro-TLB of recently used entries (by page number mod 64) in front of the hash
   * table: invisible to software, it only saves the hash probe.
   */
  readonly micro: (TlbEntry | undefined)[] = new Array<TlbEntry | undefined>(64).fill(undefined);

  constructor(id: number, world: number, kind: number, vmid: number, asid: number) {
    this.id = id;
    this.world = world;
    this.kind = kind;
    this.vmid = vmid;
    this.asid = asid;
    this.tagBase = id * 64;
  }
}

export class TlbEntry {
  ctx: TlbContext;
  /** Input address (VA, or IPA for a stage-2-only entry) aligned to the entry size. */
  vaBase: number;
  /** Intermediate address for combined entries (the stage-1 output), aligned likewise. */
  ipaBase: number;
  paBase: number;
  sizeLg2: number;
  /** Walk level of the leaf that set the size, and its granule. */
  level: number;
  granuleLg2: number;
  /** Stage-1 permission bits | stage-2 bits << 6 (a stage that does not translate grants all). */
  perms: number;
  /** vaBase / 2^sizeLg2 (the hash key). */
  readonly page: number;
  slot = -1;
  live = true;

  constructor(
    ctx: TlbContext,
    vaBase: number,
    ipaBase: number,
    paBase: number,
    sizeLg2: number,
    level: number,
    granuleLg2: number,
    perms: number,
  ) {
    this.ctx = ctx;
    this.vaBase = vaBase;
    this.ipaBase = ipaBase;
    this.paBase = paBase;
    this.sizeLg2 = sizeLg2;
    this.level = level;
    this.granuleLg2 = granuleLg2;
    this.perms = perms;
    this.page = Math.floor(vaBase * INV_POW2[sizeLg2]);
  }
}

const EMPTY = -1;

export class Tlb {
  readonly capacity: number;
  readonly policy: TlbPolicy;
  private readonly mask: number;
  private readonly tags: Int32Array;
  private readonly pages: Float64Array;
  private readonly slots: (TlbEntry | undefined)[];
  private readonly contexts = new Map<number, TlbContext>();
  private readonly fifo: TlbEntry[] = [];
  private fifoHead = 0;
  private count = 0;
  /** Entries dropped because the TLB was full. */
  evictions = 0;

  constructor(capacity: number, policy: TlbPolicy = 'flush-all') {
    this.capacity = Math.max(1, capacity);
    this.policy = policy;
    let size = 16;
    while (size < this.capacity * 2) size *= 2;
    this.mask = size - 1;
    this.tags = new Int32Array(size).fill(EMPTY);
    this.pages = new Float64Array(size);
    this.slots = new Array<TlbEntry | undefined>(size).fill(undefined);
  }

  /** The interned context for a tag. */
  context(world: number, kind: number, vmid: number, asid: number): TlbContext {
    const key = ((world * 4 + kind) * 65537 + (vmid + 1)) * 65537 + (asid + 1);
    let ctx = this.contexts.get(key);
    if (ctx === undefined) {
      ctx = new TlbContext(this.contexts.size, world, kind, vmid, asid);
      this.contexts.set(key, ctx);
    }
    return ctx;
  }

  get size(): number {
    return this.count;
  }

  /** The entry of `ctx` covering `addr`, probing each entry size the context holds. */
  lookup(ctx: TlbContext, addr: number): TlbEntry | undefined {
    // Micro-TLB at the smallest size first: the common hit costs one array load and two compares.
    const page = Math.floor(addr * ctx.inv0);
    const m = ctx.micro[page & 63];
    if (m !== undefined && m.page === page && m.sizeLg2 === ctx.size0) return m;
    return this.probe(ctx, addr);
  }

  private probe(ctx: TlbContext, addr: number): TlbEntry | undefined {
    const sizes = ctx.sizes;
    for (let i = 0; i < sizes.length; i++) {
      const k = sizes[i];
      const page = Math.floor(addr * INV_POW2[k]);
      const m = ctx.micro[page & 63];
      if (m !== undefined && m.page === page && m.sizeLg2 === k) return m;
      const tag = ctx.tagBase + k;
      let slot = this.hash(page, tag);
      for (;;) {
        const t = this.tags[slot];
        if (t === tag && this.pages[slot] === page) {
          const e = this.slots[slot]!;
          ctx.micro[page & 63] = e;
          return e;
        }
        if (t === EMPTY) break;
        slot = (slot + 1) & this.mask;
      }
    }
    return undefined;
  }

  insert(
    ctx: TlbContext,
    vaBase: number,
    ipaBase: number,
    paBase: number,
    sizeLg2: number,
    level: number,
    granuleLg2: number,
    perms: number,
  ): TlbEntry {
    const page = Math.floor(vaBase * INV_POW2[sizeLg2]);
    const tag = ctx.tagBase + sizeLg2;
    let slot = this.hash(page, tag);
    for (;;) {
      const t = this.tags[slot];
      if (t === EMPTY) break;
      if (t === tag && this.pages[slot] === page) {
        // Same tag and page: the new walk result replaces the old entry.
        const e = this.slots[slot]!;
        e.ipaBase = ipaBase;
        e.paBase = paBase;
        e.level = level;
        e.granuleLg2 = granuleLg2;
        e.perms = perms;
        return e;
      }
      slot = (slot + 1) & this.mask;
    }
    if (this.count >= this.capacity) {
      this.evictions++;
      if (this.policy === 'flush-all') this.invalidateAll();
      else this.evictOldest();
      return this.insert(ctx, vaBase, ipaBase, paBase, sizeLg2, level, granuleLg2, perms);
    }
    const e = new TlbEntry(ctx, vaBase, ipaBase, paBase, sizeLg2, level, granuleLg2, perms);
    this.place(e, slot, tag, page);
    if (this.policy === 'fifo') this.fifo.push(e);
    this.count++;
    ctx.count++;
    if (ctx.sizeCount[sizeLg2]++ === 0) ctx.sizes = sizesOf(ctx);
    return e;
  }

  /** Removes every entry `match` accepts. Returns how many went. */
  invalidate(match: (e: TlbEntry) => boolean): number {
    // Nothing cached, nothing to scan: an unmap's TLBI on an idle SMMU costs no walk over the slots.
    if (this.count === 0) return 0;
    const doomed: TlbEntry[] = [];
    for (const e of this.slots) if (e !== undefined && match(e)) doomed.push(e);
    for (const e of doomed) this.remove(e);
    return doomed.length;
  }

  invalidateAll(): void {
    if (this.count === 0) return;
    for (const e of this.slots) if (e !== undefined) e.live = false;
    this.tags.fill(EMPTY);
    this.slots.fill(undefined);
    for (const ctx of this.contexts.values()) {
      if (ctx.count === 0) continue;
      ctx.sizeCount.fill(0);
      ctx.sizes = [];
      ctx.size0 = 64;
      ctx.inv0 = 0;
      ctx.count = 0;
      ctx.micro.fill(undefined);
    }
    for (const e of this.fifo) e.live = false;
    this.fifo.length = 0;
    this.fifoHead = 0;
    this.count = 0;
  }

  /** Every live entry (for display and tests). */
  entries(): TlbEntry[] {
    return this.slots.filter((e): e is TlbEntry => e !== undefined);
  }

  private hash(page: number, tag: number): number {
    const lo = page | 0;
    const hi = (page / 4294967296) | 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1) ^ Math.imul(tag + 1, 0x85ebca6b);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    return h & this.mask;
  }

  private place(e: TlbEntry, slot: number, tag: number, page: number): void {
    this.tags[slot] = tag;
    this.pages[slot] = page;
    this.slots[slot] = e;
    e.slot = slot;
  }

  private remove(e: TlbEntry): void {
    if (!e.live) return;
    e.live = false;
    let hole = e.slot;
    // Backward-shift deletion keeps every probe sequence unbroken.
    let j = hole;
    for (;;) {
      j = (j + 1) & this.mask;
      const t = this.tags[j];
      if (t === EMPTY) break;
      const home = this.hash(this.pages[j], t);
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (between) continue;
      this.place(this.slots[j]!, hole, t, this.pages[j]);
      hole = j;
    }
    this.tags[hole] = EMPTY;
    this.slots[hole] = undefined;
    this.count--;
    const ctx = e.ctx;
    if (ctx.micro[e.page & 63] === e) ctx.micro[e.page & 63] = undefined;
    ctx.count--;
    if (--ctx.sizeCount[e.sizeLg2] === 0) ctx.sizes = sizesOf(ctx);
  }

  private evictOldest(): void {
    while (this.fifoHead < this.fifo.length) {
      const e = this.fifo[this.fifoHead++];
      if (e.live) {
        this.remove(e);
        break;
      }
    }
    if (this.fifoHead > 1024 && this.fifoHead * 2 > this.fifo.length) {
      this.fifo.splice(0, this.fifoHead);
      this.fifoHead = 0;
    }
  }
}

function sizesOf(ctx: TlbContext): number[] {
  const out: number[] = [];
  for (let k = 0; k < 64; k++) if (ctx.sizeCount[k] > 0) out.push(k);
  ctx.size0 = out.length > 0 ? out[0] : 64;
  ctx.inv0 = out.length > 0 ? INV_POW2[out[0]] : 0;
  return out;
}

/** True when [base, base + 2^sizeLg2) and [start, end) overlap. */
export function overlaps(base: number, sizeLg2: number, start: number, end: number): boolean {
  return base < end && start < base + POW2[sizeLg2];
}
