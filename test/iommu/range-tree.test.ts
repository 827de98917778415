/**
 * The AVL range tree behind vfio_dma and virtio-iommu mappings, against a sorted array: random
 * inserts and removes of disjoint ranges keep every query's answer, in-order iteration and the AVL
 * balance (so every operation stays O(log n)).
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Range, RangeTree } from '../../src/iommu/range-tree.ts';

/**
 * Height and balance of the tree, its parent links and its highest node, read through its private
 * node arrays.
 */
function checkAvl(tree: RangeTree<Range>): number {
  const t = tree as unknown as {
    root: number;
    last: number;
    finger: number;
    lefts: Int32Array;
    rights: Int32Array;
    parents: Int32Array;
    heights: Int8Array;
    values: (Range | undefined)[];
  };
  const walk = (n: number, parent: number): number => {
    if (n === -1) return 0;
    expect(t.parents[n]).toBe(parent);
    const l = walk(t.lefts[n], n);
    const r = walk(t.rights[n], n);
    expect(Math.abs(l - r)).toBeLessThanOrEqual(1);
    expect(t.heights[n]).toBe(Math.max(l, r) + 1);
    return t.heights[n];
  };
  const height = walk(t.root, -1);
  let max = t.root;
  while (max !== -1 && t.rights[max] !== -1) max = t.rights[max];
  expect(t.last).toBe(max);
  // The finger is no node or a live one.
  if (t.finger !== -1) expect(t.values[t.finger]).toBeDefined();
  return height;
}

