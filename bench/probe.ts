/**
 * `probe` of every public kernel-answers recording (test/kernel-answers: each configuration's
 * scenarios on its own host, as test/recordings.test.ts replays them), checked line for line against
 * the kernels' answers. Target: the whole set in under a second. The first run (code not yet
 * optimised) is the figure; later runs are shown too.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFromName } from '../src/scenario/probe/config.ts';
import { runProbeFiles } from '../src/scenario/probe/index.ts';
import { comparable, listRecordings, loadRecording, type Recording } from '../test/helpers/recordings.ts';
import { type BenchContext, check, median, nowNs, record } from './lib.ts';

const ROOT = join(import.meta.dirname, '../test/kernel-answers');

interface Job {
  rec: Recording;
  files: { name: string; text: string }[];
  cfg: NonNullable<ReturnType<typeof configFromName>>;
}

/** Every recording the model can replay (iommufd hosts are not modelled yet). */
export function probeJobs(): Job[] {
  const jobs: Job[] = [];
  for (const [config, file] of listRecordings(ROOT)) {
    const cfg = configFromName(config);
    if (cfg === undefined || /iommufd/.test(config)) continue;
    const rec = loadRecording(ROOT, config, file);
    const files = rec.scenarios.map((s) => ({
      name: s,
      text: readFileSync(join(ROOT, 'scenarios', s), 'utf8'),
    }));
    jobs.push({ rec, files, cfg });
  }
  return jobs;
}

/** Runs every job; returns the lines produced. Throws on the first line that differs from the kernel's. */
export function runJobs(jobs: Job[]): number {
  let lines = 0;
  for (const { rec, files, cfg } of jobs) {
    const group = rec.env.group !== undefined ? Number(rec.env.group) : undefined;
    const device = rec.env.device;
    const results = runProbeFiles(files, { ...cfg.host, group, device }, { ...cfg.probe, group, device });
    results.forEach((r, i) => {
      const got = r.lines.map(comparable);
      const want = rec.lines[i].map(comparable);
      check(
        JSON.stringify(got) === JSON.stringify(want),
        `${rec.config}/${rec.file} ${rec.scenarios[i]}: the model's answers differ from the kernel's`,
      );
      lines += got.length;
    });
  }
  return lines;
}

export async function benchProbe(ctx: BenchContext): Promise<void> {
  const jobs = probeJobs();
  check(jobs.length > 0, 'recordings found');
  const t0 = nowNs();
  const lines = runJobs(jobs);
  const first = nowNs() - t0;
  const later: number[] = [];
  for (let i = 0; i < (ctx.smoke ? 0 : 5); i++) {
    const t = nowNs();
    runJobs(jobs);
    later.push(nowNs() - t);
  }
  record(ctx, {
    id: 'probe-all',
    name: `probe of all public kernel-answers recordings (${jobs.length} files, ${lines} lines, first run)`,
    value: first,
    unit: 'ns',
    target: '< 1 s for the whole set',
    pass: first < 1e9,
    notes: later.length > 0 ? { 'warm run (ms)': +(median(later) / 1e6).toFixed(1) } : {},
  });
}
