/**
 * `vfio-nest demo` (= `npm start`): the nested story, narrated. It runs examples/demo.yaml on the
 * model and shows, for each step, what the VMM asked the kernel (every ioctl and its answer), what
 * happened, and the rule that decided it. `--kernel` replays the story on another kernel profile.
 */

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import {
  collapseIoctls,
  describeAnswer,
  describeRequest,
  type IoctlCall,
  recordIoctls,
  ScenarioRunner,
} from '../scenario/index.ts';
import { explainWalk } from '../smmu/index.ts';
import { KERNEL_VERSIONS, type KernelVersion } from '../uapi/profile.ts';
import { loadFiles } from './run.ts';
import { EXIT_FAILED, EXIT_OK, type Out, painter, UsageError } from './style.ts';
import { exampleScenario, formatWalk } from './walk.ts';

export const DEMO_HELP = `Usage: vfio-nest demo [--kernel 3.19|6.1|6.12|6.18 | --iommufd] [--step] [--json]

The story of nested translation on an SMMUv3 host (examples/demo.yaml): a VMM assigns a device with
VFIO type 6, maps guest RAM (stage 2), the guest programs stage 1 through its virtual SMMU, the device
moves bytes through both stages, a stage-1 fault reaches the guest while a stage-2 fault stays with the
host, the guest invalidates a stale entry, the VMM unmaps. Each step shows its ioctls, the model's
answer and the rule (kernel source or SMMUv3 section) that decided it.

  --kernel V   replay on another kernel profile (default 6.1, where type 6 works on SMMUv3):
               6.12 refuses type 6 with EPERM, 6.18 no longer has it (ENODEV)
  --iommufd    the same story through iommufd, the path that replaced type 6 (6.18 built with
               IOMMUFD=y; examples/demo-iommufd.yaml)
  --step       wait for Enter before each step
  --json       one JSON object per step: the record, its ioctls, say and rule

Example:
  vfio-nest demo --kernel 6.12`;

/** Why the VMM could not get a nesting container, by the errno it got. */
const WHY_NOT: Record<string, string> = {
  EPERM:
    'arm-smmu-v3 enables nesting only on a domain not yet bound to an SMMU, and since about 6.11 VFIO allocates the paging domain for the device, finalised at once: type 6 fails on every SMMUv3 from then until its removal (recorded on 6.12; vfio-type1.md §6).',
  ENODEV:
    'Linux 6.13 removed VFIO_TYPE1_NESTING_IOMMU (commit 35890f85573c): CHECK_EXTENSION(6) answers 0 and no IOMMU backend accepts type 6, so VFIO_SET_IOMMU is ENODEV. Nesting moved to iommufd: `vfio-nest demo --iommufd` tells the same story that way (docs/iommufd.md).',
  EINVAL:
    'this IOMMU driver has no enable_nesting hook, so the type-1 backend cannot put its domain in nesting mode (vfio-type1.md §6).',
};

function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width - indent.length) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines.join('\n');
}

/** Resolves on each line of `input`; once input has ended, resolves at once. */
function lineWaiter(input: NodeJS.ReadableStream): { next: () => Promise<void>; close: () => void } {
  const rl = createInterface({ input });
  const it = rl[Symbol.asyncIterator]();
  let ended = false;
  return {
    next: async () => {
      if (!ended) ended = (await it.next()).done === true;
    },
    close: () => rl.close(),
  };
}