describe('RangeTree', () => {
  it('matches a sorted list under random inserts and removes, and stays balanced', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 200 })), { minLength: 1, maxLength: 400 }),
        (ops) => {
          const tree = new RangeTree<Range>();
          const ref = new Map<number, Range>();
          for (const [add, slot] of ops) {
            const iova = slot * 0x1000;
            if (add && !ref.has(iova)) {
              const r = { iova, size: 0x1000 };
              expect(tree.findOverlap(iova, iova + 0x1000)).toBeUndefined();
              tree.insert(r);
              ref.set(iova, r);
            } else if (!add && ref.has(iova)) {
              tree.remove(ref.get(iova)!);
              ref.delete(iova);
            }
            checkAvl(tree);
          }
          const sorted = [...ref.values()].sort((a, b) => a.iova - b.iova);
          expect([...tree].map((r) => r.iova)).toEqual(sorted.map((r) => r.iova));
          expect(tree.size).toBe(sorted.length);
          expect(tree.first()).toBe(sorted[0]);
          for (let i = 0; i < sorted.length; i++) {
            expect(tree.next(sorted[i])).toBe(sorted[i + 1]);
            expect(tree.findContaining(sorted[i].iova + 0x800)).toBe(sorted[i]);
          }
          for (let slot = 0; slot <= 201; slot++) {
            const a = slot * 0x1000 + 0x10;
            const want = sorted.find((r) => r.iova + r.size > a);
            expect(tree.firstOverlapping(a, 2 ** 64)).toBe(want);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('insertIfFree refuses exactly the ranges that overlap one already there', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 6 })), {
          maxLength: 120,
        }),
        (ops) => {
          const tree = new RangeTree<Range>();
          const held: Range[] = [];
          for (const [slot, pages] of ops) {
            const r = { iova: slot * 0x1000, size: pages * 0x1000 };
            const clash = held.some((h) => h.iova < r.iova + r.size && r.iova < h.iova + h.size);
            expect(tree.insertIfFree(r)).toBe(!clash);
            if (!clash) held.push(r);
            checkAvl(tree);
          }
          expect(tree.size).toBe(held.length);
          // insert() reports an overlap (and links the range anyway).
          if (held.length > 0) {
            const h = held[0];
            expect(tree.insert({ iova: h.iova, size: 0x1000 })).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('searches of a disjoint tree (by keys alone) find what a scan of the ranges finds', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 1, max: 5 })), {
          maxLength: 60,
        }),
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 90 * 0x1000 }), fc.integer({ min: 1, max: 8 * 0x1000 })),
          {
            minLength: 1,
            maxLength: 40,
          },
        ),
        (ranges, queries) => {
          const tree = new RangeTree<Range>();
          for (const [slot, pages] of ranges)
            tree.insertIfFree({ iova: slot * 0x1000, size: pages * 0x1000 });
          expect(tree.overlapped).toBe(false);
          const held = [...tree];
          for (const [halfPages, lenHalves] of queries) {
            // Half-page steps: starts, ends and middles of ranges all come up.
            const a = halfPages * 0x800;
            const len = lenHalves * 0x800;
            expect(tree.findContaining(a)).toBe(held.find((r) => r.iova <= a && a < r.iova + r.size));
            const first = held.find((r) => r.iova + r.size > a);
            expect(tree.firstOverlapping(a, a + len)).toBe(
              first !== undefined && first.iova < a + len ? first : undefined,
            );
            // findOverlap may return any overlapping range (vfio_find_dma does), but one exactly when
            // a scan finds one.
            const any = tree.findOverlap(a, a + len);
            const overlapping = held.filter((r) => r.iova < a + len && a < r.iova + r.size);
            if (overlapping.length === 0) expect(any).toBeUndefined();
            else expect(overlapping).toContain(any);
          }
          // One overlapping insert and the tree answers by its general searches from then on.
          if (held.length > 0) {
            tree.insert({ iova: held[0].iova, size: held[0].size });
            expect(tree.overlapped).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('runs of neighbouring operations (the finger, the highest node) answer as a scan does', () => {
    // A VMM maps and unmaps in iova order; a device's DMA walks a buffer: runs up and down from a
    // random start, with queries next to where the last operation was.
    const op = fc.tuple(
      fc.constantFrom('insert', 'remove', 'contains', 'first', 'overlap', 'next'),
      fc.integer({ min: 0, max: 120 }),
      fc.integer({ min: 1, max: 12 }),
      fc.boolean(),
      // Query offset and length, in half pages: starts, ends and middles of ranges all come up.
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: 1, max: 6 }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const tree = new RangeTree<Range>();
        const held = new Map<number, Range>();
        const sorted = (): Range[] => [...held.values()].sort((a, b) => a.iova - b.iova);
        for (const [kind, from, count, up, offset, halves] of ops) {
          for (let k = 0; k < count; k++) {
            const slot = up ? from + k : from - k;
            if (slot < 0) break;
            const iova = slot * 0x2000;
            if (kind === 'insert' && !held.has(iova)) {
              const r = { iova, size: 0x1000 + (slot % 2) * 0x1000 };
              expect(tree.insertIfFree(r)).toBe(true);
              held.set(iova, r);
            } else if (kind === 'remove' && held.has(iova)) {
              tree.remove(held.get(iova)!);
              held.delete(iova);
            } else {
              const list = sorted();
              const a = iova + offset * 0x800;
              const end = a + halves * 0x800;
              if (kind === 'contains')
                expect(tree.findContaining(a)).toBe(list.find((r) => r.iova <= a && a < r.iova + r.size));
              if (kind === 'first') {
                const first = list.find((r) => r.iova + r.size > a);
                expect(tree.firstOverlapping(a, end)).toBe(
                  first !== undefined && first.iova < end ? first : undefined,
                );
              }
              if (kind === 'overlap') {
                const any = tree.findOverlap(a, end);
                const overlapping = list.filter((r) => r.iova < end && a < r.iova + r.size);
                if (overlapping.length === 0) expect(any).toBeUndefined();
                else expect(overlapping).toContain(any);
              }
              const at = held.get(iova);
              if (kind === 'next' && at !== undefined) expect(tree.next(at)).toBe(list[list.indexOf(at) + 1]);
            }
          }
          checkAvl(tree);
        }
        expect([...tree]).toEqual(sorted());
        expect(tree.size).toBe(held.size);
        let drained = 0;
        tree.drain(() => drained++);
        expect(drained).toBe(held.size);
        expect(tree.size).toBe(0);
        expect(tree.first()).toBeUndefined();
        checkAvl(tree);
      }),
      { numRuns: 300 },
    );
  });

  it('a search next to the finger still sees the range after it', () => {
    const tree = new RangeTree<Range>();
    const a = { iova: 0, size: 0x1000 };
    const b = { iova: 0x2000, size: 0x1000 };
    const c = { iova: 0x8000, size: 0x1000 };
    for (const r of [a, b, c]) tree.insert(r);
    expect(tree.findContaining(0x800)).toBe(a); // the finger is now a
    expect(tree.findOverlap(0x1800, 0x2800)).toBe(b);
    expect(tree.findContaining(0x800)).toBe(a);
    expect(tree.firstOverlapping(0x1000, 0x3000)).toBe(b);
    expect(tree.findContaining(0x800)).toBe(a);
    expect(tree.insertIfFree({ iova: 0x1000, size: 0x1800 })).toBe(false);
    expect(tree.findOverlap(0x3000, 0x8000)).toBeUndefined(); // the finger is now b; c starts at the end
    expect(tree.findOverlap(0x3000, 0x8001)).toBe(c);
  });

  it('ranges starting at one iova (a driver tree that overlapped) keep insertion order and go by identity', () => {
    // Equal sizes: the end order follows the start order, as the tree requires of overlapping ranges.
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 12 }), fc.nat()), {
          minLength: 1,
          maxLength: 80,
        }),
        (ops) => {
          const tree = new RangeTree<Range>();
          const ref: Range[] = [];
          for (const [add, slot, pick] of ops) {
            if (add || ref.length === 0) {
              const r = { iova: slot * 0x1000, size: 0x3000 };
              // After every range starting at or below it.
              let at = ref.findIndex((x) => x.iova > r.iova);
              if (at === -1) at = ref.length;
              const below = ref[at - 1];
              const above = ref[at];
              const overlaps =
                (below !== undefined && below.iova + below.size > r.iova) ||
                (above !== undefined && above.iova < r.iova + r.size);
              expect(tree.insert(r)).toBe(overlaps);
              ref.splice(at, 0, r);
            } else {
              const victim = ref[pick % ref.length];
              expect(tree.next(victim)).toBe(ref[ref.indexOf(victim) + 1]);
              tree.remove(victim);
              ref.splice(ref.indexOf(victim), 1);
            }
            checkAvl(tree);
            expect([...tree]).toEqual(ref);
          }
          for (let a = 0; a < 16 * 0x1000; a += 0x800) {
            const want = ref.find((r) => r.iova + r.size > a);
            expect(tree.firstOverlapping(a, 2 ** 64)).toBe(want);
            const containing = tree.findContaining(a);
            if (containing === undefined)
              expect(ref.some((r) => r.iova <= a && a < r.iova + r.size)).toBe(false);
            else expect(containing.iova <= a && a < containing.iova + containing.size).toBe(true);
          }
          const gone = { iova: 0, size: 0x1000 };
          expect(() => tree.remove(gone)).toThrow();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('64 Ki ranges inserted in order and removed stay logarithmic', () => {
    const tree = new RangeTree<Range>();
    const rs = Array.from({ length: 65536 }, (_, i) => ({ iova: i * 0x1000, size: 0x1000 }));
    for (const r of rs) tree.insert(r);
    expect(checkAvl(tree)).toBeLessThanOrEqual(24);
    for (let i = 0; i < rs.length; i += 2) tree.remove(rs[i]);
    expect(tree.size).toBe(32768);
    expect(checkAvl(tree)).toBeLessThanOrEqual(23);
    expect(() => tree.remove(rs[0])).toThrow();
  });
});
