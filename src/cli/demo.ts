/**
 * `vfio-nest demo` (= `npm start`): a narrated tour. Comment lines of the tour file are the
 * narration; every operation runs on the model and shows what the kernel answers.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Host } from '../host/host.ts';
import { parseProbe } from '../scenario/probe/parse.ts';
import { ProbeProcess, type ProbeRecord } from '../scenario/probe/runner.ts';
import { HOST_OPTION_HELP, HOST_OPTION_SPEC, hostOptionsFrom } from './host-options.ts';
import { EXIT_OK, type Out, painter } from './style.ts';

export const DEMO_HELP = `Usage: vfio-nest demo [--json] [options]

A narrated tour of VFIO type-1 on the model: each operation, the kernel's answer, the locked memory.
--json prints the probe's JSON lines instead.

${HOST_OPTION_HELP}

Example:
  vfio-nest demo --kernel 6.18 --iommu virtio --param vfio_iommu_type1.allow_unsafe_interrupts=1`;

const TOUR = join(import.meta.dirname, '../../examples/type1-tour.probe');

/** One line of human output for a probe record. */
export function describeRecord(rec: ProbeRecord): string {
  const args = Object.entries(rec.args as Record<string, string>)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const ret = rec.ret as number;
  let answer = ret < 0 ? `-1 ${rec.errno}` : String(ret);
  if (rec.op === 'unmap' && ret === 0) answer += ` (unmapped ${(rec.out as { size: string }).size})`;
  if (rec.op === 'get_info' && ret === 0) {
    const caps = (rec.caps as Record<string, unknown>[] | undefined) ?? [];
    const ranges = caps.find((c) => c.name === 'iova_range')?.iova_ranges as
      | { start: string; end: string }[]
      | undefined;
    answer += ` pgsizes ${rec.iova_pgsizes}`;
    if (ranges) answer += ` ranges ${ranges.map((r) => `[${r.start}, ${r.end}]`).join(' ')}`;
  }
  if (rec.op === 'group_get_status' && ret === 0) answer += ` flags ${rec.flags}`;
  if (rec.VmLck_kB !== undefined) answer += `   VmLck ${rec.VmLck_kB} kB`;
  return `${`${rec.op} ${args}`.padEnd(44)} -> ${answer}`;
}

export function demoCommand(argv: string[], out: Out, _err: Out): number {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { ...HOST_OPTION_SPEC, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    out.write(`${DEMO_HELP}\n`);
    return EXIT_OK;
  }
  const opts = hostOptionsFrom(values);
  const host = new Host(opts.host);
  const paint = painter(out);
  const text = readFileSync(TOUR, 'utf8');
  const p = new ProbeProcess(host, null, opts.probe);
  if (!values.json)
    out.write(
      paint(
        'bold',
        `vfio-nest: type-1 on a ${host.iommu.name} host, kernel ${host.profile.version} profile\n\n`,
      ),
    );
  for (const [i, raw] of text.split('\n').entries()) {
    const narration = /^#\s?(.*)$/.exec(raw);
    if (narration) {
      if (!values.json) out.write(paint('cyan', `${narration[1]}\n`));
      continue;
    }
    const lines = parseProbe(raw, `${TOUR}:${i + 1}`);
    if (lines.length === 0) continue;
    const before = p.out.length;
    p.runLine({ ...lines[0], line: i + 1 });
    const rec = p.out[before];
    if (values.json) out.write(`${JSON.stringify(rec)}\n`);
    else {
      const ok = (rec.ret as number) >= 0;
      out.write(`  ${paint(ok ? 'green' : 'yellow', describeRecord(rec))}\n`);
    }
  }
  p.exit();
  if (!values.json)
    out.write(`\nAfter exit: VmLck ${p.proc.status().VmLck_kB} kB, pinned pages ${p.proc.mm.pinnedPages}\n`);
  return EXIT_OK;
}
