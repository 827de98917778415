/**
 * Every benchmark once, in smoke mode: each piece of work runs (at a small size) and its checks hold
 * (translations land where they should, DMA moves the bytes it wrote, MAP/UNMAP succeed and give
 * back every pin and charge, the probe answers match the kernels'). No time is judged here: the
 * machines are noisy, and `npm run bench` compares each figure with a baseline in the same run.
 */

import { describe, expect, it } from 'vitest';
import { runBench, SUITES } from '../bench/run.ts';

describe('bench (smoke)', () => {
  for (const suite of Object.keys(SUITES)) {
    it(`${suite}: runs, checks its results, and reports figures`, async () => {
      const ctx = await runBench([suite], true);
      expect(ctx.figures.length).toBeGreaterThan(0);
      for (const f of ctx.figures) {
        expect(Number.isFinite(f.value), f.id).toBe(true);
        expect(f.pass, f.id).toBe(null);
        if (f.baseline !== undefined) expect(f.ratio, f.id).toBeGreaterThan(0);
      }
    });
  }
});
