/**
 * The reliability properties on a short budget (issue 9); `npm run fuzz -- --runs N` runs them long.
 * A failure prints its seed and path and the command that replays it (FUZZ_SEED, FUZZ_PATH and the
 * test's name). FUZZ_RUNS scales the budget.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KERNEL_VERSIONS } from '../../src/uapi/profile.ts';
import { show } from './ops.ts';
import { type FuzzKind, type FuzzStats, newStats, propertyFor, replayParams } from './properties.ts';

const SCALE = Number(process.env.FUZZ_RUNS ?? 1);

function check(kind: FuzzKind, runs: number, stats: FuzzStats, kernels?: typeof KERNEL_VERSIONS): void {
  const name = expect.getState().currentTestName?.split(' > ').pop() ?? '';
  const replay = replayParams();
  const r = fc.check(propertyFor(kind, stats, kernels), { numRuns: Math.ceil(runs * SCALE), ...replay });
  if (r.failed) {
    const why = r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance);
    throw new Error(
      `${kind} fuzzing failed after ${r.numRuns} runs (shrunk ${r.numShrinks} times)\n${why}\n` +
        `replay: FUZZ_SEED=${r.seed} FUZZ_PATH=${r.counterexamplePath} npx vitest run test/fuzz/fuzz.test.ts -t '${name}'\n` +
        `counterexample: ${show(r.counterexample)}`,
    );
  }
}

describe('model-based: every step checked against the shadow model, the digest and the invariants', () => {
  for (const kernel of KERNEL_VERSIONS) {
    it(`kernel ${kernel}, every host IOMMU`, () => {
      const stats = newStats();
      check('model', 100, stats, [kernel]);
      // The runs must reach the interesting states, not just fail early.
      for (const k of ['setContainer', 'setIommu', 'map', 'unmap', 'info', 'close', 'exit'])
        expect(stats.succeeded[k] ?? 0, `successful ${k} calls`).toBeGreaterThan(0);
      // The shadow decides nearly every answer (what it cannot decide is re-read and counted).
      expect(stats.uncertain).toBeLessThan(stats.steps * 0.05);
      expect(stats.isolationChecks).toBeGreaterThan(stats.runs);
    });
  }
});

describe('raw ioctls on every fd kind, in every state', () => {
  it('each returns >= 0 or -errno, a failed one changes nothing, the invariants hold', () => {
    const stats = newStats();
    check('raw', 250, stats);
    expect(stats.succeeded.raw ?? 0).toBeGreaterThan(0);
    expect(stats.failedCalls).toBeGreaterThan(stats.runs);
  });
});

describe('the SMMUv3 fed random STE, CD, page-table and command bytes', () => {
  it('only architected events and errors; no record lost without the overflow flag', () => {
    const stats = newStats();
    check('smmu', 500, stats);
    const s = stats.smmu;
    expect(s.recorded).toBeGreaterThan(0);
    expect(s.overflowed).toBeGreaterThan(0);
    expect(s.commandErrors).toBeGreaterThan(0);
    expect(s.tx).toBeGreaterThan(s.faults);
  });
});

describe("a hostile guest on the VMM's virtual SMMUv3 (type-6 nesting with the binding extension)", () => {
  it('nothing throws, the device stays inside guest RAM, no event record lost unflagged', () => {
    const stats = newStats();
    check('guest', 40, stats);
    expect(stats.guest.delivered).toBeGreaterThan(0);
    expect(stats.guest.dropped).toBeGreaterThan(0);
  });
});
