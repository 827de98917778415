/**
 * One human line per step: what was asked and what the model answered (the CLI's and the playground's).
 */

import type { Host } from '../host/host.ts';
import { errnoName } from '../uapi/errno.ts';
import { ioctlName } from '../uapi/names.ts';
import type { ProbeRecord } from './probe/runner.ts';
import type { Step } from './schema.ts';

const hex = (v: number): string => `0x${v.toString(16)}`;

/** Request fields are addresses and sizes: hex from 10 up, as the kernel prints them. */
function requestValue(v: unknown): string {
  return typeof v === 'number' && Number.isInteger(v) && v > 9 ? `0x${v.toString(16)}` : value(v);
}

function value(v: unknown): string {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (Array.isArray(v)) return `[${v.map(value).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${value(x)}`)
      .join(', ')}}`;
  return String(v);
}

/** `map iova=0x100000 size=0x1000` or `guest_map va=0x1000000 ipa=0x40100000`. */
export function describeRequest(step: Step): string {
  if (step.spec.kind === 'probe')
    return [step.spec.op, ...step.spec.args.map(([k, v]) => `${k}=${v}`)].join(' ');
  const args = Object.entries(step.spec.body)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${requestValue(v)}`);
  return [step.spec.kind, ...args].join(' ');
}

const PROBE_SKIP = new Set([
  'seq',
  'scenario',
  'op',
  'args',
  'ret',
  'errno',
  'us',
  'ms',
  'elapsed_ms',
  'us_per_op',
  'req',
]);

/** `-> 0`, `-> -1 EINVAL`, plus the fields worth seeing. */
export function describeAnswer(rec: ProbeRecord): string {
  if (rec.seq !== undefined) {
    const ret = rec.ret as number;
    let s = ret < 0 ? `-1 ${rec.errno}` : String(ret);
    if (rec.op === 'unmap' && ret === 0) s += ` (size ${(rec.out as { size: string }).size})`;
    const extra = Object.entries(rec).filter(([k]) => !PROBE_SKIP.has(k) && k !== 'out' && k !== 'caps');
    if (rec.op === 'get_info' && Array.isArray(rec.caps)) {
      const r = (rec.caps as { name?: string; iova_ranges?: { start: string; end: string }[] }[]).find(
        (c) => c.name === 'iova_range',
      );
      if (r?.iova_ranges) extra.push(['ranges', r.iova_ranges.map((x) => `${x.start}-${x.end}`).join(' ')]);
    }
    return extra.length ? `${s}  ${extra.map(([k, v]) => `${k}=${value(v)}`).join(' ')}` : s;
  }
  const fields = Object.entries(rec).filter(([k]) => k !== 'step' && k !== 'kind');
  if (fields.length === 0) return 'done';
  return fields.map(([k, v]) => `${k}=${value(v)}`).join(' ');
}

/** Where a walk read its descriptor: `PA 0x...`, or `IPA 0x... = PA 0x...` (nested stage-1 tables and CDs). */
export function readAtText(r: { addr: number; pa: number }): string {
  return r.addr === r.pa ? `PA ${hex(r.pa)}` : `IPA ${hex(r.addr)} = PA ${hex(r.pa)}`;
}

/** What a walk read translates: `VA 0x...` for stage 1, `IPA 0x...` for stage 2, nothing for configuration. */
export function translatingText(r: { kind: string; input: number }): string {
  return r.kind === 's2' ? `IPA ${hex(r.input)}` : r.kind === 's1' ? `VA ${hex(r.input)}` : '';
}

/** One ioctl the host answered: the fd, the request's name for that fd's kind, the return value. */
export interface IoctlCall {
  fd: number;
  name: string;
  ret: number;
}

/** Appends every ioctl `host` answers to `calls` (the demo's and the playground's trace). */
export function recordIoctls(host: Host, calls: IoctlCall[]): void {
  host.onIoctl = (proc, fd, request, ret) =>
    calls.push({ fd, name: ioctlName(request, proc.fdget(fd)?.kind), ret });
}

/** An ioctl as shown: `ret` as `0` or `-1 EINVAL`, `count` identical calls in a row. */
export interface ShownIoctl {
  fd: number;
  name: string;
  ret: string;
  count: number;
}

/** Calls as shown: consecutive identical ones (the VMM polling for faults after each DMA) once, counted. */
export function collapseIoctls(calls: readonly IoctlCall[]): ShownIoctl[] {
  const out: ShownIoctl[] = [];
  for (const c of calls) {
    const ret = c.ret < 0 ? `-1 ${errnoName(-c.ret)}` : String(c.ret);
    const last = out[out.length - 1];
    if (last !== undefined && last.fd === c.fd && last.name === c.name && last.ret === ret) last.count++;
    else out.push({ fd: c.fd, name: c.name, ret, count: 1 });
  }
  return out;
}
