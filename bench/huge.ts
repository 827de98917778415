/**
 * Mapping a terabyte: one MAP_DMA of 1 TiB of hugetlb guest RAM (1 GiB or 2 MiB pages), fresh and
 * untouched, as a VMM maps its RAM at start-up. Cost must follow folios and blocks, not bytes: the
 * time (targets 5 ms and 1 s), the heap it leaves behind (< 64 MiB), and the guest frames whose bytes
 * came into existence (none: untouched memory costs nothing; page-table pages are counted apart).
 * Hosts: virtio-iommu and SMMUv3 (intel's 39-bit aperture cannot hold a terabyte).
 */

import { Host, type HostIommuKind } from '../src/host/host.ts';
import { openContainer, openGroup } from '../src/host/vfio-api.ts';
import { VFIO_TYPE1v2_IOMMU } from '../src/uapi/vfio.ts';
import { type BenchContext, check, GiB, heapBytes, MiB, median, nowNs, record, TiB } from './lib.ts';

const HOSTS: HostIommuKind[] = ['virtio', 'smmuv3'];
const CASES = [
  { lg2: 30 as const, label: '1 GiB', targetNs: 5e6, target: '<= 5 ms' },
  { lg2: 21 as const, label: '2 MiB', targetNs: 1e9, target: '<= 1 s' },
];

interface HugeRun {
  ns: number;
  heap: number;
  /** Frames of guest RAM (pinned folios) whose bytes came into being: must be none. */
  guestTouched: number;
  /** Frames touched in all, page-table pages included. */
  touched: number;
  unmapNs: number;
}

/** One fresh host and process; maps `size` bytes of 2^lg2 pages at IOVA 1 TiB and unmaps them again. */
export function mapHuge(iommu: HostIommuKind, lg2: 21 | 30, size: number): HugeRun {
  const host = new Host({
    kernel: '6.12',
    iommu,
    memory: 2 ** 41,
    params: { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' },
  });
  const proc = host.spawn();
  const c = openContainer(proc);
  const g = openGroup(proc, host.groups[0].id);
  if (typeof c === 'number' || typeof g === 'number') throw new Error('bench: open failed');
  check(g.setContainer(c) === 0 && c.setIommu(VFIO_TYPE1v2_IOMMU) === 0, 'attach');
  const ram = proc.mmap(size, { hugeLg2: lg2 });
  check(ram > 0, 'mmap of hugetlb RAM');
  const touched0 = host.phys.touchedFrames;
  const heap0 = heapBytes();
  const t0 = nowNs();
  const r = c.mapDma({ vaddr: ram, iova: TiB, size });
  const ns = nowNs() - t0;
  check(r === 0, `MAP_DMA of ${size / GiB} GiB in ${lg2 === 30 ? '1 GiB' : '2 MiB'} pages: ${r}`);
  const heap = heapBytes() - heap0;
  const touched = host.phys.touchedFrames - touched0;
  // Frames of the guest's folios: the head frame numbers in the VMA's page map, 2^(lg2 - 12) frames each.
  const vma = proc.mm.findVma(ram)!;
  const heads = new Set(vma.pages.values());
  const framesPerFolio = 2 ** (lg2 - 12);
  let guestTouched = 0;
  for (const pa of host.phys.touchedFrameAddresses()) {
    const pfn = pa / 4096;
    if (heads.has(pfn - (pfn % framesPerFolio))) guestTouched++;
  }
  check(proc.mm.lockedVm === size / 4096, 'locked_vm charged for every page');
  const t1 = nowNs();
  const u = c.unmapDma({ iova: 0, size: 0, flags: 2 });
  const unmapNs = nowNs() - t1;
  check(u.ret === 0 && u.size === BigInt(size), 'UNMAP_ALL');
  check(proc.mm.lockedVm === 0 && proc.mm.pinnedPages === 0, 'everything uncharged and unpinned');
  proc.exit();
  return { ns, heap, guestTouched, touched, unmapNs };
}

export async function benchHuge(ctx: BenchContext): Promise<void> {
  const size = ctx.smoke ? 4 * GiB : TiB;
  for (const iommu of HOSTS) {
    for (const k of CASES) {
      const rounds = ctx.smoke ? 1 : k.lg2 === 30 ? 5 : 3;
      const runs: HugeRun[] = [];
      for (let i = 0; i < rounds; i++) runs.push(mapHuge(iommu, k.lg2, size));
      const ns = median(runs.map((x) => x.ns));
      const heap = Math.max(...runs.map((x) => x.heap));
      const touched = Math.max(...runs.map((x) => x.touched));
      const guestTouched = Math.max(...runs.map((x) => x.guestTouched));
      ctx.log(`  ${iommu}: 1 TiB in ${k.label} pages`);
      record(ctx, {
        id: `map-1tib-${k.label.replace(' ', '').toLowerCase()}.${iommu}`,
        name: `MAP_DMA of ${size / GiB} GiB of fresh guest RAM in ${k.label} pages, ${iommu}`,
        value: ns,
        unit: 'ns',
        target: `${k.target}, heap growth < 64 MiB, no guest frame touched`,
        pass: ns <= k.targetNs && heap < 64 * MiB && guestTouched === 0,
        notes: {
          'heap growth (MiB)': +(heap / MiB).toFixed(1),
          'guest frames touched': guestTouched,
          'page-table frames touched': touched - guestTouched,
          'UNMAP_ALL (ms)': +(median(runs.map((x) => x.unmapNs)) / 1e6).toFixed(2),
        },
      });
    }
  }
}
