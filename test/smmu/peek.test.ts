/**
 * The read-only views the playground needs from the SMMU: `explainWalk(..., { caches: 'peek' })`
 * looks the TLB and the configuration cache up as a transaction would (a hit reads nothing) and stays
 * a dry run; `queueSlots` reads a ring back for display.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadScenario, ScenarioRunner } from '../../src/scenario/index.ts';
import { decodeCommand, decodeEvent, explainWalk, queueSlots } from '../../src/smmu/index.ts';

const DEMO = loadScenario(readFileSync('examples/demo.yaml', 'utf8'), 'examples/demo.yaml');

/** The demo run up to (not including) the first step of `kind` (after `skip` of them). */
function demoBefore(kind: string, skip = 0): ScenarioRunner {
  const runner = new ScenarioRunner(DEMO);
  let seen = 0;
  for (const step of DEMO.steps) {
    if (step.spec.kind === kind && seen++ === skip) break;
    runner.runStep(step);
  }
  return runner;
}

describe("explainWalk with caches: 'peek'", () => {
  it('a cold state: the peeked walk is the full nested miss, and peeking fills nothing', () => {
    const runner = demoBefore('copy');
    const smmu = runner.host.smmu!;
    const sid = runner.host.devices[0].rid;
    const tlb = smmu.tlb.size;
    const cfg = smmu.configCache.size;
    const x = explainWalk(smmu, sid, -1, 0x1000000, false, { caches: 'peek' });
    expect(x.tlbHit).toBe(false);
    expect(x.walk).toHaveLength(24);
    expect(x.pa).toBe(explainWalk(smmu, sid, -1, 0x1000000, false).pa);
    // Nothing was cached by looking: the same peek again still misses, the sizes did not move.
    expect(explainWalk(smmu, sid, -1, 0x1000000, false, { caches: 'peek' }).walk).toHaveLength(24);
    expect(smmu.tlb.size).toBe(tlb);
    expect(smmu.configCache.size).toBe(cfg);
  });

  it('after the DMA that filled the TLB: no reads at all, a TLB hit, the same PA as the cold walk', () => {
    const runner = demoBefore('read');
    const smmu = runner.host.smmu!;
    const sid = runner.host.devices[0].rid;
    const warm = explainWalk(smmu, sid, -1, 0x1000000, false, { caches: 'peek' });
    const cold = explainWalk(smmu, sid, -1, 0x1000000, false);
    expect(warm.tlbHit).toBe(true);
    expect(warm.walk).toHaveLength(0);
    expect(warm.config).toHaveLength(0);
    expect(cold.walk).toHaveLength(24);
    expect(cold.config.length).toBeGreaterThan(0);
    expect(warm.pa).toBe(cold.pa);
  });

  it('a configuration hit with a TLB miss decodes stage-1 outputs as IPAs, from the cached STE', () => {
    const runner = demoBefore('read');
    const smmu = runner.host.smmu!;
    const sid = runner.host.devices[0].rid;
    // 0x1010000 was never translated: the TLB misses, the STE and CD come from the cache.
    const warm = explainWalk(smmu, sid, -1, 0x1010000, false, { caches: 'peek' });
    const cold = explainWalk(smmu, sid, -1, 0x1010000, false);
    expect(warm.config).toHaveLength(0);
    expect(warm.walk.map((r) => r.meaning)).toEqual(cold.walk.map((r) => r.meaning));
    expect(warm.walk.find((r) => r.kind === 's1')!.meaning).toMatch(/^table -> IPA 0x/);
  });

  it('a stale TLB entry: the peek answers the old PA, the cold walk the tables as they are now', () => {
    // The demo's guest_remap without invalidation, then the copy that used the stale entry.
    const runner = demoBefore('guest_invalidate');
    const smmu = runner.host.smmu!;
    const sid = runner.host.devices[0].rid;
    const warm = explainWalk(smmu, sid, -1, 0x2000000, true, { caches: 'peek' });
    const cold = explainWalk(smmu, sid, -1, 0x2000000, true);
    expect(warm.tlbHit).toBe(true);
    expect(warm.ipa).toBe(0x40200000);
    expect(cold.ipa).toBe(0x40300000);
    expect(warm.pa).not.toBe(cold.pa);
  });

  it('a fault is explained, not recorded: the event queue does not move', () => {
    const runner = demoBefore('dma');
    const smmu = runner.host.smmu!;
    const written = smmu.eventq.written;
    const x = explainWalk(smmu, runner.host.devices[0].rid, -1, 0x5000000, true, { caches: 'peek' });
    expect(x.event?.name).toBe('F_TRANSLATION');
    expect(x.event?.s2).toBe(0);
    expect(smmu.eventq.written).toBe(written);
  });
});

describe('queueSlots', () => {
  it("reads back the host's last commands before CONS, oldest first, ending with the CMD_SYNC", () => {
    const runner = demoBefore('copy');
    const smmu = runner.host.smmu!;
    const slots = queueSlots(smmu.mem, smmu.cmdq.base, smmu.cmdq.cons, 4);
    expect(slots).toHaveLength(4);
    const last = slots[3];
    expect(decodeCommand(last.words[0], last.words[1], last.words[2], last.words[3]).name).toBe('CMD_SYNC');
    expect(last.pos).toBe((smmu.cmdq.cons - 1) & ((2 << smmu.cmdq.base.log2size) - 1));
    expect(slots.map((s) => s.pos)).toEqual([...slots.map((s) => s.pos)].sort((a, b) => a - b));
  });

  it('reads the event record the SMMU wrote for a stage-2 fault', () => {
    const runner = demoBefore('events', 1);
    const smmu = runner.host.smmu!;
    const [slot] = queueSlots(smmu.mem, smmu.eventq.base, smmu.eventq.prod, 1);
    const e = decodeEvent(slot.words);
    expect(e.name).toBe('F_TRANSLATION');
    expect(e.s2).toBe(1);
    expect(e.ipa).toBe(0x8000000000);
  });

  it('asks for no more slots than the ring has', () => {
    const runner = demoBefore('copy');
    const smmu = runner.host.smmu!;
    const n = 1 << smmu.cmdq.base.log2size;
    expect(queueSlots(smmu.mem, smmu.cmdq.base, smmu.cmdq.cons, n + 50)).toHaveLength(n);
  });
});
