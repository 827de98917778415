/**
 * ScenarioRunner.inspect(): read-only access to what the steps built (the playground's state views),
 * and the type a container was set to (Type1Iommu.type).
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadScenario, ScenarioRunner } from '../../src/scenario/index.ts';

const load = (file: string) => loadScenario(readFileSync(file, 'utf8'), file);

describe('ScenarioRunner.inspect', () => {
  it('nothing before the first step; the VMM, its type-6 container and guest driver after theirs', () => {
    const sc = load('examples/demo.yaml');
    const runner = new ScenarioRunner(sc);
    expect(runner.inspect()).toEqual({ vmm: null, guest: null, processes: new Map() });
    runner.runStep(sc.steps[0]);
    const { vmm, guest } = runner.inspect();
    expect(vmm).not.toBeNull();
    expect(guest).toBeNull();
    const container = runner.host.vfio.groups.get(runner.host.groups[0].id)!.container!;
    expect(container.iommu!.type).toBe(6);
    // Guest RAM: one vfio_dma of 16 MiB at IPA 0x40000000, every page charged.
    expect(container.iommu!.dmaList().map((d) => [d.iova, d.size, d.lockedPages])).toEqual([
      [0x40000000, 16 << 20, 4096],
    ]);
    expect(vmm!.proc.status().VmLck_kB).toBe(16384);
    runner.runStep(sc.steps[1]);
    expect(runner.inspect().guest).not.toBeNull();
    runner.finish();
  });

  it('named processes appear once they have run a probe step; the container keeps its type', () => {
    const sc = load('examples/05-memlock.yaml');
    const runner = new ScenarioRunner(sc);
    for (const step of sc.steps) runner.runStep(step);
    const names = [...runner.inspect().processes.keys()];
    const used = new Set(sc.steps.filter((s) => s.spec.kind === 'probe').map((s) => s.process));
    expect(new Set(names)).toEqual(used);
    // The title's second half: the type-1 container set up early in the file still answers type 3.
    expect(runner.host.vfio.groups.get(runner.host.groups[0].id)!.container?.iommu?.type).toBe(3);
    runner.finish();
    // 05-memlock runs everything as main; a declared process shows up only once it ran a step.
    const two = loadScenario(
      'processes:\n  user: { uid: 1000 }\n  idle: { uid: 1001 }\nsteps:\n  - op: open_container\n  - op: open_container\n    process: user\n',
      'two.yaml',
    );
    const r2 = new ScenarioRunner(two);
    r2.runStep(two.steps[0]);
    expect([...r2.inspect().processes.keys()]).toEqual(['main']);
    r2.runStep(two.steps[1]);
    const procs = r2.inspect().processes;
    expect([...procs.keys()].sort()).toEqual(['main', 'user']);
    expect(procs.get('user')!.task.uid).toBe(1000);
    r2.finish();
  });

  it('a v2 container answers type 3 while the group is in it; none once the last group left', () => {
    const sc = load('examples/01-type1-basics.yaml');
    const runner = new ScenarioRunner(sc);
    const setIommu = sc.steps.findIndex((s) => s.spec.kind === 'probe' && s.spec.op === 'set_iommu');
    for (const step of sc.steps.slice(0, setIommu + 1)) runner.runStep(step);
    const group = runner.host.vfio.groups.get(1)!;
    expect(group.container?.iommu?.type).toBe(3);
    for (const step of sc.steps.slice(setIommu + 1)) runner.runStep(step);
    expect(group.container).toBeNull();
    runner.finish();
  });
});
