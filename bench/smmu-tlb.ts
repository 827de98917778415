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
import { ACCESS_READ } from '../src/pgtable/index.ts';
import { SmmuTrace } from '../src/smmu/index.ts';
import { GUEST_IPA, nestedSetup, RW } from '../test/smmu/driver.ts';

const OPS = 1024;
const PAGES = 64;
const VA = 0x1000_0000;
/** 1024 pages cycled through a 256-entry flush-all TLB: every translation misses and inserts. */
const VA2 = 0x2000_0000;
const MISS_PAGES = 1024;

// A nested stream (StreamID 8) programmed through the registers as Linux's driver does: stage 2 with
// 44-bit IPAs and 4 levels (guest RAM in 4K pages), the guest's CD and 4-level stage-1 tables at IPAs.
const { mem, smmu, s1 } = nestedSetup({ preset: 'qemu-virt' });
s1.map(VA, GUEST_IPA + 0x200000, PAGES * 0x1000, RW);
s1.map(VA2, GUEST_IPA, MISS_PAGES * 0x1000, RW); // all 4 MiB of guest RAM
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
for (let i = 0; i < MISS_PAGES; i++) {
  if (smmu.translate(8, -1, VA2 + i * 0x1000, ACCESS_READ) < 0)
    throw new Error('bench setup: miss page unmapped');
}
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
