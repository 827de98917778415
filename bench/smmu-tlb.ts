/**
 * SMMU translation costs, measured in one run against plain-JS baselines:
 *  - TLB hit of a nested (stage 1 + stage 2) domain vs `Map.get` on a 256-entry map of numbers
 *    (targets: <= 3x the Map.get, >= 20 M translations/s);
 *  - a cold nested miss (24 descriptor reads, configuration cached) vs the same 24 descriptors read
 *    as raw `readU32` pairs (target: <= 1.5x).
 * Run: npx tsx bench/smmu-tlb.ts
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { do_not_optimize, measure } from 'mitata';
import { PhysMem } from '../src/mm/physmem.ts';
import {
  ACCESS_READ,
  IOMMU_CACHE,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtable,
  type PgtableMemory,
  TableHeap,
} from '../src/pgtable/index.ts';
import {
  CMD_CFGI_STE_RANGE,
  CMD_SYNC,
  CMD_TLBI_NSNH_ALL,
  encodeCd,
  encodeCommand,
  encodeSte,
  REG,
  Smmu,
  SmmuTrace,
} from '../src/smmu/index.ts';

const RW = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
const OPS = 1024;
const PAGES = 64;
const VA = 0x1000_0000;
/** 1024 pages cycled through a 256-entry flush-all TLB: every translation misses and inserts. */
const VA2 = 0x2000_0000;
const MISS_PAGES = 1024;

function nestedDomain(): { mem: PhysMem; smmu: Smmu } {
  const mem = new PhysMem();
  const smmu = new Smmu(mem, { preset: 'qemu-virt' });
  const w = (off: number, v: number) => smmu.writeReg32(off, v);
  const put = (addr: number, words: ArrayLike<number>) => {
    for (let i = 0; i < words.length; i++) mem.writeU32(addr + i * 4, words[i]);
  };
  // Stream table at 1 MiB, command queue at 2 MiB, event queue at 3 MiB (Linux reset order).
  w(REG.STRTAB_BASE, 0x100000);
  w(REG.STRTAB_BASE_CFG, 8);
  w(REG.CMDQ_BASE, 0x200000 | 8);
  w(REG.CR0, 8);
  put(0x200000, encodeCommand(CMD_CFGI_STE_RANGE, { range: 31 }));
  put(0x200010, encodeCommand(CMD_TLBI_NSNH_ALL));
  put(0x200020, encodeCommand(CMD_SYNC));
  w(REG.CMDQ_PROD, 3);
  w(REG.EVENTQ_BASE, 0x300000 | 6);
  w(REG.CR0, 0xd);
  // Stage 2: 44-bit IPA, 4 levels, guest RAM at IPA 1 GiB -> PA 2 GiB + 4 KiB (4K pages).
  const heap = new TableHeap(mem, 0x1000000, 0x1000000, (a, n) => mem.fill(a, n, 0));
  const s2 = IoPgtable.create(mem, { stage: 2, pgsizeBitmap: 0x40201000, ias: 44, oas: 44 }, heap)!;
  s2.map(0x4000_0000, 0x8000_1000, 0x40_0000, RW);
  // Stage 1 (48-bit VA, 4 levels) built by the "guest" in its RAM, every pointer an IPA.
  const guest: PgtableMemory = {
    readU32: (ipa) => mem.readU32(s2.iovaToPhys(ipa)),
    writeU32: (ipa, v) => mem.writeU32(s2.iovaToPhys(ipa), v),
  };
  const s1 = IoPgtable.create(
    guest,
    { stage: 1, pgsizeBitmap: 0x40201000, ias: 48, oas: 44 },
    new TableHeap(guest, 0x4010_0000, 0x10_0000),
  )!;
  s1.map(VA, 0x4020_0000, PAGES * 0x1000, RW);
  s1.map(VA2, 0x4020_0000, MISS_PAGES * 0x1000, RW);
  const cd = encodeCd({
    T0SZ: 16,
    IR0: 1,
    OR0: 1,
    SH0: 3,
    EPD1: 1,
    V: 1,
    IPS: 4,
    AA64: 1,
    R: 1,
    A: 1,
    ASET: 1,
    ASID: 1,
    TTB0: s1.pgd,
    MAIR0: 0xf404ff44,
  });
  for (let i = 0; i < 16; i++) guest.writeU32(0x4001_0000 + i * 4, cd[i]);
  put(
    0x100000 + 8 * 64,
    encodeSte({
      V: 1,
      Config: 7,
      S1ContextPtr: 0x4001_0000,
      S2VMID: 1,
      S2T0SZ: s2.tcr.tsz,
      S2SL0: s2.tcr.sl,
      S2IR0: 1,
      S2OR0: 1,
      S2SH0: 3,
      S2TG: 0,
      S2PS: s2.tcr.ps,
      S2AA64: 1,
      S2PTW: 1,
      S2R: 1,
      S2TTB: s2.pgd,
    }),
  );
  return { mem, smmu };
}

const { mem, smmu } = nestedDomain();
const vas = Array.from({ length: PAGES }, (_, i) => VA + i * 0x1000 + 8);
for (const va of vas)
  if (smmu.translate(8, -1, va, ACCESS_READ) < 0) throw new Error('bench setup: translation failed');

