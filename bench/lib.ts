/**
 * What every benchmark shares: figures (a measured value, the baseline it is compared with in the
 * same process and run, the ratio, the target and pass/fail), timing that resists noise, and a
 * smoke mode in which each benchmark runs its work once, for correctness, with no timing judged.
 *
 * Machines here are noisy, so a time alone is never judged when a baseline can be measured: a figure
 * and its baseline are measured alternately over several rounds and the medians are compared.
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { do_not_optimize, measure } from 'mitata';

export { do_not_optimize };

export interface Baseline {
  name: string;
  value: number;
  unit: string;
}

export interface Figure {
  /** Stable identifier, e.g. `map-dma.intel`. */
  id: string;
  /** What was measured, for a human. */
  name: string;
  value: number;
  unit: string;
  baseline?: Baseline;
  /** value / baseline.value (or as the target defines it). */
  ratio?: number;
  /** The target in words, e.g. "<= 3x baseline". Absent for figures reported for information. */
  target?: string;
  /** Whether the target was met; null when there is no target or in smoke mode. */
  pass: boolean | null;
  /** Anything else worth printing: hit rates, counts, heap growth. */
  notes?: Record<string, number | string>;
}

export interface BenchContext {
  /** Run each piece of work once (or at a small size) and judge nothing: the test suite's mode. */
  smoke: boolean;
  figures: Figure[];
  /** Progress lines (stderr in JSON mode). */
  log(line: string): void;
}

export function newContext(smoke: boolean, log: (line: string) => void = () => {}): BenchContext {
  return { smoke, figures: [], log };
}

/** Records a figure; `pass` is forced to null in smoke mode. */
export function record(ctx: BenchContext, f: Figure): Figure {
  if (ctx.smoke) f.pass = null;
  ctx.figures.push(f);
  return f;
}

/** A bench setup or result that is wrong: the benchmark measures nothing meaningful. */
export function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench check failed: ${what}`);
}

let gcFn: ((o?: { type: 'major' | 'minor' }) => void) | undefined;

function gc(): (o?: { type: 'major' | 'minor' }) => void {
  if (gcFn === undefined) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as (o?: { type: 'major' | 'minor' }) => void;
  }
  return gcFn;
}

/** A full garbage collection (exposed at run time, so `tsx bench/run.ts` needs no flag). */
export function collectGarbage(): void {
  gc()();
}

/**
 * A young-generation collection: before a timed batch, so no batch pays for the garbage of the work
 * before it (a forced full collection is worse: the next short batch runs slower after it).
 */
export function collectYoung(): void {
  gc()({ type: 'minor' });
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nanoseconds since an arbitrary origin. */
export function nowNs(): number {
  return Number(process.hrtime.bigint());
}

/**
 * Median time per call of `fn` in nanoseconds (mitata's p50 of its batched samples). In smoke mode
 * `fn` runs once and the time is that one call.
 */
export async function timePerCall(ctx: BenchContext, fn: () => unknown, cpuMs = 250): Promise<number> {
  if (ctx.smoke) {
    const t0 = nowNs();
    do_not_optimize(fn());
    return nowNs() - t0;
  }
  const s = await measure(fn, { min_cpu_time: cpuMs * 1e6 });
  return s.p50;
}

/**
 * Measures a figure and its baseline alternately, `rounds` times each (ns per call): the medians of
 * both, and the median of the per-round ratios. A round's two measurements are back to back, so a
 * change in the machine's speed (other jobs on a shared host) hits both alike.
 */
export async function pair(
  ctx: BenchContext,
  fn: () => unknown,
  base: () => unknown,
  rounds = 7,
): Promise<{ value: number; baseline: number; ratio: number }> {
  const a: number[] = [];
  const b: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < (ctx.smoke ? 1 : rounds); i++) {
    const x = await timePerCall(ctx, fn, 100);
    const y = await timePerCall(ctx, base, 100);
    a.push(x);
    b.push(y);
    r.push(x / y);
  }
  return { value: median(a), baseline: median(b), ratio: median(r) };
}

/** Heap in use (JS heap and array buffers) after a full collection, in bytes. */
export function heapBytes(): number {
  collectGarbage();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
export const TiB = 2 ** 40;

/** Formats nanoseconds with a unit that keeps 3-4 significant digits. */
export function fmtNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(3)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(1)} ns`;
}
