/**
 * What the page-table layer needs from its surroundings: a memory it reads and writes in 32-bit
 * little-endian halves, and the Linux IOMMU_* protection flags its callers speak.
 *
 * The host's `PhysMem` satisfies `PgtableMemory`; a guest that writes its own stage-1 tables in its
 * RAM passes another object. Addresses are plain numbers (< 2^53).
 */

/** A 64-bit descriptor is read as `readU32(a)` (bits 31:0) then `readU32(a + 4)` (bits 63:32). */
export interface PgtableMemory {
  readU32(addr: number): number;
  writeU32(addr: number, value: number): void;
}

/** Memory whose 4 KiB frames can be read as words in place (PhysMem): a descriptor in one lookup. */
export interface FrameMemory extends PgtableMemory {
  /**
   * The words of the 4 KiB frame holding `addr`; undefined when it has none to give (use readU32).
   * The array stays the frame's words until `framesDropped` changes (callers may keep it till then).
   */
  wordsAt(addr: number): Uint32Array | undefined;
  /** Counts the frames whose words were ever dropped (freed, zeroed whole, attached elsewhere). */
  readonly framesDropped: number;
}

/** `mem` as FrameMemory when it gives frames' words (PhysMem), else null: read it with readU32. */
export function frameMemoryOf(mem: PgtableMemory): FrameMemory | null {
  return (mem as Partial<FrameMemory>).wordsAt !== undefined ? (mem as FrameMemory) : null;
}

/** Linux `include/linux/iommu.h` protection flags, same values. */
export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;
export const IOMMU_CACHE = 4;
export const IOMMU_NOEXEC = 8;
export const IOMMU_MMIO = 16;
export const IOMMU_PRIV = 32;

/** Linux errno values returned (negated) by the driver-side operations, as the kernel does. */
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOMEM = 12;
export const ERANGE = 34;

/**
 * Table-page allocation supplied by the caller (the kernel's page allocator, or a guest's).
 * `allocTable` returns the address of `bytes` zeroed bytes aligned to `bytes`, or -1 when out of
 * memory; `freeTable` gives them back.
 */
export interface TableAllocator {
  allocTable(bytes: number): number;
  freeTable(addr: number, bytes: number): void;
}
