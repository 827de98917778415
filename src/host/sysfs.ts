/**
 * Module parameters as /sys/module/<module>/parameters/<name> files: bools read back as Y/N,
 * numbers in decimal; writes need root (the files are 0644 or 0600-writable), as the kernel's
 * param_set_bool / param_set_uint parse them.
 */

import type { Current, KernelFile } from '../mm/file.ts';
import { EACCES, EINVAL } from '../uapi/errno.ts';

export interface ModuleParam {
  readonly kind: 'bool' | 'uint';
  get(): boolean | number;
  set(value: boolean | number): void;
}

/** Parses a value as the kernel would for this kind; undefined when it would be EINVAL. */
export function parseParam(kind: 'bool' | 'uint', text: string): boolean | number | undefined {
  const t = text.trim();
  if (kind === 'bool') {
    if (/^(1|y|Y|on)$/.test(t)) return true;
    if (/^(0|n|N|off)$/.test(t)) return false;
    return undefined;
  }
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(t)) return undefined;
  const n = Number(t);
  return n <= 0xffff_ffff ? n : undefined;
}

function formatParam(p: ModuleParam): string {
  const v = p.get();
  return typeof v === 'boolean' ? (v ? 'Y' : 'N') : String(v);
}

export class SysfsParamFile implements KernelFile {
  readonly kind = 'sysfs';

  constructor(readonly param: ModuleParam) {}

  read(_current: Current, dst: Uint8Array, offset: number): number {
    const text = new TextEncoder().encode(`${formatParam(this.param)}\n`);
    const part = text.subarray(offset, offset + dst.byteLength);
    dst.set(part);
    return part.byteLength;
  }

  write(current: Current, src: Uint8Array, _offset: number): number {
    if (current.task.euid !== 0) return -EACCES;
    const v = parseParam(this.param.kind, new TextDecoder().decode(src));
    if (v === undefined) return -EINVAL;
    this.param.set(v);
    return src.byteLength;
  }
}
