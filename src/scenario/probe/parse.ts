/**
 * The probe file format of kernel-answers/README.md, read exactly as probe/vfioprobe.c reads it:
 * one `op key=value ...` per line, `#` starts a comment, at most 24 arguments (more are ignored, as
 * the C program ignores them). Values are kept as written, because the output echoes them.
 * Unlike the C program, the model refuses a bad file before running anything: an unknown op, an
 * unknown or missing argument, or a number strtoull would misread gets one message naming the
 * file, line and field.
 */

import { PROBE_OPS } from './ops.ts';

/** A probe line: op name, arguments in the order written, and where it came from. */
export interface ProbeLine {
  op: string;
  args: [string, string][];
  file: string;
  line: number;
}

export class ProbeSyntaxError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string,
    message: string,
  ) {
    super(`${file}:${line}: ${field}: ${message}`);
    this.name = 'ProbeSyntaxError';
  }
}

const MAXKV = 24;
const NUMBER = /^[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/;

/** True when strtoull(v, NULL, 0) reads all of v (or v is inf/max/-1). */
export function isProbeNumber(v: string): boolean {
  return v === 'inf' || v === 'max' || NUMBER.test(v);
}

/** parse_u64: C literal (0x.., octal 0.., decimal, a sign wraps), or inf/max/-1 = ~0. */
export function parseU64(v: string): bigint {
  if (v === 'inf' || v === 'max' || v === '-1') return 0xffff_ffff_ffff_ffffn;
  let s = v;
  let neg = false;
  if (s.startsWith('+') || s.startsWith('-')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  let n: bigint;
  if (/^0[xX]/.test(s)) n = BigInt(s);
  else if (s.length > 1 && s.startsWith('0')) n = BigInt(`0o${s.slice(1)}`);
  else n = BigInt(s);
  n = BigInt.asUintN(64, n);
  return neg ? BigInt.asUintN(64, -n) : n;
}

export function parseProbe(text: string, file: string): ProbeLine[] {
  const out: ProbeLine[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const hash = lines[i].indexOf('#');
    const body = hash >= 0 ? lines[i].slice(0, hash) : lines[i];
    const toks = body.split(/[ \t\r]+/).filter((t) => t.length > 0);
    if (toks.length === 0) continue;
    const op = toks[0];
    const spec = PROBE_OPS[op];
    if (spec === undefined)
      throw new ProbeSyntaxError(file, lineNo, 'op', `unknown op '${op}'${suggest(op)}`);
    const args: [string, string][] = [];
    for (const tok of toks.slice(1, 1 + MAXKV)) {
      const eq = tok.indexOf('=');
      const k = eq < 0 ? tok : tok.slice(0, eq);
      const v = eq < 0 ? '' : tok.slice(eq + 1);
      const kind = spec.args[k];
      if (kind === undefined)
        throw new ProbeSyntaxError(
          file,
          lineNo,
          k,
          `'${op}' takes no argument '${k}' (it takes: ${Object.keys(spec.args).join(', ') || 'none'})`,
        );
      if (kind === 'number' && !isProbeNumber(v))
        throw new ProbeSyntaxError(
          file,
          lineNo,
          k,
          `'${v}' is not a number (C literal like 0x1000 or 4096, or inf/max/-1)`,
        );
      args.push([k, v]);
    }
    for (const req of spec.required ?? [])
      if (!args.some(([k]) => k === req))
        throw new ProbeSyntaxError(file, lineNo, req, `'${op}' needs ${req}=`);
    out.push({ op, args, file, line: lineNo });
  }
  return out;
}

function suggest(op: string): string {
  let best = '';
  let bestD = 3;
  for (const name of Object.keys(PROBE_OPS)) {
    // Case does not count: OPEN_CONTAINER is one step from open_container, not fourteen.
    const d = editDistance(op.toLowerCase(), name);
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best ? ` (did you mean '${best}'?)` : '';
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      dp[i][j] = Math.min(
        dp[i - 1][j] + 1,
        dp[i][j - 1] + 1,
        dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return dp[a.length][b.length];
}