// Baseline: Map.get on 256 numbers.
const map = new Map<number, number>();
const keys = Array.from({ length: 256 }, (_, i) => 0x40000 + i * 7);
for (const k of keys) map.set(k, k * 2);

const hit = await measure(() => {
  let s = 0;
  for (let i = 0; i < OPS; i++) s += smmu.translate(8, -1, vas[i & (PAGES - 1)], ACCESS_READ);
  do_not_optimize(s);
});
const mapGet = await measure(() => {
  let s = 0;
  for (let i = 0; i < OPS; i++) s += map.get(keys[i & 255])!;
  do_not_optimize(s);
});

// Cold miss: the TLB off, configuration cached -> every translation is the full 2-D walk.
const trace = new SmmuTrace();
smmu.setCaching({ tlb: false });
smmu.translate(8, -1, vas[0], ACCESS_READ);
smmu.translate(8, -1, vas[0], ACCESS_READ, trace);
const walkAddrs = trace.walkReads.map((r) => r.pa);
if (walkAddrs.length !== 24) throw new Error(`bench setup: ${walkAddrs.length} reads, expected 24`);
const miss = await measure(() => {
  let s = 0;
  for (let i = 0; i < 16; i++) s += smmu.translate(8, -1, vas[i], ACCESS_READ);
  do_not_optimize(s);
});
const raw = await measure(() => {
  let s = 0;
  for (let i = 0; i < 16; i++)
    for (let j = 0; j < 24; j++) s += mem.readU32(walkAddrs[j]) + mem.readU32(walkAddrs[j] + 4);
  do_not_optimize(s);
});
// The same reads as a dependent chain, as in any table walk: each address waits for the previous
// descriptor (`opaque.zero` is 0 read from untouched memory: the compiler cannot drop the dependency).
const opaque = { zero: mem.readU32(0x7fff_f000) };
const chained = await measure(() => {
  let s = 0;
  for (let i = 0; i < 16; i++) {
    let dep = 0;
    for (let j = 0; j < 24; j++) {
      const a = walkAddrs[j] + (dep & opaque.zero);
      dep = mem.readU32(a) + mem.readU32(a + 4);
      s += dep;
    }
  }
  do_not_optimize(s);
});
// Misses with the TLB on: walk and insert, the QEMU-like TLB flushing itself every 256 inserts.
smmu.setCaching({ tlb: true });
let next = 0;
const missInsert = await measure(() => {
  let s = 0;
  for (let i = 0; i < 16; i++) {
    s += smmu.translate(8, -1, VA2 + (next++ & (MISS_PAGES - 1)) * 0x1000, ACCESS_READ);
  }
  do_not_optimize(s);
});

// Allocation on the hit path: garbage collections during 10M warmed-up hits (none if nothing allocates).
function hits(n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += smmu.translate(8, -1, vas[i & (PAGES - 1)], ACCESS_READ);
  return s;
}
for (const va of vas) smmu.translate(8, -1, va, ACCESS_READ);
// Warm up until `hits` runs its regular optimized code (an on-stack-replacement version may box).
for (let k = 0; k < 5; k++) do_not_optimize(hits(1_000_000));
// Steady state: the fewest collections over three runs (a run may still execute on-stack-replaced code).
let gcs = Number.POSITIVE_INFINITY;
for (let run = 0; run < 3; run++) {
  let n = 0;
  const observer = new PerformanceObserver((list) => {
    n += list.getEntries().length;
  });
  observer.observe({ entryTypes: ['gc'] });
  do_not_optimize(hits(10_000_000));
  await new Promise((resolve) => setTimeout(resolve, 10));
  observer.disconnect();
  gcs = Math.min(gcs, n);
}

const hitNs = hit.avg / OPS;
const mapNs = mapGet.avg / OPS;
const missNs = miss.avg / 16;
const rawNs = raw.avg / 16;
const fmt = (ns: number) => `${ns.toFixed(2)} ns`;
console.log(`SMMU TLB bench (${process.version}, ${process.arch})`);
console.log(`  TLB hit, nested domain:        ${fmt(hitNs)}  = ${(1e3 / hitNs).toFixed(1)} M translations/s`);
console.log(`  Map.get, 256 numbers:          ${fmt(mapNs)}  = ${(1e3 / mapNs).toFixed(1)} M gets/s`);
console.log(`  ratio hit / Map.get:           ${(hitNs / mapNs).toFixed(2)}x   (target <= 3x, >= 20 M/s)`);
console.log(`  cold nested miss (24 reads):   ${fmt(missNs)}`);
console.log(`  24 raw readU32 pairs:          ${fmt(rawNs)}`);
console.log(`  ratio miss / raw reads:        ${(missNs / rawNs).toFixed(2)}x   (target <= 1.5x)`);
console.log(
  `  24 chained readU32 pairs:      ${fmt(chained.avg / 16)}   (each address depends on the last read)`,
);
console.log(`  ratio miss / chained reads:    ${(missNs / (chained.avg / 16)).toFixed(2)}x`);
console.log(
  `  miss + insert, TLB on:         ${fmt(missInsert.avg / 16)}   (QEMU-like 256 entries, flush-all)`,
);
console.log(`  GCs during 10M hits:           ${gcs}`);
