/**
 * The AVL range tree behind vfio_dma and virtio-iommu mappings, against a sorted array: random
 * inserts and removes of disjoint ranges keep every query's answer, in-order iteration and the AVL
 * balance (so every operation stays O(log n)).
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Range, RangeTree } from '../../src/iommu/range-tree.ts';

/** Height and balance of the tree, read through its private node arrays. */
function checkAvl(tree: RangeTree<Range>): number {
  const t = tree as unknown as { root: number; lefts: Int32Array; rights: Int32Array; heights: Int8Array };
  const walk = (n: number): number => {
    if (n === -1) return 0;
    const l = walk(t.lefts[n]);
    const r = walk(t.rights[n]);
    expect(Math.abs(l - r)).toBeLessThanOrEqual(1);
    expect(t.heights[n]).toBe(Math.max(l, r) + 1);
    return t.heights[n];
  };
  return walk(t.root);
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
