/**
 * Host physical memory: sparse bytes and a frame allocator.
 *
 * A 4 KiB frame's bytes exist only once something writes to it; reading an untouched frame
 * gives zeros and allocates nothing, so a terabyte of RAM that nobody touched costs nothing.
 * Physical addresses are plain numbers (< 2^53). Descriptors are read as two 32-bit halves
 * (`readU32(pa)`, `readU32(pa + 4)`), little-endian, as the hardware reads them.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_SIZE - 1;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error('vfio-nest models a little-endian machine and needs a little-endian host');
}

export interface PhysMemOptions {
  /** First byte of RAM (arm64 `virt` puts RAM at 1 GiB; x86 at 0). */
  base?: number;
  /** RAM size in bytes. Accesses outside [base, base + size) are external aborts. */
  size?: number;
}

/** Frame sizes the allocator hands out, as log2 of bytes: 4 KiB, 2 MiB, 1 GiB. */
export type FrameLg2 = 12 | 21 | 30;

/**
 * Memory that lives outside the model: the pages of a program that talks to the model through
 * `vfio-nest serve` (src/server). A frame attached to it keeps no bytes here: reads and writes of
 * the frame go, synchronously, to that memory at the frame's address there. Only frames that back
 * such a program's pages are attached; every other frame never pays more than one comparison.
 */
export interface ExternalMemory {
  read(addr: number, dst: Uint8Array, dstOff: number, len: number): void;
  write(addr: number, src: Uint8Array, srcOff: number, len: number): void;
}

interface ExternalFrame {
  mem: ExternalMemory;
  /** Address of the frame's first byte in `mem`. */
  addr: number;
  lg2: FrameLg2;
}

/** The frame sizes, smallest first. */
export const FRAME_LG2S: readonly FrameLg2[] = [12, 21, 30];

/** 2^lg2 for frame sizes (a table, not Math.pow, on the allocation, fault and pin paths). */
export const FRAME_BYTES: readonly number[] = Array.from({ length: 31 }, (_, k) => 2 ** k);

/** Entries of the frame cache (a power of two). */
const FRAME_CACHE = 256;
const INV_PAGE = 1 / PAGE_SIZE;

/**
 * The frame cache entry of frame `pfn`: its low bits folded with the next sixteen, so frames 1 MiB or
 * 256 MiB apart (a guest's tables over the host's: bench nested-miss had stage-1 frames 0x801xx over
 * stage-2 frames 0x10xx, a conflict miss and a Map lookup on 8 of 24 reads) take different entries.
 */
function frameSlot(pfn: number): number {
  return (pfn ^ (pfn >>> 8) ^ (pfn >>> 16)) & (FRAME_CACHE - 1);
}

export class PhysMem {
  readonly base: number;
  readonly size: number;
  /** Frame number -> bytes, only for frames that were written. */
  private readonly frames = new Map<number, Uint32Array>();
  /**
   * A direct-mapped cache of frames in front of the map, by frameSlot(frame number): a nested
   * walk reads ~9 table pages in turn and a DMA streams through pages, so a one-entry cache missed
   * on nearly every read and each miss paid a Map lookup. Holds only frames present in `frames`.
   * `cacheBytes` is the byte view of the same frame, made on first byte access (DMA copies).
   */
  private readonly cachePfn = new Float64Array(FRAME_CACHE).fill(-1);
  private readonly cacheWords: (Uint32Array | undefined)[] = new Array<Uint32Array | undefined>(
    FRAME_CACHE,
  ).fill(undefined);
  private readonly cacheBytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(
    FRAME_CACHE,
  ).fill(undefined);
  /**
   * Bump pointers for never-used memory: huge frames grow up from the bottom, 4 KiB frames down from
   * the top, so pages faulted in one after another are not physically contiguous (as with the
   * kernel's page allocator) and 4 KiB-backed DMA maps into 4 KiB IOMMU pages, not by-chance blocks.
   * Free lists per frame size hold freed frames for reuse.
   */
  private next: number;
  private nextSmall: number;
  private readonly free = new Map<FrameLg2, number[]>([
    [12, []],
    [21, []],
    [30, []],
  ]);
  private allocatedBytes = 0;
  private dropped = 0;
  private zero = -1;
  /** Frames attached to external memory, by the frame number of their first 4 KiB page. */
  private readonly external = new Map<number, ExternalFrame>();
  /** Set by externalAt(): the external memory and address of the byte looked up. */
  private extMem: ExternalMemory | undefined;
  private extAddr = 0;
  /** Page-sized views of the last buffer written from (a device's DMA buffer is written again and again). */
  private viewsOf: Uint8Array | null = null;
  private views: (Uint8Array | undefined)[] = [];
  /** One word for external reads and writes (little-endian host: checked above), reused. */
  private readonly scratch = new Uint8Array(4);
  private readonly scratchWord = new Uint32Array(this.scratch.buffer);

