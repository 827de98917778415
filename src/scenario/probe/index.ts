/**
 * `vfio-nest probe`: run probe files against a modelled host and get the JSON lines
 * probe/vfioprobe.c prints on a real kernel.
 */

import { Host, type HostOptions } from '../../host/host.ts';
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

/** The result of one file: its lines, and the records that follow them (e.g. smmu_events). */
export interface ProbeFileResult {
  scenario: string;
  lines: ProbeRecord[];
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
    const p = new ProbeProcess(host, scenario, probeOptions);
    p.run(lines);
    p.exit();
    return { scenario, lines: p.out };
  });
}
