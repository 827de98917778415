/**
 * The model against real kernels: every recording in test/kernel-answers (copied from
 * ../shared/reference/kernel-answers by `npm run refresh-recordings`) and test/oracle/answers
 * (asked of the oracle by this project, scripts/ask-oracle.sh) is replayed and must match line for
 * line. The directory name gives the configuration; the oracle_env line gives the machine's group
 * number and device name, as the oracle passes them to the probe. A recording dropped in is tested
 * with no code change.
 */

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromName } from '../src/scenario/probe/config.ts';
import { runProbeFiles } from '../src/scenario/probe/index.ts';
import { comparable, eventsFromLog, listRecordings, loadRecording } from './helpers/recordings.ts';

/** Recording roots; test/oracle/local-answers were asked with the project's local probe ops. */
const ROOTS: { dir: string; localOps: boolean }[] = [
  { dir: join(import.meta.dirname, 'kernel-answers'), localOps: false },
  { dir: join(import.meta.dirname, 'oracle/answers'), localOps: false },
  { dir: join(import.meta.dirname, 'oracle/local-answers'), localOps: true },
];
const SCENARIO_DIRS = [
  join(import.meta.dirname, 'kernel-answers/scenarios'),
  join(import.meta.dirname, 'oracle/probes'),
  join(import.meta.dirname, 'oracle/local-probes'),
];

function scenarioText(name: string): string {
  for (const d of SCENARIO_DIRS) if (existsSync(join(d, name))) return readFileSync(join(d, name), 'utf8');
  throw new Error(`no probe file ${name} in ${SCENARIO_DIRS.join(', ')}`);
}

/** Hosts the model cannot build yet; their recordings are listed as todo until they can. */
const PENDING = new Set<string>([]);

for (const { dir: root, localOps } of ROOTS) {
  describe(root.split('/').slice(-2).join('/'), () => {
    for (const [config, file] of listRecordings(root)) {
      const cfg = configFromName(config);
      const name = `${config}/${file}`;
      if (cfg === undefined) {
        it(`${name}: the directory name is a configuration`, () => {
          expect.fail(`'${config}' is not a recording configuration name`);
        });
        continue;
      }
      const kind = /-(intel|virtio|smmuv3|iommufd)/.exec(config)![1];
      if (PENDING.has(kind)) {
        it.todo(`${name} (needs the ${kind} host)`);
        continue;
      }
      it(name, () => {
        const rec = loadRecording(root, config, file);
        const group = rec.env.group !== undefined ? Number(rec.env.group) : undefined;
        const device = rec.env.device;
        const results = runProbeFiles(
          rec.scenarios.map((s) => ({ name: s, text: scenarioText(s) })),
          { ...cfg.host, group, device },
          { ...cfg.probe, group, device, localOps },
        );
        rec.scenarios.forEach((_s, i) => {
          const got = results[i].lines.map(comparable);
          const want = rec.lines[i].map(comparable);
          for (let k = 0; k < Math.max(got.length, want.length); k++)
            expect(got[k], `${rec.scenarios[i]} seq ${k}`).toEqual(want[k]);
          // The kernel logged every event record it read; a rate-limited log is checked up to the
          // first suppression (kernel-answers/README.md).
          const log = rec.logs[i];
          if (log !== undefined) {
            const logged = eventsFromLog(log);
            const suppressed = log.some((l) => /callbacks suppressed/.test(l));
            const model = results[i].smmuEvents ?? [];
            expect(
              suppressed ? model.slice(0, logged.length) : model,
              `${rec.scenarios[i]} smmu_events`,
            ).toEqual(logged);
          }
        });
      });
    }
  });
}