  constructor(options: PhysMemOptions = {}) {
    this.base = options.base ?? 0;
    this.size = options.size ?? 64 * 2 ** 30;
    this.next = this.base;
    this.nextSmall = this.base + this.size;
  }

  /** True when [pa, pa + len) is RAM. */
  contains(pa: number, len = 1): boolean {
    return pa >= this.base && len >= 0 && pa + len <= this.base + this.size;
  }

  /** Reads a little-endian 32-bit word at a 4-byte aligned address. */
  readU32(pa: number): number {
    const frame = this.lookup(Math.floor(pa * INV_PAGE));
    if (frame !== undefined) return frame[(pa & PAGE_MASK) >>> 2];
    if (this.external.size === 0 || !this.externalAt(pa)) return 0;
    this.extMem!.read(this.extAddr, this.scratch, 0, 4);
    return this.scratchWord[0];
  }

  /** The words of the frame holding `pa`, or undefined (untouched or external: use readU32). */
  wordsAt(pa: number): Uint32Array | undefined {
    return this.lookup(Math.floor(pa * INV_PAGE));
  }

  /** Writes a little-endian 32-bit word at a 4-byte aligned address. */
  writeU32(pa: number, value: number): void {
    if (this.external.size !== 0 && this.externalAt(pa)) {
      this.scratchWord[0] = value;
      this.extMem!.write(this.extAddr, this.scratch, 0, 4);
      return;
    }
    this.frameFor(pa)[(pa & PAGE_MASK) >>> 2] = value;
  }

  /** Copies `len` bytes at `pa` into `dst[dstOff..]`. */
  readBytes(pa: number, dst: Uint8Array, dstOff: number, len: number): void {
    while (len > 0) {
      const off = pa & PAGE_MASK;
      const inPage = Math.min(len, PAGE_SIZE - off);
      const bytes = this.lookupBytes(Math.floor(pa * INV_PAGE));
      if (bytes === undefined) {
        if (this.external.size !== 0 && this.externalAt(pa))
          this.extMem!.read(this.extAddr, dst, dstOff, inPage);
        else dst.fill(0, dstOff, dstOff + inPage);
      } else if (inPage === PAGE_SIZE) {
        dst.set(bytes, dstOff); // a whole frame: no view to make
      } else {
        dst.set(bytes.subarray(off, off + inPage), dstOff);
      }
      pa += inPage;
      dstOff += inPage;
      len -= inPage;
    }
  }

  /** Copies `len` bytes of `src[srcOff..]` to `pa`. */
  writeBytes(pa: number, src: Uint8Array, srcOff: number, len: number): void {
    while (len > 0) {
      const inPage = Math.min(len, PAGE_SIZE - (pa & PAGE_MASK));
      if (this.external.size !== 0 && this.externalAt(pa)) {
        this.extMem!.write(this.extAddr, src, srcOff, inPage);
      } else {
        const from =
          inPage === PAGE_SIZE ? this.pageView(src, srcOff) : src.subarray(srcOff, srcOff + inPage);
        this.bytesFor(pa).set(from, pa & PAGE_MASK);
      }
      pa += inPage;
      srcOff += inPage;
      len -= inPage;
    }
  }

