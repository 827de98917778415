/**
 * Loading recordings and comparing a model's probe output with them, by the rule of
 * kernel-answers/README.md: only lines with a `seq`, matched by (file index, seq); every field but
 * the timing fields and `scenario` must be equal.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const TIMING_FIELDS = ['us', 'ms', 'elapsed_ms', 'us_per_op'];

/** test/kernel-answers: the recordings of the real kernels (kernel-answers/README.md). */
export const KERNEL_ANSWERS = join(import.meta.dirname, '../kernel-answers');

export interface Recording {
  config: string;
  file: string;
  env: Record<string, string>;
  /** Scenario file names in run order (without the NN- prefix). */
  scenarios: string[];
  /** Per scenario index, the seq lines. */
  lines: Record<string, unknown>[][];
  /** Per scenario index, the SMMU event words the kernel logged (oracle_log_run), when present. */
  logs: (string[] | undefined)[];
}

export function loadRecording(dir: string, config: string, file: string): Recording {
  const rec: Recording = { config, file, env: {}, scenarios: [], lines: [], logs: [] };
  for (const raw of readFileSync(join(dir, config, file), 'utf8').split('\n')) {
    if (raw.trim() === '') continue;
    const obj = JSON.parse(raw) as Record<string, unknown>;
    if (obj.oracle_env) rec.env = obj.oracle_env as Record<string, string>;
    if (typeof obj.oracle_log_run === 'string') {
      const idx = rec.scenarios.indexOf(stripPrefix(obj.oracle_log_run));
      if (idx >= 0) rec.logs[idx] = obj.lines as string[];
    }
    if (obj.seq === undefined) continue;
    const scen = stripPrefix(obj.scenario as string);
    let idx = rec.scenarios.lastIndexOf(scen);
    if (idx < 0 || (obj.seq as number) === 0) {
      rec.scenarios.push(scen);
      rec.lines.push([]);
      idx = rec.scenarios.length - 1;
    }
    rec.lines[idx].push(obj);
  }
  return rec;
}

function stripPrefix(s: string): string {
  return s.replace(/^\d+-/, '');
}

/** A line without the fields the comparison ignores. */
export function comparable(line: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(line)) if (!TIMING_FIELDS.includes(k) && k !== 'scenario') out[k] = v;
  return out;
}

/** Every recording under `root`: [config, file] pairs for directories that hold *.jsonl files. */
export function listRecordings(root: string): [string, string][] {
  if (!existsSync(root)) return [];
  const out: [string, string][] = [];
  for (const config of readdirSync(root, { withFileTypes: true })) {
    if (!config.isDirectory()) continue;
    for (const f of readdirSync(join(root, config.name)))
      if (f.endsWith('.jsonl')) out.push([config.name, f]);
  }
  return out.sort();
}

/** The SMMU event records in a kernel log: `event 0xNN received:` then four 64-bit words. */
export function eventsFromLog(lines: string[]): { type: string; words: string[] }[] {
  const out: { type: string; words: string[] }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (/callbacks suppressed/.test(lines[i])) break;
    const m = /event (0x[0-9a-f]+) received:/.exec(lines[i]);
    if (m === null) continue;
    const words: string[] = [];
    for (let j = 1; j <= 4 && i + j < lines.length; j++) {
      const w = /\s(0x[0-9a-f]{16})\s*$/.exec(lines[i + j]);
      if (w) words.push(w[1]);
    }
    out.push({ type: m[1], words });
    i += 4;
  }
  return out;
}
