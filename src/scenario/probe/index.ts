/**
 * `vfio-nest probe`: run probe files against a modelled host and get the JSON lines
 * probe/vfioprobe.c prints on a real kernel.
 */

import { Host, type HostOptions } from '../../host/host.ts';
import { ArmSmmuV3 } from '../../iommu/arm-smmu-v3.ts';
import { hex16 } from './iommufd-format.ts';
import { type ProbeLine, parseProbe } from './parse.ts';
import { type ProbeOptions, ProbeProcess, type ProbeRecord } from './runner.ts';

export { PROBE_OPS } from './ops.ts';
export { type ProbeLine, ProbeSyntaxError, parseProbe, parseU64 } from './parse.ts';
export type { ProbeOptions, ProbeRecord } from './runner.ts';

export interface ProbeFile {
  /** Shown in `scenario` as NN-<basename>. */
  name: string;
  text: string;
}

/** One SMMU event record as the probe prints it: type and the four 64-bit words in hex. */
export interface ProbeSmmuEvent {
  type: string;
  words: string[];
}

/** The result of one file: its lines, and on an SMMUv3 host the event records the driver read. */
export interface ProbeFileResult {
  scenario: string;
  lines: ProbeRecord[];
  smmuEvents?: ProbeSmmuEvent[];
}

/**
 * Parses every file first (a bad file runs nothing), then runs each in a fresh process on one host.
 */
export function runProbeFiles(
  files: ProbeFile[],
  hostOptions: HostOptions = {},
  probeOptions: ProbeOptions = {},
  host: Host = new Host(hostOptions),
): ProbeFileResult[] {
  const parsed: ProbeLine[][] = files.map((f) => parseProbe(f.text, f.name));
  return parsed.map((lines, i) => {
    const base = files[i].name.split('/').pop()!;
    const scenario = `${String(i + 1).padStart(2, '0')}-${base}`;
    const drv = host.iommu instanceof ArmSmmuV3 ? host.iommu : null;
    const from = drv?.eventLog.length ?? 0;
    const p = new ProbeProcess(host, scenario, probeOptions);
    p.run(lines);
    p.exit();
    const result: ProbeFileResult = { scenario, lines: p.out };
    if (drv !== null)
      result.smmuEvents = drv.eventsSince(from).map((e) => ({
        type: `0x${e.type.toString(16).padStart(2, '0')}`,
        words: e.words.map(hex16),
      }));
    return result;
  });
}
