/**
 * `vfio-nest probe FILE...`: run probe files (kernel-answers/README.md format) against a modelled
 * host and print the JSON lines the real probe prints on a real kernel.
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { HostConfigError } from '../host/host.ts';
import { ProbeSyntaxError, runProbeFiles } from '../scenario/probe/index.ts';
import { HOST_OPTION_HELP, HOST_OPTION_SPEC, hostConfigMessage, hostOptionsFrom } from './host-options.ts';
import { EXIT_OK, type Out, UsageError } from './style.ts';

export const PROBE_HELP = `Usage: vfio-nest probe FILE... [options]

Runs probe files (the format of kernel-answers/README.md) against the model and prints one JSON
line per operation, exactly as probe/vfioprobe.c prints them on a real kernel. Each file runs in a
fresh process on the same host.

${HOST_OPTION_HELP}
  --local-ops          the probe has this project's local ops (dev_raw, dev_rw, dirty, fill_fds,
                       write_file/read_file on x86: scripts/oracle/x86-local-ops.patch); without it
                       they answer as unknown, as the shared probe does

Examples:
  vfio-nest probe test/kernel-answers/scenarios/d-nesting.txt --kernel 6.1 --iommu intel
  vfio-nest probe my.txt --config 6.12-virtio
  vfio-nest probe my.txt --iommu virtio --param vfio_iommu_type1.allow_unsafe_interrupts=1
  vfio-nest probe test/oracle/local-probes/y6-device-api.txt --config 6.12-intel --local-ops`;

export function probeCommand(argv: string[], out: Out): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { ...HOST_OPTION_SPEC, 'local-ops': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    out.write(`${PROBE_HELP}\n`);
    return EXIT_OK;
  }
  if (positionals.length === 0) throw new UsageError('no probe file given (see vfio-nest probe --help)');
  const opts = hostOptionsFrom(values);
  const files = positionals.map((name) => {
    try {
      return { name, text: readFileSync(name, 'utf8') };
    } catch (e) {
      throw new UsageError(`${name}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  });
  try {
    for (const r of runProbeFiles(files, opts.host, {
      ...opts.probe,
      localOps: values['local-ops'] === true,
    })) {
      for (const line of r.lines) out.write(`${JSON.stringify(line)}\n`);
      if (r.smmuEvents !== undefined) out.write(`${JSON.stringify({ smmu_events: r.smmuEvents })}\n`);
    }
  } catch (e) {
    if (e instanceof ProbeSyntaxError) throw new UsageError(e.message);
    if (e instanceof HostConfigError) throw new UsageError(hostConfigMessage(e));
    throw e;
  }
  return EXIT_OK;
}