export async function demoCommand(
  argv: string[],
  out: Out,
  err: Out,
  input: NodeJS.ReadableStream = process.stdin,
): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      kernel: { type: 'string' },
      iommufd: { type: 'boolean' },
      step: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out.write(`${DEMO_HELP}\n`);
    return EXIT_OK;
  }
  if (values.iommufd && values.kernel !== undefined && values.kernel !== '6.18')
    throw new UsageError('--iommufd: iommufd nesting is modelled on 6.18 only');
  const [sc] = loadFiles([exampleScenario(values.iommufd ? 'demo-iommufd.yaml' : 'demo.yaml')]);
  const kernel = values.kernel ?? sc.host.kernel;
  if (!(KERNEL_VERSIONS as readonly string[]).includes(kernel as string))
    throw new UsageError(`--kernel: '${kernel}' is not one of ${KERNEL_VERSIONS.join(', ')}`);
  // The story's expectations are 6.1's; on another kernel the answers are shown, not judged.
  const judged = kernel === sc.host.kernel;
  const runner = new ScenarioRunner({ ...sc, host: { ...sc.host, kernel: kernel as KernelVersion } });
  const calls: IoctlCall[] = [];
  recordIoctls(runner.host, calls);
  const paint = painter(out);
  const width = Math.min((out as { columns?: number }).columns ?? 100, 100);
  const waiter = values.step ? lineWaiter(input) : null;
  let failed = 0;
  if (!values.json) {
    out.write(paint('bold', `vfio-nest demo: ${sc.description ?? sc.name} (kernel ${kernel} profile)\n`));
    out.write(
      paint('dim', `(${sc.file}; every answer below is the model's, checked against real kernels)\n`),
    );
  }
  try {
    for (const step of sc.steps) {
      if (waiter !== null && step.index > 0) {
        err.write(paint('dim', '  [Enter] '));
        await waiter.next();
      }
      calls.length = 0;
      const r = runner.runStep(step);
      const error = r.record.error as string | undefined;
      const failures = judged ? r.failures : [];
      if (failures.length > 0) failed++;
      if (values.json) {
        out.write(
          `${JSON.stringify({ step: step.index, line: step.line, say: step.say, rule: step.rule, ...r.record, ioctls: calls.map(({ fd, name, ret }) => ({ fd, ioctl: name, ret })), expect_ok: failures.length === 0, failures })}\n`,
        );
      } else {
        if (step.say) out.write(`\n${paint('cyan', wrap(step.say, width, ''))}\n`);
        for (const c of collapseIoctls(calls))
          out.write(
            paint('dim', `    ioctl(${c.fd}, ${c.name}) = ${c.ret}${c.count > 1 ? `   x${c.count}` : ''}\n`),
          );
        const mark = !judged ? ' ' : failures.length === 0 ? paint('green', '✓') : paint('red', '✗');
        out.write(`  ${mark} ${describeRequest(step)} -> ${describeAnswer(r.record)}\n`);
        for (const f of failures) out.write(paint('red', `      expected otherwise: ${f}\n`));
        if (step.spec.kind === 'walk' && runner.host.smmu !== null && error === undefined) {
          const b = step.spec.body;
          const x = explainWalk(
            runner.host.smmu,
            runner.host.devices[0].rid,
            -1,
            b.iova as number,
            b.access === 'write',
          );
          for (const l of formatWalk(x, out)) out.write(`    ${l}\n`);
        }
        if (step.rule && error === undefined)
          out.write(paint('dim', `${wrap(`rule: ${step.rule}`, width, '    ')}\n`));
      }
      if (error !== undefined) {
        const errno = /: (E[A-Z]+)$/.exec(error)?.[1] ?? '';
        const why = WHY_NOT[errno] ?? 'the rest of the story needs a nesting container.';
        if (!values.json) {
          out.write(`\n${paint('yellow', wrap(`On ${kernel} the story stops here: ${why}`, width, ''))}\n`);
          out.write(`Try \`vfio-nest demo\` (6.1) or \`vfio-nest run examples/14-type6-6.12.yaml\`.\n`);
        }
        break;
      }
    }
  } finally {
    waiter?.close();
    runner.finish();
  }
  if (!values.json) {
    out.write(
      `\n${paint('bold', 'Next:')} \`vfio-nest walk\` explains the nested miss read by read; \`vfio-nest run examples/*.yaml\` runs every scenario; docs/scenarios.md writes your own.\n`,
    );
  }
  return failed === 0 ? EXIT_OK : EXIT_FAILED;
}
