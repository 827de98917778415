/**
 * `npm run bench`: every benchmark, each figure beside the baseline measured in the same run, the
 * ratio, the target and whether it was met.
 *
 *   npm run bench                      a table for humans
 *   npm run bench -- --json            one JSON object on stdout (progress on stderr)
 *   npm run bench -- --only map,huge   some suites: translate, map, huge, probe
 *   npm run bench -- --strict          exit status 1 when a target is missed
 *
 * Times are never judged alone where a baseline can be measured (these machines are noisy); the test
 * suite runs every benchmark once in smoke mode (test/bench.test.ts) and judges no time at all.
 */

import { parseArgs } from 'node:util';
import { benchHuge } from './huge.ts';
import { type BenchContext, type Figure, fmtNs, newContext } from './lib.ts';
import { benchMap } from './map.ts';
import { benchProbe } from './probe.ts';
import { benchTranslate } from './translate.ts';

export const SUITES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  translate: benchTranslate,
  map: benchMap,
  huge: benchHuge,
  probe: benchProbe,
};

/** Runs the named suites (all by default) and returns the context holding their figures. */
export async function runBench(
  names: string[] = Object.keys(SUITES),
  smoke = false,
  log: (line: string) => void = () => {},
): Promise<BenchContext> {
  const ctx = newContext(smoke, log);
  for (const name of names) {
    const suite = SUITES[name];
    if (suite === undefined)
      throw new Error(`unknown suite '${name}' (known: ${Object.keys(SUITES).join(', ')})`);
    log(`${name}...`);
    await suite(ctx);
  }
  return ctx;
}

function fmtValue(f: { value: number; unit: string }): string {
  return f.unit === 'ns' ? fmtNs(f.value) : `${f.value} ${f.unit}`;
}

function table(figures: Figure[]): string {
  const rows = figures.map((f) => [
    f.pass === null ? ' ' : f.pass ? 'ok' : 'MISS',
    f.name,
    fmtValue(f),
    f.baseline ? `${fmtValue(f.baseline)}  (${f.baseline.name})` : '',
    f.ratio !== undefined ? `${f.ratio.toFixed(2)}x` : '',
    f.target ?? '',
    f.notes
      ? Object.entries(f.notes)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')
      : '',
  ]);
  const out: string[] = [];
  for (const r of rows) {
    out.push(`${r[0].padEnd(4)} ${r[1]}`);
    out.push(`       ${r[2]}${r[3] ? `   vs ${r[3]}` : ''}${r[4] ? `   ratio ${r[4]}` : ''}`);
    if (r[5]) out.push(`       target: ${r[5]}`);
    if (r[6]) out.push(`       ${r[6]}`);
  }
  return out.join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      only: { type: 'string' },
      strict: { type: 'boolean', default: false },
    },
  });
  const names = values.only ? values.only.split(',') : Object.keys(SUITES);
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const started = Date.now();
  const ctx = await runBench(names, false, log);
  const missed = ctx.figures.filter((f) => f.pass === false);
  if (values.json) {
    const out = {
      node: process.version,
      arch: process.arch,
      date: new Date(started).toISOString(),
      seconds: (Date.now() - started) / 1e3,
      figures: ctx.figures,
      missed: missed.map((f) => f.id),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    console.log(`vfio-nest benchmarks (${process.version}, ${process.arch})\n`);
    console.log(table(ctx.figures));
    const judged = ctx.figures.filter((f) => f.pass !== null).length;
    console.log(
      `\n${judged - missed.length} of ${judged} targets met${missed.length ? `; missed: ${missed.map((f) => f.id).join(', ')}` : ''}`,
    );
  }
  return values.strict && missed.length > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main();
