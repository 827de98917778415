/**
 * The TLB's hash table against a plain Map model (inserts, lookups, invalidations in any order), its
 * tagging, and the two replacement policies.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TLB_S1, TLB_S2, TLB_S12, Tlb, WORLD_NS_EL1 } from '../../src/smmu/index.ts';

describe('Tlb', () => {
  it('behaves like a map keyed by (context, size, page) under random inserts, lookups and removals', () => {
    const op = fc.record({
      kind: fc.constantFrom('insert', 'remove', 'lookup'),
      ctx: fc.integer({ min: 0, max: 3 }),
      size: fc.constantFrom(12, 21, 30),
      // Pages spread over 48-bit addresses so keys exceed 2^31 and collide in the hash.
      page: fc.integer({ min: 0, max: 40 }),
      hi: fc.constantFrom(0, 1, 0xff),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), fc.constantFrom(32, 4096), (ops, capacity) => {
        // A 32-entry TLB has a 64-slot table: long probe chains and many backward shifts.
        const tlb = new Tlb(capacity);
        const ctxs = [0, 1, 2, 3].map((i) => tlb.context(WORLD_NS_EL1, TLB_S12, i, 1));
        const model = new Map<string, number>();
        let n = 0;
        for (const o of ops) {
          const va = o.hi * 2 ** 40 + o.page * 2 ** o.size;
          const key = `${o.ctx}/${o.size}/${va}`;
          if (o.kind === 'insert' && (model.size < capacity || model.has(key))) {
            tlb.insert(ctxs[o.ctx], va, va, va + 0x1000, o.size, 3, 12, ++n);
            model.set(key, n);
          } else if (o.kind === 'remove') {
            tlb.invalidate((e) => e.ctx === ctxs[o.ctx] && e.sizeLg2 === o.size && e.vaBase === va);
            model.delete(key);
          }
          // Every key of the model answers, and only those.
          for (const [k, perms] of model) {
            const [c, s, v] = k.split('/').map(Number);
            const e = tlb.lookup(ctxs[c], v + 2 ** s - 1);
            if (e === undefined || e.perms !== perms) return false;
          }
          if (tlb.size !== model.size) return false;
        }
        return true;
      }),
      { numRuns: 200 },
    );
  });

  it('probes every entry size a context holds, and keeps contexts apart', () => {
    const tlb = new Tlb(16);
    const a = tlb.context(WORLD_NS_EL1, TLB_S1, 1, 5);
    const b = tlb.context(WORLD_NS_EL1, TLB_S2, 1, -1);
    tlb.insert(a, 0x4000_0000, 0, 0x8000_0000, 30, 1, 12, 1);
    tlb.insert(a, 0x1000, 0, 0x2000, 12, 3, 12, 2);
    expect(tlb.lookup(a, 0x4123_4567)?.paBase).toBe(0x8000_0000);
    expect(tlb.lookup(a, 0x1fff)?.paBase).toBe(0x2000);
    expect(a.sizes).toEqual([12, 30]);
    expect(tlb.lookup(b, 0x1fff)).toBeUndefined();
    expect(tlb.context(WORLD_NS_EL1, TLB_S1, 1, 5)).toBe(a);
  });

  it("'flush-all' empties the TLB when an insert finds it full (QEMU-like, reference §6.3)", () => {
    const tlb = new Tlb(4, 'flush-all');
    const c = tlb.context(WORLD_NS_EL1, TLB_S1, 0, 0);
    for (let i = 0; i < 5; i++) tlb.insert(c, i * 0x1000, 0, i * 0x1000, 12, 3, 12, 1);
    expect(tlb.size).toBe(1);
    expect(tlb.lookup(c, 0x4000)).toBeDefined();
    expect(tlb.lookup(c, 0x0)).toBeUndefined();
    expect(tlb.evictions).toBe(1);
  });

  it("'fifo' drops the oldest entry", () => {
    const tlb = new Tlb(4, 'fifo');
    const c = tlb.context(WORLD_NS_EL1, TLB_S1, 0, 0);
    for (let i = 0; i < 6; i++) tlb.insert(c, i * 0x1000, 0, i * 0x1000, 12, 3, 12, 1);
    expect(tlb.size).toBe(4);
    expect([0, 1, 2, 3, 4, 5].map((i) => tlb.lookup(c, i * 0x1000) !== undefined)).toEqual([
      false,
      false,
      true,
      true,
      true,
      true,
    ]);
  });
});
