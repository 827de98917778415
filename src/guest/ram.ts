/**
 * Guest RAM as the guest sees it: guest-physical addresses (IPAs) backed by the VMM's memory. The
 * guest reads and writes its own page tables, CDs and stream table through it, in the same 32-bit
 * little-endian halves the hardware uses.
 */

import type { Process } from '../host/process.ts';
import { type PgtableMemory, TableHeap } from '../pgtable/index.ts';

export class GuestRam implements PgtableMemory {
  private readonly word = new Uint8Array(4);
  private readonly view = new DataView(this.word.buffer);

  constructor(
    /** The VMM process whose memory is the guest's RAM. */
    readonly vmm: Process,
    /** Guest-physical address of the first byte. */
    readonly ipaBase: number,
    /** VMM virtual address of the first byte. */
    readonly vaddr: number,
    readonly size: number,
  ) {}

  contains(ipa: number, len = 1): boolean {
    return ipa >= this.ipaBase && ipa + len <= this.ipaBase + this.size;
  }

  private va(ipa: number, len: number): number {
    if (!this.contains(ipa, len)) throw new RangeError(`guest RAM has no IPA 0x${ipa.toString(16)}`);
    return this.vaddr + (ipa - this.ipaBase);
  }

  readU32(ipa: number): number {
    this.vmm.mm.readUser(this.va(ipa, 4), this.word, 0, 4);
    return this.view.getUint32(0, true);
  }

  writeU32(ipa: number, value: number): void {
    this.view.setUint32(0, value >>> 0, true);
    this.vmm.mm.writeUser(this.va(ipa, 4), this.word, 0, 4);
  }

  read(ipa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.vmm.mm.readUser(this.va(ipa, len), out, 0, len);
    return out;
  }

  write(ipa: number, bytes: Uint8Array): void {
    this.vmm.mm.writeUser(this.va(ipa, bytes.length), bytes, 0, bytes.length);
  }

  fill(ipa: number, len: number, byte: number): void {
    this.vmm.mm.fillUser(this.va(ipa, len), len, byte);
  }
}

/**
 * Naturally aligned, zeroed blocks of guest RAM (what a guest's page allocator gives its IOMMU driver):
 * pgtable's TableHeap, except that freed blocks are never handed out again.
 */
export class GuestAllocator extends TableHeap {
  constructor(ram: GuestRam, base: number, end: number) {
    super(ram, base, end - base, (addr, bytes) => ram.fill(addr, bytes, 0));
  }

  override freeTable(_addr: number, _bytes: number): void {}
}
