/**
 * The SMMU's `qemu` compatibility preset against the architecture, on the oracle's own probe files:
 * each QEMU 10 deviation the 6.18-iommufd recordings depend on (docs/smmu.md, reference §11), in both
 * behaviours. QEMU's answers are quoted from the recordings (the oracle booted 6.18.15-iommufd on
 * QEMU 10.0.2); the architecture's from IHI 0070 §7.3 (S2 and CLASS of a stage-2 fault during a
 * stage-1 walk, IPA[55:12], RnW of the input transaction).
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runProbeFiles } from '../../src/scenario/probe/index.ts';

const ROOT = join(import.meta.dirname, '..');
const probe = (dir: string, name: string) => ({ name, text: readFileSync(join(ROOT, dir, name), 'utf8') });

function run(compat: 'arch' | 'qemu', dir: string, name: string) {
  const [r] = runProbeFiles(
    [probe(dir, name)],
    { kernel: '6.18', iommu: 'smmuv3', iommufd: true, smmuCompat: compat, group: 1 },
    { iommufd: true },
  );
  return r;
}

type Rec = Record<string, unknown> & { records?: { evt: string[] }[] };

describe('x11-iommufd-events: where nested stage-2 faults on stage-1 structures go', () => {
  const qemu = run('qemu', 'oracle/probes', 'x11-iommufd-events.txt');
  const arch = run('arch', 'oracle/probes', 'x11-iommufd-events.txt');
  const line = (r: typeof qemu, seq: number) => r.lines[seq] as Rec;

  it('a stage-1 table descriptor to an unmapped IPA: QEMU reports S2=0 CLASS=TT to the guest (the deviation)', () => {
    // Recorded (seq 28): "evt":["0x0000004200000010","0x0000010000000000","0x0000000002200000","0x0000008000000000"]
    expect(line(qemu, 28).records![0].evt).toEqual([
      '0x0000004200000010',
      '0x0000010000000000',
      '0x0000000002200000',
      '0x0000008000000000',
    ]);
    // The architecture: a stage-2 fault (S2 = 1, CLASS TT, the IPA), which stays with the host.
    expect(line(arch, 28)).toMatchObject({ ret: 0, n_records: 0 });
    expect(arch.smmuEvents).toContainEqual({
      type: '0x10',
      words: ['0x0000000800000010', '0x0000018000000000', '0x0000000002200000', '0x0000008000000000'],
    });
  });

  it('CD.TTB0 at an unmapped IPA: both S2=1 CLASS=TT to the host; QEMU records RnW=1 for the write', () => {
    // Recorded log: event 0x10, 0x0000000800000010 0x0000018800000000 0x0000000002000000 0x0000008000000000
    expect(qemu.smmuEvents).toContainEqual({
      type: '0x10',
      words: ['0x0000000800000010', '0x0000018800000000', '0x0000000002000000', '0x0000008000000000'],
    });
    expect(arch.smmuEvents).toContainEqual({
      type: '0x10',
      words: ['0x0000000800000010', '0x0000018000000000', '0x0000000002000000', '0x0000008000000000'],
    });
  });

  it('the CD table at an unmapped IPA: S2=1 CLASS=CD; QEMU records RnW=1 for the write', () => {
    // Recorded log: 0x0000000800000010 0x0000008800000000 0x0000000002000000 0x0000008000000000
    expect(qemu.smmuEvents).toContainEqual({
      type: '0x10',
      words: ['0x0000000800000010', '0x0000008800000000', '0x0000000002000000', '0x0000008000000000'],
    });
    expect(arch.smmuEvents).toContainEqual({
      type: '0x10',
      words: ['0x0000000800000010', '0x0000008000000000', '0x0000000002000000', '0x0000008000000000'],
    });
  });
});

describe('b-s1-faults: the IPA field of a stage-2 fault', () => {
  it('QEMU writes the whole IPA (recorded 0x000000800001300c); the architecture IPA[55:12]', () => {
    const qemu = run('qemu', 'kernel-answers/scenarios', 'b-s1-faults.txt');
    const arch = run('arch', 'kernel-answers/scenarios', 'b-s1-faults.txt');
    expect(qemu.smmuEvents!.map((e) => e.words[3])).toEqual([
      '0x0000008000013000',
      '0x0000008000013004',
      '0x0000008000013008',
      '0x000000800001300c',
    ]);
    expect(arch.smmuEvents!.map((e) => e.words[3])).toEqual(new Array(4).fill('0x0000008000013000'));
    // Everything else of the run is the same on both.
    expect(arch.lines).toEqual(
      qemu.lines.map((l) => ({ ...l, ms: (arch.lines[l.seq as number] as Rec).ms })),
    );
  });
});
