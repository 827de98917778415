/**
 * explainWalk is what `vfio-nest walk` and the playground show: its event record must be the one the
 * SMMU writes for the same transaction, with the preset's quirks (docs/smmu.md: QEMU writes the whole
 * IPA where IHI 0070 keeps IPA[55:12]).
 */

import { describe, expect, it } from 'vitest';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { loadScenario, ScenarioRunner } from '../../src/scenario/index.ts';
import { decodeEvent, explainWalk } from '../../src/smmu/index.ts';

const TEXT = `
host: { kernel: '6.1', iommu: smmuv3, nest_bind: true }
steps:
  - vmm: { ram_size: 16MiB }
  - guest_init:
  - guest_attach: { asid: 1 }
  - guest_map: { va: 0x3000000, ipa: 0x8000000000 }
  - dma: { iova: 0x3000124, size: 4, dir: from_device }
`;

function lastHostEvent(compat: 'arch' | 'qemu') {
  const sc = loadScenario(TEXT, 'explain.yaml');
  const runner = new ScenarioRunner({ ...sc, host: { ...sc.host, smmuCompat: compat } });
  for (const r of runner.run()) expect(r.record.error).toBeUndefined();
  const drv = runner.host.iommu as ArmSmmuV3;
  const written = drv.eventLog.at(-1)!.words;
  const words = new Uint32Array(8);
  written.forEach((q, i) => {
    words[2 * i] = Number(q & 0xffff_ffffn);
    words[2 * i + 1] = Number(q >> 32n);
  });
  const x = explainWalk(runner.host.smmu!, runner.host.devices[0].rid, -1, 0x3000124, true);
  runner.finish();
  return { written: decodeEvent(words), explained: x.event! };
}

describe('explainWalk', () => {
  it.each(['arch', 'qemu'] as const)(
    'its stage-2 fault record equals the one the SMMU wrote (%s preset)',
    (compat) => {
      const { written, explained } = lastHostEvent(compat);
      expect(explained.words).toEqual(written.words);
      expect([explained.name, explained.s2, explained.cls]).toEqual(['F_TRANSLATION', 1, 'IN']);
      // IHI 0070 §7.3: the record's IPA field is IPA[55:12]; QEMU's SMMU writes the whole IPA into the
      // doubleword (docs/smmu.md, the qemu preset).
      expect(explained.words[3]).toBe(compat === 'qemu' ? '0x0000008000000124' : '0x0000008000000000');
    },
  );
});
