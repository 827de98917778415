/**
 * A PCI device's DMA as QEMU's memory core performs it (pci_dma_read / pci_dma_write through the
 * device's bus-master address space): each translated page is copied whole; where the IOMMU
 * refuses, the access falls to unassigned memory in pieces of at most 4 bytes (the largest access
 * unassigned memory takes, smaller when unaligned), each translated again — so the IOMMU sees (and
 * an SMMU records) one fault per piece — and failed reads return zeros. With bus mastering off the
 * device reaches nothing at all: no translation, reads give zeros.
 * (kernel-answers README and i1-dma-v2: a 4-byte faulting write gives one event; 6.18-iommufd
 * a-nested-happy: a 0x800-byte faulting write gives 512.)
 */

import type { Device } from '../iommu/group.ts';

export interface DmaResult {
  /** Bytes that reached memory. */
  done: number;
  /** Accesses the IOMMU refused. */
  faults: number;
}

/** Largest access unassigned memory takes at `addr` (memory_access_size with a 4-byte maximum). */
function pieceSize(addr: number, left: number): number {
  let l = Math.min(left, addr % 4 === 0 ? 4 : addr & -addr & 3);
  while (l & (l - 1)) l &= l - 1; // round down to a power of two
  return l;
}

export function pciDma(
  dev: Device,
  busMaster: boolean,
  iova: number,
  buf: Uint8Array,
  off: number,
  len: number,
  write: boolean,
): DmaResult {
  const res: DmaResult = { done: 0, faults: 0 };
  if (!busMaster) {
    if (!write) buf.fill(0, off, off + len);
    return res;
  }
  let pos = 0;
  while (pos < len) {
    const addr = iova + pos;
    const pa = dev.hw.translate(dev, addr, write, len - pos);
    if (pa >= 0) {
      const n = Math.min(len - pos, dev.hw.lastPageRemaining);
      if (write) dev.hw.mem.writeBytes(pa, buf, off + pos, n);
      else dev.hw.mem.readBytes(pa, buf, off + pos, n);
      pos += n;
      res.done += n;
      continue;
    }
    const n = pieceSize(addr, len - pos);
    if (!write) buf.fill(0, off + pos, off + pos + n);
    res.faults++;
    pos += n;
  }
  return res;
}