  /** Sets `len` bytes at `pa` to `byte`; zero-filling an untouched frame allocates nothing. */
  fill(pa: number, len: number, byte: number): void {
    while (len > 0) {
      const inPage = Math.min(len, PAGE_SIZE - (pa & PAGE_MASK));
      const pfn = Math.floor(pa / PAGE_SIZE);
      if (this.external.size !== 0 && this.externalAt(pa)) {
        this.extMem!.write(this.extAddr, new Uint8Array(inPage).fill(byte), 0, inPage);
      } else if (byte === 0 && inPage === PAGE_SIZE) {
        this.dropFrame(pfn);
      } else if (byte !== 0 || this.frames.has(pfn)) {
        const frame = this.frameFor(pa);
        new Uint8Array(frame.buffer, frame.byteOffset + (pa & PAGE_MASK), inPage).fill(byte);
      }
      pa += inPage;
      len -= inPage;
    }
  }

  /**
   * Allocates one naturally aligned frame of 2^lg2 bytes, zeroed. Returns its physical address,
   * or -1 when RAM is exhausted (the caller turns that into ENOMEM).
   */
  allocFrame(lg2: FrameLg2): number {
    const list = this.free.get(lg2)!;
    const size = FRAME_BYTES[lg2];
    let pa = list.pop();
    if (pa === undefined) {
      if (lg2 === 12) {
        if (this.nextSmall - size < this.next) return -1;
        this.nextSmall -= size;
        pa = this.nextSmall;
      } else {
        const aligned = Math.ceil(this.next / size) * size;
        if (aligned + size > this.nextSmall) return -1;
        pa = aligned;
        this.next = aligned + size;
      }
    }
    this.allocatedBytes += size;
    return pa;
  }

  /** Returns a frame from `allocFrame` and forgets its bytes. */
  freeFrame(pa: number, lg2: FrameLg2): void {
    const size = FRAME_BYTES[lg2];
    if (this.external.size !== 0) this.external.delete(pa / PAGE_SIZE);
    this.discard(pa, size);
    this.allocatedBytes -= size;
    this.free.get(lg2)!.push(pa);
  }

  /** The shared zero page: one frame, never written, mapped for reads of untouched memory. */
  get zeroPage(): number {
    if (this.zero < 0) this.zero = this.allocFrame(12);
    return this.zero;
  }

  /** Bytes handed out by the allocator and not freed. */
  get allocated(): number {
    return this.allocatedBytes;
  }

  /** Frames whose words were dropped so far: a `wordsAt` array is good until this changes. */
  get framesDropped(): number {
    return this.dropped;
  }

  /** Frames whose bytes exist (were written with something other than whole-page zeros). */
  get touchedFrames(): number {
    return this.frames.size;
  }

  /** Physical addresses of those frames (tests and benchmarks: where did bytes come into being?). */
  *touchedFrameAddresses(): IterableIterator<number> {
    for (const pfn of this.frames.keys()) yield pfn * PAGE_SIZE;
  }

  /** Forgets the bytes of whole frames in [pa, pa + len): cost follows touched frames, not size. */
  discard(pa: number, len: number): void {
    const first = Math.floor(pa / PAGE_SIZE);
    const count = Math.ceil(len / PAGE_SIZE);
    if (count > this.frames.size) {
      for (const pfn of this.frames.keys()) if (pfn >= first && pfn < first + count) this.dropFrame(pfn);
    } else {
      for (let pfn = first; pfn < first + count; pfn++) this.dropFrame(pfn);
    }
  }

  /**
   * Backs the frame of 2^lg2 bytes at `pa` (from allocFrame) by external memory at `addr`: from now
   * on its bytes are read from and written to `mem`, until the frame is freed or detached.
   */
  attachExternal(pa: number, lg2: FrameLg2, mem: ExternalMemory, addr: number): void {
    this.discard(pa, FRAME_BYTES[lg2]);
    this.external.set(pa / PAGE_SIZE, { mem, addr, lg2 });
  }

