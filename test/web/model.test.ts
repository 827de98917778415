/**
 * The playground's model side, without a browser: stepping and replay, the walk grid of the demo's
 * cold nested miss and faults, the state views, the URL round trip, and load errors worded as the
 * CLI words them.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeAnswer, describeRequest, loadScenario, ScenarioRunner } from '../../src/scenario/index.ts';
import { EXAMPLES } from '../../web/examples.ts';
import { buildGrid, type WalkGrid } from '../../web/grid.ts';
import { isLoadError, parseScenario, Session, type WalkView } from '../../web/session.ts';
import { guestView, smmuView, vfioView } from '../../web/state.ts';
import { decodeState, encodeState, packText, unpackText } from '../../web/url.ts';

const DEMO_TEXT = readFileSync('examples/demo.yaml', 'utf8');
const demo = () => {
  const sc = parseScenario(DEMO_TEXT, 'examples/demo.yaml');
  if (isLoadError(sc)) throw new Error(sc.message);
  return new Session(sc);
};
const indexOf = (s: Session, kind: string, nth = 0): number =>
  s.scenario.steps.filter((x) => x.spec.kind === kind)[nth].index;

const cells = (g: WalkGrid) => g.rows.flatMap((r) => [...r.s2, r.s1]).filter((c) => c !== null);

describe('Session', () => {
  it('steps forward with the answers `vfio-nest run` gives, every expectation of the demo holding', () => {
    const s = demo();
    s.runToEnd();
    expect(s.position).toBe(s.length);
    expect(s.outcomes.every((o) => o.ok)).toBe(true);
    // Word for word what `vfio-nest run` prints for each step.
    const plain = new ScenarioRunner(s.scenario);
    const cli = s.scenario.steps.map((st) => [describeRequest(st), describeAnswer(plain.runStep(st).record)]);
    expect(s.outcomes.map((o) => [o.request, o.answer])).toEqual(cli);
    expect(s.outcomes[0].request).toMatch(/^vmm ram_size=0x1000000/);
    expect(s.outcomes[0].answer).toContain('VmLck_kB=16384');
    // The VMM's ioctls of the first step, consecutive repeats counted once.
    expect(s.outcomes[0].ioctls.map((c) => c.name)).toContain('VFIO_SET_IOMMU');
    expect(s.outcomes[0].ioctls.find((c) => c.name === 'VFIO_SET_IOMMU')!.ret).toBe('0');
  });

  it('back is a replay: the state after going back equals the state reached going forward', () => {
    const s = demo();
    const n = indexOf(s, 'copy') + 1;
    s.goto(n);
    const forward = JSON.stringify([vfioView(s.current), smmuView(s.current.host), guestView(s.current)]);
    const records = s.outcomes.map((o) => o.answer);
    s.goto(n + 5);
    s.goto(n);
    expect(s.position).toBe(n);
    expect(JSON.stringify([vfioView(s.current), smmuView(s.current.host), guestView(s.current)])).toBe(
      forward,
    );
    expect(s.outcomes.map((o) => o.answer)).toEqual(records);
    s.back();
    expect(s.position).toBe(n - 1);
    s.reset();
    expect(s.position).toBe(0);
    expect(s.outcomes).toEqual([]);
  });

  it('looking at the state changes nothing: every view after every step, same answers as without', () => {
    const plain = new ScenarioRunner(loadScenario(DEMO_TEXT, 'examples/demo.yaml'));
    const expected = plain.scenario.steps.map((st) => JSON.stringify(plain.runStep(st).record));
    const s = demo();
    const got: string[] = [];
    while (!s.atEnd) {
      const o = s.next()!;
      got.push(JSON.stringify(o.record));
      vfioView(s.current);
      smmuView(s.current.host);
      guestView(s.current);
      const a = s.lastAddress();
      if (a !== null) s.explain(a.iova, { write: a.write });
    }
    expect(got).toEqual(expected);
  });

  it('goto clamps to the scenario; next at the end returns null', () => {
    const s = demo();
    s.goto(1000);
    expect(s.position).toBe(s.length);
    expect(s.next()).toBeNull();
    s.goto(-3);
    expect(s.position).toBe(0);
  });

  it('every example runs to the end in the page model with its expectations holding', () => {
    expect(EXAMPLES.length).toBeGreaterThanOrEqual(18);
    expect(EXAMPLES[0].name).toBe('demo.yaml');
    for (const ex of EXAMPLES) {
      const sc = parseScenario(ex.text, ex.path);
      if (isLoadError(sc)) throw new Error(sc.message);
      const s = new Session(sc);
      s.runToEnd();
      expect(s.outcomes.filter((o) => !o.ok).map((o) => `${ex.path}:${o.line}: ${o.failures}`)).toEqual([]);
      smmuView(s.current.host);
      vfioView(s.current);
      guestView(s.current);
      s.finish();
    }
  });
});

describe('load errors', () => {
  it('a typo is reported at its line and column with the message the CLI prints', () => {
    const bad = DEMO_TEXT.replace(
      'guest_map: { va: 0x1000000, ipa: 0x40100000, size: 64KiB }',
      'guest_map: { va: 0x1000000, ipa: 0x40100000, sise: 64KiB }',
    );
    const e = parseScenario(bad, 'examples/demo.yaml');
    expect(isLoadError(e)).toBe(true);
    if (!isLoadError(e)) return;
    let cli = '';
    try {
      loadScenario(bad, 'examples/demo.yaml');
    } catch (x) {
      cli = (x as Error).message;
    }
    expect(e.message).toBe(cli);
    expect(e.line).toBe(bad.split('\n').findIndex((l) => l.includes('sise')) + 1);
    expect(e.field).toBe('steps[3].guest_map.sise');
    expect(e.message).toMatch(/^examples\/demo\.yaml:\d+:\d+: steps\[3\]\.guest_map\.sise: /);
  });

  it('YAML that does not parse is an error value too', () => {
    const e = parseScenario('steps: [\n  - vmm: {', 'x.yaml');
    expect(isLoadError(e)).toBe(true);
    if (isLoadError(e)) expect(e.message).toMatch(/^x\.yaml:\d+:\d+: /);
  });
});

describe('the walk grid', () => {
  const walkStep = (s: Session, kind: string, nth = 0): WalkView => {
    s.goto(indexOf(s, kind, nth) + 1);
    const w = s.outcomes[s.position - 1].walk;
    expect(w).not.toBeNull();
    return w!;
  };

  it("the demo's walk step: a cold nested miss, 24 reads in a 5 x 5 grid less the result cell", () => {
    const g = buildGrid(walkStep(demo(), 'walk'));
    expect(g.reads).toBe(24);
    expect(g.skipped).toBe(0);
    expect(g.shape).toBe('(4 + 1) x (4 + 1) - 1');
    expect(g.s2Levels).toEqual([0, 1, 2, 3]);
    expect(g.rows.map((r) => r.label)).toEqual(['S1 L0', 'S1 L1', 'S1 L2', 'S1 L3', 'output']);
    expect(g.rows.every((r) => r.s2.every((c) => c !== null))).toBe(true);
    // Read order runs across each row, then down: n = 5 * row + column + 1.
    g.rows.forEach((r, i) => {
      r.s2.forEach((c, j) => {
        expect(c!.read.n).toBe(5 * i + j + 1);
      });
      if (r.s1 !== null) expect(r.s1.read.n).toBe(5 * i + 5);
    });
    expect(g.rows[4].s1).toBeNull();
    expect(g.rows[4].ipa).toBe(0x40100000);
    expect(g.outcome).toMatchObject({ kind: 'pa', ipa: 0x40100000, tlbHit: false, stale: null });
    expect(g.config.map((c) => c.read.label)).toEqual([
      'L1STD',
      'STE',
      'S2 CD',
      'S2 CD',
      'S2 CD',
      'S2 CD',
      'CD',
    ]);
  });

  it('the first copy misses every cache; the second DMA of the same page hits the TLB: every cell skipped', () => {
    const s = demo();
    const first = buildGrid(walkStep(s, 'copy'));
    expect(first.reads).toBe(24);
    expect(first.config.every((c) => c.state === 'read')).toBe(true);
    const again = buildGrid(s.explain(0x1000000) as WalkView);
    expect(again.reads).toBe(0);
    expect(again.skipped).toBe(24);
    expect(cells(again).every((c) => c.state === 'skipped' && c.why === 'TLB hit')).toBe(true);
    expect(again.config.every((c) => c.state === 'skipped' && c.why === 'configuration cache hit')).toBe(
      true,
    );
    expect(again.outcome).toMatchObject({ kind: 'pa', tlbHit: true, stale: null });
    // Asked to ignore the caches, the same address is the full walk again.
    expect(buildGrid(s.explain(0x1000000, { cold: true }) as WalkView).reads).toBe(24);
  });

  it('a stage-1 fault: the invalid stage-1 descriptor is the faulting cell, with the event record', () => {
    const g = buildGrid(walkStep(demo(), 'dma', 0));
    expect(g.outcome.kind).toBe('fault');
    if (g.outcome.kind !== 'fault') return;
    expect(g.outcome.event).toMatchObject({ name: 'F_TRANSLATION', s2: 0, cls: 'IN', inputAddr: 0x5000000 });
    expect(g.faultCell).not.toBeNull();
    expect(g.faultCell!.state).toBe('fault');
    expect(g.faultCell!.read.kind).toBe('s1');
    expect(g.faultCell!.read.meaning).toBe('invalid');
    expect(cells(g).filter((c) => c.state === 'fault')).toHaveLength(1);
    expect(g.outcome.event.words).toHaveLength(4);
  });

  it('a stage-2 fault on the output IPA: the last stage-2 cell of the output row faults, S2 = 1', () => {
    const g = buildGrid(walkStep(demo(), 'dma', 1));
    expect(g.outcome.kind).toBe('fault');
    if (g.outcome.kind !== 'fault') return;
    expect(g.outcome.event).toMatchObject({ name: 'F_TRANSLATION', s2: 1, cls: 'IN', ipa: 0x8000000000 });
    const out = g.rows[g.rows.length - 1];
    expect(out.label).toBe('output');
    expect(out.ipa).toBe(0x8000000000);
    const last = out.s2.filter((c) => c !== null).at(-1)!;
    expect(last).toBe(g.faultCell);
    expect(last.read.label).toBe('S2 IN');
  });

  it('the stale entry: the TLB answers the old page, the tables the new one', () => {
    const s = demo();
    s.goto(indexOf(s, 'guest_invalidate'));
    const g = buildGrid(s.explain(0x2000000, { write: true }) as WalkView);
    expect(g.outcome).toMatchObject({ kind: 'pa', tlbHit: true, ipa: 0x40200000 });
    if (g.outcome.kind === 'pa') expect(g.outcome.stale).toMatchObject({ ipa: 0x40300000, fault: null });
  });

  it("the probe's edu_dma on a stage-1 domain: a 4-read column; a write the cached entry refuses reads nothing", () => {
    const sc = parseScenario(readFileSync('examples/10-edu-dma-smmuv3.yaml', 'utf8'), 'examples/10.yaml');
    if (isLoadError(sc)) throw new Error(sc.message);
    const s = new Session(sc);
    s.runToEnd();
    const grids = s.outcomes
      .filter((o) => o.walk !== null)
      .map((o) => [o.request, buildGrid(o.walk!)] as const);
    expect(grids.map(([r]) => r)).toEqual([
      'edu_dma iova=0x100000 size=0x800 dir=0',
      'edu_dma iova=0x101000 size=0x800 dir=1',
      'edu_dma iova=0x100000 size=0x4 dir=1',
    ]);
    const [first, , refused] = grids.map(([, g]) => g);
    expect(first.s2Levels).toEqual([]);
    expect(first.rows.map((r) => r.label)).toEqual(['S1 L0', 'S1 L1', 'S1 L2', 'S1 L3']);
    expect(first.reads).toBe(4);
    expect(first.shape).toBeNull();
    expect(first.write).toBe(false);
    expect(refused.write).toBe(true);
    expect(refused.reads).toBe(0);
    expect(refused.skipped).toBe(4);
    expect(refused.outcome.kind).toBe('fault');
    if (refused.outcome.kind === 'fault') expect(refused.outcome.event.name).toBe('F_PERMISSION');
    expect(refused.faultCell).toBeNull();
  });

  it('no grid on a host without an SMMUv3: a message instead', () => {
    const sc = parseScenario(readFileSync('examples/01-type1-basics.yaml', 'utf8'), 'examples/01.yaml');
    if (isLoadError(sc)) throw new Error(sc.message);
    const x = new Session(sc).explain(0x1000);
    expect(x).toMatch(/needs an SMMUv3 host/);
  });
});

describe('state views', () => {
  it('VFIO after the first step: a type-6 container, 16 MiB of guest RAM in one vfio_dma, 16 MiB locked', () => {
    const s = demo();
    s.goto(1);
    const v = vfioView(s.current);
    expect(v.kernel).toBe('6.1');
    const c = v.groups[0].container!;
    expect(c.type).toBe(6);
    expect(c.typeName).toBe('VFIO_TYPE1_NESTING_IOMMU');
    expect(c.nesting).toBe(true);
    expect(c.dmas).toEqual([
      expect.objectContaining({
        iova: '0x40000000',
        last: '0x40ffffff',
        size: '16M',
        prot: 'RW',
        lockedPages: 4096,
      }),
    ]);
    expect(v.processes[0]).toMatchObject({ name: 'VMM', VmLck_kB: 16384 });
    s.runToEnd();
    expect(vfioView(s.current).groups[0].container!.dmas).toEqual([]);
  });

  it('the host SMMU: a nested STE and the guest CD field by field, TLB entries after the copy', () => {
    const s = demo();
    s.goto(indexOf(s, 'copy') + 1);
    const v = smmuView(s.current.host)!;
    expect(v.enabled).toBe(true);
    const st = v.streams[0];
    expect(st.sid).toBe(8);
    const field = (name: string) => st.ste!.fields.find((f) => f.name === name)!;
    expect(field('Config')).toMatchObject({ value: 7, text: 'nested', bits: '[3:1]' });
    expect(field('S1ContextPtr').bits).toBe('[55:6]');
    expect(st.cd!.at).toMatch(/^IPA 0x40c06000 = PA 0x/);
    expect(st.cd!.fields.find((f) => f.name === 'ASID')!.value).toBe(1);
    expect(st.cd!.fields.find((f) => f.name === 'TTB0')!.text).toBe('0x40c05000');
    expect(v.tlb.entries.length).toBeGreaterThanOrEqual(32);
    expect(v.tlb.entries.find((e) => e.va === '0x1000000')).toMatchObject({
      tag: 'NS-EL1 S1+S2 VMID 1 ASID 1',
      ipa: '0x40100000',
      size: '4K',
    });
    expect(v.configCache.entries).toEqual([{ sid: '0x8', config: 'nested', cds: 'CD 0 (ASID 1)' }]);
    expect(v.cmdq.recent.at(-1)!.name).toBe('CMD_SYNC');
  });

  it('the host event queue and log show the stage-2 fault; the guest queue the stage-1 one', () => {
    const s = demo();
    s.goto(indexOf(s, 'events', 1) + 1);
    const v = smmuView(s.current.host)!;
    const last = v.eventq.recent.at(-1)!;
    expect(last.name).toBe('F_TRANSLATION (0x10)');
    expect(last.detail).toContain('S2=1');
    expect(last.detail).toContain('IPA=0x8000000000');
    expect(v.eventLog.at(-1)!.detail).toContain('IPA=0x8000000000');
    const g = guestView(s.current)!;
    expect(g.enabled).toBe(true);
    expect(g.eventq!.recent).toHaveLength(1);
    expect(g.eventq!.recent[0].detail).toMatch(/^SID=0x10 S2=0 CLASS=IN RnW=0 InputAddr=0x5000000/);
    expect(g.streams.map((x) => x.vsid)).toEqual([0x10]);
    expect(g.streams[0].ste.fields.find((f) => f.name === 'Config')!.text).toBe('stage 1');
    expect(g.streams[0].cd!.fields.find((f) => f.name === 'ASID')!.value).toBe(1);
    expect(g.cmdq!.recent.map((c) => c.name)).toContain('CMD_CFGI_STE');
  });

  it('before the VMM exists there is no guest view; the host SMMU view is there from the start', () => {
    const s = demo();
    expect(guestView(s.current)).toBeNull();
    expect(smmuView(s.current.host)).not.toBeNull();
  });
});

describe('URL state', () => {
  it('round-trips an example, a step, a tab and an explored address', async () => {
    const hash = await encodeState({
      file: 'demo.yaml',
      position: 7,
      tab: 'smmu',
      iova: 0x3000000,
      write: true,
    });
    expect(hash).toBe('file=demo.yaml&step=6&tab=smmu&iova=0x3000000&write=1');
    expect(await decodeState(`#${hash}`)).toEqual({
      file: 'demo.yaml',
      position: 7,
      tab: 'smmu',
      iova: 0x3000000,
      write: true,
    });
  });

  it('carries edited YAML compressed, and reports a damaged one instead of throwing', async () => {
    const packed = await packText(DEMO_TEXT);
    expect(packed.length).toBeLessThan(DEMO_TEXT.length);
    expect(await unpackText(packed)).toBe(DEMO_TEXT);
    const state = await decodeState(
      await encodeState({ yaml: DEMO_TEXT, name: 'examples/demo.yaml', position: 3 }),
    );
    expect(state).toEqual({ yaml: DEMO_TEXT, name: 'examples/demo.yaml', position: 3 });
    const cut = await decodeState(`yaml=${packed.slice(0, 40)}`);
    expect(cut.yaml).toBeUndefined();
    expect(cut.damaged).toMatch(/damaged/);
  });

  it('ignores what it does not know', async () => {
    expect(await decodeState('#step=x&tab=nope&iova=zz')).toEqual({ position: 0 });
  });
});
