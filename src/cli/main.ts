#!/usr/bin/env node

/**
 * The vfio-nest command line: a thin layer over the library.
 */

import { DEMO_HELP, demoCommand } from './demo.ts';
import { PROBE_HELP, probeCommand } from './probe.ts';
import { RUN_HELP, runCommand } from './run.ts';
import { SERVE_HELP, serveCommand } from './serve.ts';
import { EXIT_OK, EXIT_USAGE, type Out, UsageError } from './style.ts';
import { WALK_HELP, walkCommand } from './walk.ts';

const VERSION = '0.1.0';

const HELP = `vfio-nest ${VERSION}: Linux VFIO type-1 (v1, v2, nesting), the IOMMU core and a nested SMMUv3,
as an executable model exact to real kernels.

Usage: vfio-nest <command> [options]

Commands:
  demo      a narrated tour (what \`npm start\` runs)
  run       run scenario files with their expectations
  probe     run probe files and print the kernel's JSON lines
  walk      explain one SMMUv3 translation read by read (the demo's nested miss by default)
  serve     the model behind a Unix socket, for real programs (LD_PRELOAD interposer)

Run \`vfio-nest <command> --help\` for a command's options and examples.`;

const COMMANDS: Record<
  string,
  { run: (argv: string[], out: Out, err: Out) => number | Promise<number>; help: string }
> = {
  probe: { run: (argv, out) => probeCommand(argv, out), help: PROBE_HELP },
  demo: { run: (argv, out, err) => demoCommand(argv, out, err), help: DEMO_HELP },
  run: { run: (argv, out, err) => runCommand(argv, out, err), help: RUN_HELP },
  walk: { run: (argv, out) => walkCommand(argv, out), help: WALK_HELP },
  serve: { run: (argv, out, err) => serveCommand(argv, out, err), help: SERVE_HELP },
};

export async function main(argv: string[], out: Out, err: Out): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    err.write(`${HELP}\n`);
    return EXIT_USAGE;
  }
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out.write(`${HELP}\n`);
    return EXIT_OK;
  }
  if (cmd === '--version' || cmd === '-V') {
    out.write(`${VERSION}\n`);
    return EXIT_OK;
  }
  const c = COMMANDS[cmd];
  if (c === undefined) {
    const near = Object.keys(COMMANDS).find((k) => k.startsWith(cmd.slice(0, 2)));
    err.write(`vfio-nest: unknown command '${cmd}'${near ? ` (did you mean '${near}'?)` : ''}\n`);
    return EXIT_USAGE;
  }
  try {
    return await c.run(rest, out, err);
  } catch (e) {
    if (
      e instanceof UsageError ||
      (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))
    ) {
      err.write(`vfio-nest ${cmd}: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli/main.ts')) {
  // `vfio-nest run --json | head`: a closed pipe ends the output, not in a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
  const code = await main(process.argv.slice(2), process.stdout, process.stderr);
  process.exitCode = code;
}
