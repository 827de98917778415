/**
 * `vfio-nest walk [FILE]`: explain one translation on the state a scenario leaves, read by read.
 * By default the scenario is the demo, stopped at its `walk` step, whose address is the default.
 */

import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { readAtText, type Scenario, ScenarioRunner, translatingText } from '../scenario/index.ts';
import { isProbeNumber, parseU64 } from '../scenario/probe/parse.ts';
import { type ExplainedRead, type ExplainedWalk, explainWalk } from '../smmu/index.ts';
import { loadFiles } from './run.ts';
import { EXIT_OK, type Out, painter, UsageError } from './style.ts';

/** A scenario of examples/ (the demo's by default), named relative to the working directory as messages show it. */
export function exampleScenario(name = 'demo.yaml'): string {
  const path = join(import.meta.dirname, '../../examples', name);
  return relative(process.cwd(), path) || path;
}

export const WALK_HELP = `Usage: vfio-nest walk [FILE] [--iova ADDR] [--write] [--sid N] [--ssid N] [--at STEP] [--json]

Explains one SMMUv3 translation: every read in order — the STE and CD fetches (with the stage-2 walks
that find a CD), then the table walk, each descriptor decoded — and the result or the event record.
The state is what FILE's steps leave (default: the demo, examples/demo.yaml). Without --at, the steps
run up to FILE's first walk step, whose iova, access and sid are the defaults.

  --iova ADDR   the input address (device VA for stage 1)
  --write       a write access (default: read)
  --sid N       StreamID (default: the device's)
  --ssid N      SubstreamID (default: none)
  --at STEP     run steps before index STEP only (0-based, as \`vfio-nest run\` numbers them)
  --json        the explanation as one JSON object

Example:
  vfio-nest walk                                  # the 24 reads of the demo's nested miss
  vfio-nest walk examples/12-nested-faults.yaml --iova 0x3000000 --write`;

const hex = (v: number): string => `0x${v.toString(16)}`;

function number(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!isProbeNumber(v)) throw new UsageError(`--${name}: '${v}' is not a number (like 0x1000 or 4096)`);
  const n = parseU64(v);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new UsageError(`--${name}: ${v} is too large`);
  return Number(n);
}

/** Runs `sc` up to `stop` (exclusive) and returns the runner (its host holds the state). */
function runTo(sc: Scenario, stop: number): ScenarioRunner {
  const runner = new ScenarioRunner(sc);
  for (const step of sc.steps.slice(0, stop)) runner.runStep(step);
  return runner;
}

function row(r: ExplainedRead, paint: ReturnType<typeof painter>): string {
  const n = r.n ? String(r.n).padStart(3) : '   ';
  const level = r.level === null ? '  ' : `L${r.level}`;
  const input = translatingText(r);
  const at = readAtText(r);
  const style = r.kind === 's1' ? 'cyan' : r.kind === 's2' ? 'yellow' : 'magenta';
  return `${n}  ${paint(style, r.label.padEnd(6))} ${level}  ${input.padEnd(18)} ${at.padEnd(38)} ${r.value}  ${r.meaning}`;
}

/** The human explanation, shared with the demo. */
export function formatWalk(x: ExplainedWalk, out: Out): string[] {
  const paint = painter(out);
  const lines: string[] = [];
  const s1 = x.walk.filter((r) => r.kind === 's1').length;
  const s2 = x.walk.length - s1;
  lines.push(
    paint(
      'dim',
      `  #  read   lvl  ${'translating'.padEnd(18)} ${'descriptor at'.padEnd(38)} ${'value'.padEnd(18)}  meaning`,
    ),
  );
  lines.push(paint('bold', 'Configuration'));
  for (const r of x.config) lines.push(row(r, paint));
  // A full nested miss of n1 stage-1 and n2 stage-2 levels reads (n1 + 1)(n2 + 1) - 1 descriptors
  // (nested-iommu.md §3.3); say so when this walk has that shape.
  const n2 = s2 / (s1 + 1);
  const shape = s1 > 0 && Number.isInteger(n2) && n2 > 0 ? ` = (${s1} + 1) x (${n2} + 1) - 1` : '';
  lines.push(
    paint(
      'bold',
      `Table walk: ${x.walk.length} reads${s1 > 0 && s2 > 0 ? `, ${s1} stage 1 and ${s2} stage 2${shape}` : ''}`,
    ),
  );
  for (const r of x.walk) lines.push(row(r, paint));
  if (x.event === null)
    lines.push(
      paint('green', `Result: PA ${hex(x.pa)}${x.ipa >= 0 && x.ipa !== x.pa ? ` (IPA ${hex(x.ipa)})` : ''}`),
    );
  else {
    const e = x.event;
    lines.push(
      paint(
        'red',
        `Fault: ${e.name} (0x${e.type.toString(16).padStart(2, '0')}) S2=${e.s2} CLASS=${e.cls} RnW=${e.rnw} InputAddr=${hex(e.inputAddr)} IPA=${hex(e.ipa)}${e.silent ? ' — not recorded (CD.R/STE.S2R clear)' : ''}`,
      ),
    );
    lines.push(`Event record: ${e.words.join(' ')}`);
  }
  return lines;
}

export function walkCommand(argv: string[], out: Out): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      iova: { type: 'string' },
      write: { type: 'boolean' },
      sid: { type: 'string' },
      ssid: { type: 'string' },
      at: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out.write(`${WALK_HELP}\n`);
    return EXIT_OK;
  }
  if (positionals.length > 1) throw new UsageError('one scenario file at most');
  const [sc] = loadFiles([positionals[0] ?? exampleScenario()]);
  const at = number('at', values.at);
  if (at !== undefined && at > sc.steps.length)
    throw new UsageError(`--at ${at}: ${sc.file} has ${sc.steps.length} steps`);
  const walkStep = sc.steps.find((s) => s.spec.kind === 'walk' && (at === undefined || s.index >= at));
  const stop = at ?? walkStep?.index ?? sc.steps.length;
  const defaults =
    walkStep && walkStep.index === stop && walkStep.spec.kind === 'walk' ? walkStep.spec.body : {};
  const iova = number('iova', values.iova) ?? (defaults.iova as number | undefined);
  if (iova === undefined)
    throw new UsageError(`--iova is needed: ${sc.file} has no walk step to take it from`);
  const runner = runTo(sc, stop);
  const smmu = runner.host.smmu;
  if (smmu === null)
    throw new UsageError(`${sc.file}: the host's IOMMU is ${runner.host.iommu.name}, not an SMMUv3`);
  const sid = number('sid', values.sid) ?? (defaults.sid as number | undefined) ?? runner.host.devices[0].rid;
  const ssid = number('ssid', values.ssid) ?? -1;
  const write = values.write ?? defaults.access === 'write';
  const x = explainWalk(smmu, sid, ssid, iova, write);
  runner.finish();
  if (values.json) {
    out.write(`${JSON.stringify({ file: sc.file, after_step: stop - 1, ...x })}\n`);
    return EXIT_OK;
  }
  const paint = painter(out);
  out.write(
    `${paint('bold', `${write ? 'Write' : 'Read'} of ${hex(iova)} by StreamID ${hex(sid)}${ssid >= 0 ? ` SubstreamID ${ssid}` : ''}`)} — ${sc.file} after step ${stop - 1}, kernel ${runner.host.profile.version}\n`,
  );
  for (const l of formatWalk(x, out)) out.write(`${l}\n`);
  return EXIT_OK;
}
