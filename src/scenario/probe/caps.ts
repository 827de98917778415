/**
 * dump_caps of probe/vfioprobe.c: the GET_INFO capability chain as the probe prints it,
 * including its guards (offsets past argsz, loops, at most 32 caps, at most 64 ranges).
 */

const hex = (v: bigint): string => `0x${v.toString(16)}`;

export function formatCaps(base: Uint8Array, argsz: number, first: number): Record<string, unknown>[] {
  const v = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const out: Record<string, unknown>[] = [];
  let off = first;
  for (let n = 0; off && n < 32; n++) {
    if (off + 8 > argsz) {
      out.push({ bad_offset: off });
      break;
    }
    const id = v.getUint16(off, true);
    const version = v.getUint16(off + 2, true);
    const next = v.getUint32(off + 4, true);
    const c: Record<string, unknown> = { offset: off, id, version, next };
    if (id === 1) {
      const nr = v.getUint32(off + 8, true);
      c.name = 'iova_range';
      c.nr_iovas = nr;
      const ranges = [];
      for (let i = 0; i < nr && i < 64; i++)
        ranges.push({
          start: hex(v.getBigUint64(off + 16 + 16 * i, true)),
          end: hex(v.getBigUint64(off + 24 + 16 * i, true)),
        });
      c.iova_ranges = ranges;
    } else if (id === 2) {
      c.name = 'migration';
      c.flags = v.getUint32(off + 8, true);
      c.pgsize_bitmap = hex(v.getBigUint64(off + 16, true));
      c.max_dirty_bitmap_size = hex(v.getBigUint64(off + 24, true));
    } else if (id === 3) {
      c.name = 'dma_avail';
      c.avail = v.getUint32(off + 8, true);
    }
    out.push(c);
    if (next && next <= off) {
      out.push({ loop: next });
      break;
    }
    off = next;
  }
  return out;
}
