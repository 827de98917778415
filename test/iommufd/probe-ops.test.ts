/**
 * The probe's iommufd op table (src/scenario/probe/ops.ts) against probe/iommufd_ops.inc itself: every
 * op the C file defines is in the table with the iommufd flag, and reads exactly the arguments the C
 * function (and the helpers it calls) reads with arg / argu / has / idx. The ops this project added to
 * its oracle copy (scripts/oracle/iommufd-raw-op.patch, its added lines) count as part of the file.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROBE_OPS } from '../../src/scenario/probe/ops.ts';

const INC = readFileSync(join(import.meta.dirname, '../kernel-answers/probe/iommufd_ops.inc'), 'utf8');

/** name -> body of every `static ... name(...) { ... }` function in the file. */
function functions(src: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /^static [^\n(]*?\b(\w+)\(([^)]*)\)\s*\n?\{/gm;
  for (let m = re.exec(src); m !== null; m = re.exec(src)) {
    let depth = 1;
    let i = m.index + m[0].length;
    while (depth > 0 && i < src.length) {
      if (src[i] === '{') depth++;
      else if (src[i] === '}') depth--;
      i++;
    }
    out.set(m[1], src.slice(m.index + m[0].length, i));
  }
  return out;
}

/** The C the patch adds: its '+' lines without the '+'. */
const LOCAL = readFileSync(join(import.meta.dirname, '../../scripts/oracle/iommufd-raw-op.patch'), 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('+') && !l.startsWith('+++'))
  .map((l) => l.slice(1))
  .join('\n');

const FUNCS = new Map([...functions(INC), ...functions(LOCAL)]);
const OFFICIAL = [...functions(INC).keys()].filter((f) => f.startsWith('op_'));

function argsRead(name: string, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  if (seen.has(name)) return out;
  seen.add(name);
  const body = FUNCS.get(name) ?? '';
  for (const m of body.matchAll(/\b(?:arg|argu|has|idx)\("(\w+)"/g)) out.add(m[1]);
  // op_raw builds its keys w0..w7 in a loop (`k[1] = '0' + i`), which the pattern above cannot see.
  if (/k\[1\] = \(char\)\('0' \+ i\)/.test(body)) for (let i = 0; i < 8; i++) out.add(`w${i}`);
  // Helpers of this file that the function calls.
  for (const [helper] of FUNCS)
    if (!helper.startsWith('op_') && new RegExp(`\\b${helper}\\(`).test(body))
      for (const a of argsRead(helper, seen)) out.add(a);
  return out;
}

const OPS = [...FUNCS.keys()].filter((f) => f.startsWith('op_')).map((f) => f.slice(3));

describe('probe ops = iommufd_ops.inc', () => {
  it('every op of the file is in the table, flagged iommufd (and the table has no other iommufd op)', () => {
    expect(OFFICIAL).toHaveLength(24);
    expect(OPS.filter((op) => !OFFICIAL.includes(`op_${op}`))).toEqual(['raw']);
    for (const op of OPS) expect(PROBE_OPS[op]?.iommufd, op).toBe(true);
    const flagged = Object.entries(PROBE_OPS)
      .filter(([, s]) => s.iommufd)
      .map(([k]) => k);
    expect(flagged.sort()).toEqual([...OPS].sort());
  });

  it.each(OPS)('%s reads the arguments the C function reads', (op) => {
    expect(Object.keys(PROBE_OPS[op].args).sort()).toEqual([...argsRead(`op_${op}`)].sort());
  });
});
