/**
 * `vfio-nest run FILE...`: run scenario files with their expectations.
 * Exit 0: every expectation held; 1: one failed; 2: a file is bad (nothing runs then).
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  describeAnswer,
  describeRequest,
  loadScenario,
  type Scenario,
  ScenarioError,
  ScenarioRunner,
} from '../scenario/index.ts';
import { EXIT_FAILED, EXIT_OK, type Out, painter, UsageError } from './style.ts';

export const RUN_HELP = `Usage: vfio-nest run FILE... [--json] [--bail]

Runs scenario files (YAML or JSON; docs/scenarios.md): a host, processes and steps, each step a
probe operation or a typed step (vmm, guest_map, dma, events, walk, ...) with an optional expect.
Every file is checked first: a bad file stops everything with its file:line:col and field (exit 2).

  --json   one JSON object per step (the probe's line for probe steps) with expect_ok and failures
  --bail   stop a file at its first failed expectation

Exit status: 0 every expectation held, 1 one failed, 2 bad input.

Example:
  vfio-nest run examples/*.yaml`;

/** `[#######.............] 3/18 files`: progress through the files, by steps within the current one. */
function bar(file: number, step: number, steps: number, files: number): string {
  const width = 20;
  const done = Math.floor(((file + step / steps) / files) * width);
  return `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${file + 1}/${files} files`;
}

export function loadFiles(paths: string[]): Scenario[] {
  return paths.map((path) => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new UsageError(`${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    try {
      return loadScenario(text, path);
    } catch (e) {
      if (e instanceof ScenarioError) throw new UsageError(e.message);
      throw e;
    }
  });
}

export function runCommand(argv: string[], out: Out, err: Out): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { json: { type: 'boolean' }, bail: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    out.write(`${RUN_HELP}\n`);
    return EXIT_OK;
  }
  if (positionals.length === 0) throw new UsageError('no scenario file given (see vfio-nest run --help)');
  const scenarios = loadFiles(positionals);
  const paint = painter(out);
  const start = Date.now();
  // Output on the terminal already shows progress; the bar is for output going to a file or pipe.
  const progress = err.isTTY === true && out.isTTY !== true;
  let failed = 0;
  let steps = 0;
  for (const [fi, sc] of scenarios.entries()) {
    const runner = new ScenarioRunner(sc);
    if (!values.json) out.write(paint('bold', `${sc.file}${sc.description ? ` — ${sc.description}` : ''}\n`));
    let fileFailed = false;
    for (const r of runner.run()) {
      steps++;
      const ok = r.failures.length === 0;
      if (values.json) {
        out.write(
          `${JSON.stringify({ file: sc.file, step: r.step.index, line: r.step.line, ...r.record, expect_ok: ok, failures: r.failures })}\n`,
        );
      } else {
        const mark = ok ? paint('green', '✓') : paint('red', '✗');
        out.write(
          `  ${mark} ${String(r.step.index).padStart(2)}  ${describeRequest(r.step).padEnd(46)} -> ${describeAnswer(r.record)}\n`,
        );
        for (const f of r.failures) out.write(paint('red', `        ${sc.file}:${r.step.line}: ${f}\n`));
      }
      if (!ok) {
        failed++;
        fileFailed = true;
        if (values.bail) break;
      }
      if (progress && Date.now() - start > 1000)
        err.write(`\r${bar(fi, r.step.index + 1, sc.steps.length, scenarios.length)} ${steps} steps`);
    }
    runner.finish();
    if (!values.json && fileFailed) out.write(paint('red', `  ${sc.file}: expectations failed\n`));
  }
  if (progress && Date.now() - start > 1000) err.write('\r\x1b[K');
  if (!values.json)
    out.write(
      failed === 0
        ? paint('green', `${scenarios.length} file(s), ${steps} steps: every expectation held\n`)
        : paint('red', `${scenarios.length} file(s), ${steps} steps: ${failed} expectation(s) failed\n`),
    );
  return failed === 0 ? EXIT_OK : EXIT_FAILED;
}
