/**
 * A small table-page allocator over a caller-owned range of memory: what a guest OS uses to build
 * stage-1 tables in its own RAM, and what tests use for any table size (4KB-64KB tables, concatenated
 * stage-2 start tables). Blocks are naturally aligned and zeroed on allocation.
 */
import { POW2 } from './geometry.ts';
import type { PgtableMemory, TableAllocator } from './types.ts';

export class TableHeap implements TableAllocator {
  private readonly mem: PgtableMemory;
  private readonly zero: ((addr: number, bytes: number) => void) | undefined;
  private next: number;
  private readonly end: number;
  private readonly freeLists = new Map<number, number[]>();
  private usedBytes = 0;

  /**
   * `zero(addr, bytes)` clears a block (default: 32-bit zero stores through `mem`; pass
   * `PhysMem.fill` for a cheaper clear).
   */
  constructor(mem: PgtableMemory, base: number, size: number, zero?: (addr: number, bytes: number) => void) {
    this.mem = mem;
    this.zero = zero;
    this.next = base;
    this.end = base + size;
  }

  allocTable(bytes: number): number {
    const size = POW2[Math.ceil(Math.log2(Math.max(bytes, 8)))];
    let addr = this.freeLists.get(size)?.pop();
    if (addr === undefined) {
      const aligned = Math.ceil(this.next / size) * size;
      if (aligned + size > this.end) return -1;
      addr = aligned;
      this.next = aligned + size;
    }
    if (this.zero !== undefined) this.zero(addr, size);
    else for (let a = addr; a < addr + size; a += 4) this.mem.writeU32(a, 0);
    this.usedBytes += size;
    return addr;
  }

  freeTable(addr: number, bytes: number): void {
    const size = POW2[Math.ceil(Math.log2(Math.max(bytes, 8)))];
    let list = this.freeLists.get(size);
    if (list === undefined) {
      list = [];
      this.freeLists.set(size, list);
    }
    list.push(addr);
    this.usedBytes -= size;
  }

  /** Bytes currently allocated. */
  get used(): number {
    return this.usedBytes;
  }
}
