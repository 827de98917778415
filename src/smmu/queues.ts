/**
 * The circular queues in memory (IHI 0070 §3.5): a base register (ADDR, LOG2SIZE), and PROD/CONS
 * indexes whose bit LOG2SIZE is the wrap flag. Empty: indexes and wraps equal; full: indexes equal,
 * wraps differ. The command queue is consumed by the SMMU, the event queue produced by it.
 */
import type { PhysMem } from '../mm/physmem.ts';
import { CERROR_ABT, EVENTQ_OVFLG } from './registers.ts';

/** A queue base register: ADDR [55:5], LOG2SIZE [4:0], RA/WA bit 62 (two 32-bit halves). */
export class QueueBase {
  /** IDR1.CMDQS / EVENTQS: LOG2SIZE is capped at it for every use but readback. */
  readonly maxLog2: number;
  readonly entryBytes: number;
  private loWord = 0;
  private hiWord = 0;
  // Decoded once per register write, not per queue access.
  private log2 = 0;
  private base = 0;

  constructor(maxLog2: number, entryBytes: number) {
    this.maxLog2 = maxLog2;
    this.entryBytes = entryBytes;
  }

  get lo(): number {
    return this.loWord;
  }

  get hi(): number {
    return this.hiWord;
  }

  write(off: number, v: number): void {
    if (off === 0) this.loWord = v >>> 0;
    else this.hiWord = (v & 0x40ffffff) >>> 0;
    this.log2 = Math.min(this.loWord & 0x1f, this.maxLog2);
    const raw = (this.hiWord & 0xffffff) * 4294967296 + ((this.loWord & 0xffffffe0) >>> 0);
    const bytes = Math.max(this.entryBytes * 2 ** this.log2, 32);
    this.base = Math.floor(raw / bytes) * bytes;
  }

  get log2size(): number {
    return this.log2;
  }

  /** Base address, aligned to the larger of the queue size and 32 bytes. */
  get addr(): number {
    return this.base;
  }
}

export function queueIndex(ptr: number, log2: number): number {
  return ptr & ((1 << log2) - 1);
}

/** Index and wrap bit (bits [log2:0]). */
export function queuePos(ptr: number, log2: number): number {
  return ptr & ((2 << log2) - 1);
}

export function queueEmpty(prod: number, cons: number, log2: number): boolean {
  return queuePos(prod, log2) === queuePos(cons, log2);
}

export function queueFull(prod: number, cons: number, log2: number): boolean {
  return queueIndex(prod, log2) === queueIndex(cons, log2) && queuePos(prod, log2) !== queuePos(cons, log2);
}

/** The next position: index + 1, toggling the wrap bit when the index wraps. */
export function queueNext(ptr: number, log2: number): number {
  return (queuePos(ptr, log2) + 1) & ((2 << log2) - 1);
}

export const EVENTQ_WRITTEN = 0;
export const EVENTQ_DISCARDED_FULL = 1;
export const EVENTQ_ABORTED = 2;

/** The event queue: SMMU-produced 32-byte records. */
export class EventQueue {
  readonly base: QueueBase;
  /** EVENTQ_PROD: WR [19:0] with wrap, OVFLG bit 31. */
  prod = 0;
  /** EVENTQ_CONS: RD [19:0] with wrap, OVACKFLG bit 31. */
  cons = 0;
  /** Records written since reset (for tests and display). */
  written = 0;
  discarded = 0;

  constructor(maxLog2: number) {
    this.base = new QueueBase(maxLog2, 32);
  }

