/**
 * The container's valid IOVA list (5.4+): the intersection of every domain's aperture minus the
 * groups' reserved regions (DIRECT_RELAXABLE excepted), kept sorted. Inclusive 64-bit bounds;
 * built and read at attach and GET_INFO time only, so bigint is fine here (MAP checks it as numbers:
 * Type1State.iovaRangeValid, vfio_iommu_iova_dma_valid).
 */

import type { ResvRegion } from '../iommu/types.ts';

export interface IovaRange {
  start: bigint;
  end: bigint;
}

/** vfio_iommu_aper_resize: clip the list to [start, end]; an empty list becomes that aperture. */
export function aperResize(list: IovaRange[], start: bigint, end: bigint): IovaRange[] {
  if (list.length === 0) return [{ start, end }];
  return list
    .filter((r) => r.end >= start && r.start <= end)
    .map((r) => ({ start: r.start < start ? start : r.start, end: r.end > end ? end : r.end }));
}

/** vfio_iommu_aper_conflict: the new aperture misses the list, or mappings lie outside it. */
export function aperConflict(
  list: IovaRange[],
  start: bigint,
  end: bigint,
  hasMappingIn: (start: bigint, end: bigint) => boolean,
): boolean {
  if (list.length === 0) return false;
  const first = list[0];
  const last = list[list.length - 1];
  if (start > last.end || end < first.start) return true;
  if (start > first.start && hasMappingIn(first.start, start - 1n)) return true;
  if (end < last.end && hasMappingIn(end + 1n, last.end)) return true;
  return false;
}

/** vfio_iommu_resv_conflict: a reserved region (not DIRECT_RELAXABLE) overlaps a mapping. */
export function resvConflict(
  regions: ResvRegion[],
  hasMappingIn: (start: bigint, end: bigint) => boolean,
): boolean {
  return regions.some((r) => r.type !== 'direct-relaxable' && hasMappingIn(r.start, r.end));
}

/** vfio_iommu_resv_exclude: cut every reserved region out of the list. */
export function resvExclude(list: IovaRange[], regions: ResvRegion[]): IovaRange[] {
  let out = list;
  for (const r of regions) {
    if (r.type === 'direct-relaxable') continue;
    const next: IovaRange[] = [];
    for (const n of out) {
      if (r.start > n.end || r.end < n.start) {
        next.push(n);
        continue;
      }
      if (r.start > n.start) next.push({ start: n.start, end: r.start - 1n });
      if (r.end < n.end) next.push({ start: r.end + 1n, end: n.end });
    }
    out = next;
  }
  return out;
}
