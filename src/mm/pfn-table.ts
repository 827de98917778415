/**
 * A sparse table indexed by frame number (of one frame size), in two levels: sections of 512 frames
 * found by a Map, then an array. Neighbouring frames share a section, so walking a run of frames
 * touches one Map entry per 512 frames instead of a hash bucket per frame (as Linux's SPARSEMEM
 * sections and vmemmap make pfn_to_page a lookup, not a search).
 */

const SECTION_SHIFT = 9;
const SECTION_MASK = (1 << SECTION_SHIFT) - 1;

export class PfnTable<T> {
  private readonly sections = new Map<number, (T | undefined)[]>();
  // The last section looked up: runs of frames stay in it.
  private lastIndex = -1;
  private last: (T | undefined)[] | undefined;

  get(pfn: number): T | undefined {
    return this.section(Math.floor(pfn / (SECTION_MASK + 1)))?.[pfn & SECTION_MASK];
  }

  set(pfn: number, value: T): void {
    const index = Math.floor(pfn / (SECTION_MASK + 1));
    let s = this.section(index);
    if (s === undefined) {
      s = new Array<T | undefined>(SECTION_MASK + 1).fill(undefined);
      this.sections.set(index, s);
      this.lastIndex = index;
      this.last = s;
    }
    s[pfn & SECTION_MASK] = value;
  }

  delete(pfn: number): void {
    const s = this.section(Math.floor(pfn / (SECTION_MASK + 1)));
    if (s !== undefined) s[pfn & SECTION_MASK] = undefined;
  }

  *values(): IterableIterator<T> {
    for (const s of this.sections.values()) for (const v of s) if (v !== undefined) yield v;
  }

  private section(index: number): (T | undefined)[] | undefined {
    if (index === this.lastIndex) return this.last;
    const s = this.sections.get(index);
    if (s !== undefined) {
      this.lastIndex = index;
      this.last = s;
    }
    return s;
  }
}