  /**
   * Writes one record (8 words) if the queue has room. When full the record is discarded and the
   * overflow condition entered: OVFLG toggles unless an overflow is already unacknowledged
   * (IHI 0070 §7.4). A record that cannot be written to memory aborts (the caller raises
   * GERROR.EVENTQ_ABT_ERR) and PROD does not move (a synchronous abort, §7.2.2).
   */
  push(mem: PhysMem, words: Uint32Array): number {
    const log2 = this.base.log2size;
    if (queueFull(this.prod, this.cons, log2)) {
      this.discarded++;
      if ((this.prod & EVENTQ_OVFLG) === (this.cons & EVENTQ_OVFLG))
        this.prod = (this.prod ^ EVENTQ_OVFLG) >>> 0;
      return EVENTQ_DISCARDED_FULL;
    }
    const addr = this.base.addr + queueIndex(this.prod, log2) * 32;
    if (!mem.contains(addr, 32)) return EVENTQ_ABORTED;
    for (let i = 0; i < 8; i++) mem.writeU32(addr + i * 4, words[i]);
    this.prod = ((this.prod & EVENTQ_OVFLG) | queueNext(this.prod, log2)) >>> 0;
    this.written++;
    return EVENTQ_WRITTEN;
  }
}

/** The command queue: software-produced 16-byte commands. */
export class CommandQueue {
  readonly base: QueueBase;
  /** CMDQ_PROD: WR [19:0] with wrap. */
  prod = 0;
  /** CMDQ_CONS: RD [19:0] with wrap, ERR [30:24]. */
  cons = 0;

  constructor(maxLog2: number) {
    this.base = new QueueBase(maxLog2, 16);
  }

  get empty(): boolean {
    return queueEmpty(this.prod, this.cons, this.base.log2size);
  }

  /** Reads the command at CONS into `out` (4 words); CERROR_ABT when the memory is not there, else 0. */
  fetch(mem: PhysMem, out: Uint32Array): number {
    const log2 = this.base.log2size;
    const addr = this.base.addr + queueIndex(this.cons, log2) * 16;
    if (!mem.contains(addr, 16)) return CERROR_ABT;
    // A command is 16-byte aligned, inside one frame: one frame lookup, not four (bench unmap-all).
    const w = mem.wordsAt(addr);
    if (w === undefined) {
      for (let i = 0; i < 4; i++) out[i] = mem.readU32(addr + i * 4);
      return 0;
    }
    const i = (addr & 0xfff) >>> 2;
    out[0] = w[i];
    out[1] = w[i + 1];
    out[2] = w[i + 2];
    out[3] = w[i + 3];
    return 0;
  }

  /** Moves CONS past the current command, keeping ERR. */
  consume(): void {
    const log2 = this.base.log2size;
    this.cons = ((this.cons & 0x7f000000) | queueNext(this.cons, log2)) >>> 0;
  }

  setError(code: number): void {
    this.cons = ((this.cons & ~0x7f000000) | ((code & 0x7f) << 24)) >>> 0;
  }
}

/** Memory a queue lives in: the host's physical memory, or guest RAM for a virtual SMMU's queues. */
export interface QueueMemory {
  readU32(addr: number): number;
  contains(addr: number, len: number): boolean;
}

/** One slot of a queue as read back for display. */
export interface QueueSlot {
  /** Position: index with the wrap bit (bit LOG2SIZE), as PROD and CONS count. */
  pos: number;
  words: Uint32Array;
}

/**
 * Read-only, for display: the (up to) `count` slots before position `end` (a PROD or CONS value),
 * oldest first, as they are in memory now. A ring keeps what was consumed until it is overwritten,
 * so the slots before CONS are the last commands or records handled. Slots outside memory are left
 * out. Costs nothing unless called.
 */
export function queueSlots(mem: QueueMemory, base: QueueBase, end: number, count: number): QueueSlot[] {
  const log2 = base.log2size;
  const n = Math.min(count, 1 << log2);
  const words = base.entryBytes / 4;
  const wrap = (2 << log2) - 1;
  const out: QueueSlot[] = [];
  for (let i = n; i > 0; i--) {
    const pos = (queuePos(end, log2) - i + (2 << log2)) & wrap;
    const addr = base.addr + queueIndex(pos, log2) * base.entryBytes;
    if (!mem.contains(addr, base.entryBytes)) continue;
    const w = new Uint32Array(words);
    for (let k = 0; k < words; k++) w[k] = mem.readU32(addr + k * 4);
    out.push({ pos, words: w });
  }
  return out;
}
