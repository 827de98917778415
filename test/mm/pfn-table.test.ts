import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PfnTable } from '../../src/mm/pfn-table.ts';

describe('PfnTable: a sparse frame-number table', () => {
  it('answers as a Map would for any sequence of set/delete/get', () => {
    // Frame numbers in a few sections (512 frames each) and far apart, to cross section edges.
    const pfn = fc.oneof(fc.integer({ min: 0, max: 2048 }), fc.integer({ min: 0, max: 2 ** 40 }));
    const op = fc.tuple(fc.constantFrom('set', 'delete', 'get'), pfn, fc.integer());
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const t = new PfnTable<number>();
        const m = new Map<number, number>();
        for (const [kind, k, v] of ops) {
          if (kind === 'set') {
            t.set(k, v);
            m.set(k, v);
          } else if (kind === 'delete') {
            t.delete(k);
            m.delete(k);
          }
          expect(t.get(k)).toBe(m.get(k));
        }
        expect([...t.values()].sort()).toEqual([...m.values()].sort());
      }),
    );
  });

  it('keeps neighbours apart across a section edge (511 | 512)', () => {
    const t = new PfnTable<string>();
    t.set(511, 'a');
    t.set(512, 'b');
    expect([t.get(511), t.get(512), t.get(513)]).toEqual(['a', 'b', undefined]);
    t.delete(511);
    expect([t.get(511), t.get(512)]).toEqual([undefined, 'b']);
  });
});