  /**
   * Ends the external backing of the frame at `pa`, keeping its bytes: they are copied in first
   * (a pinned page the program unmapped lives on with the device, as the kernel's folio does).
   * A frame that is not external is left alone.
   */
  detachExternal(pa: number): void {
    const x = this.external.get(pa / PAGE_SIZE);
    if (x === undefined) return;
    this.external.delete(pa / PAGE_SIZE);
    const page = new Uint8Array(PAGE_SIZE);
    for (let off = 0; off < FRAME_BYTES[x.lg2]; off += PAGE_SIZE) {
      x.mem.read(x.addr + off, page, 0, PAGE_SIZE);
      if (page.some((b) => b !== 0)) this.writeBytes(pa + off, page, 0, PAGE_SIZE);
    }
  }

  /** Frames attached to external memory. */
  get externalFrames(): number {
    return this.external.size;
  }

  /** Finds the external frame holding `pa` (any size): sets extMem/extAddr and says whether found. */
  private externalAt(pa: number): boolean {
    for (const lg2 of FRAME_LG2S) {
      const head = pa - (pa % FRAME_BYTES[lg2]);
      const x = this.external.get(head / PAGE_SIZE);
      if (x !== undefined && x.lg2 === lg2) {
        this.extMem = x.mem;
        this.extAddr = x.addr + (pa - head);
        return true;
      }
    }
    return false;
  }

  /** The frame's words, through the cache (undefined: never written, or external). */
  private lookup(pfn: number): Uint32Array | undefined {
    const i = frameSlot(pfn);
    if (this.cachePfn[i] === pfn) return this.cacheWords[i];
    const frame = this.frames.get(pfn);
    if (frame !== undefined) {
      this.cachePfn[i] = pfn;
      this.cacheWords[i] = frame;
      this.cacheBytes[i] = undefined;
    }
    return frame;
  }

  /** The frame's bytes (a view kept in the cache entry), or undefined as lookup(). */
  private lookupBytes(pfn: number): Uint8Array | undefined {
    const frame = this.lookup(pfn);
    if (frame === undefined) return undefined;
    const i = frameSlot(pfn);
    let bytes = this.cacheBytes[i];
    if (bytes === undefined) {
      bytes = new Uint8Array(frame.buffer, frame.byteOffset, PAGE_SIZE);
      this.cacheBytes[i] = bytes;
    }
    return bytes;
  }

  /** `src[off .. off + 4 KiB)` as a view kept for the next write from the same place. */
  private pageView(src: Uint8Array, off: number): Uint8Array {
    if (src !== this.viewsOf) {
      this.viewsOf = src;
      this.views = [];
    }
    // Views by offset: 4 KiB-aligned offsets index the list; the rest are made each time.
    if ((off & PAGE_MASK) !== 0) return src.subarray(off, off + PAGE_SIZE);
    const i = off / PAGE_SIZE;
    let v = this.views[i];
    if (v === undefined) {
      v = src.subarray(off, off + PAGE_SIZE);
      this.views[i] = v;
    }
    return v;
  }

  /** The bytes of the frame holding `pa`, made (zeroed) on first write. */
  private bytesFor(pa: number): Uint8Array {
    const pfn = Math.floor(pa * INV_PAGE);
    const bytes = this.lookupBytes(pfn);
    if (bytes !== undefined) return bytes;
    this.frameFor(pa);
    return this.lookupBytes(pfn)!;
  }

  private frameFor(pa: number): Uint32Array {
    const pfn = Math.floor(pa * INV_PAGE);
    let frame = this.lookup(pfn);
    if (frame === undefined) {
      frame = new Uint32Array(PAGE_SIZE / 4);
      this.frames.set(pfn, frame);
      frame = this.lookup(pfn)!;
    }
    return frame;
  }

  private dropFrame(pfn: number): void {
    if (this.frames.delete(pfn)) {
      this.dropped++;
      const i = frameSlot(pfn);
      if (this.cachePfn[i] === pfn) {
        this.cachePfn[i] = -1;
        this.cacheWords[i] = undefined;
        this.cacheBytes[i] = undefined;
      }
    }
  }
}
