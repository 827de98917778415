/**
 * Module parameters as /sys/module/<module>/parameters/<name> files: bools read back as Y/N,
 * numbers in decimal; writes need root (the files are 0644 or 0600-writable), as the kernel's
 * param_set_bool / param_set_uint parse them.
 */

import type { Current, KernelFile } from '../mm/file.ts';
import { EACCES, EINVAL, ENXIO, ERANGE } from '../uapi/errno.ts';
import type { KernelProfile } from '../uapi/profile.ts';

export interface ModuleParam {
  readonly kind: 'bool' | 'uint';
  get(): boolean | number;
  set(value: boolean | number): void;
}

/**
 * A parameter's value parsed as the kernel's param_set_bool / param_set_uint do (kstrtobool,
 * kstrtouint base 0): the value, or -EINVAL / -ERANGE. Oracle x86 on 6.1, 6.12, 6.18: "yes", "true",
 * "on", "Yx" are true; "o", "2", "x" are EINVAL; "010" is 8, "0X1f" 31, "+5" 5; "-1", "12abc", "0x",
 * "09" EINVAL; 4294967296 ERANGE (test/host/sysfs-params.test.ts).
 */
export function parseParam(
  kind: 'bool' | 'uint',
  text: string,
  syntax: KernelProfile['boolParam'],
): boolean | number {
  return kind === 'bool' ? parseBool(text, syntax) : parseUint(text);
}

function parseBool(s: string, syntax: KernelProfile['boolParam']): boolean | number {
  switch (s[0]) {
    case 'y':
    case 'Y':
    case '1':
      return true;
    case 'n':
    case 'N':
    case '0':
      return false;
  }
  if (syntax === 'yn') return -EINVAL;
  switch (s[0]) {
    case 't':
    case 'T':
      return true;
    case 'f':
    case 'F':
      return false;
    case 'o':
    case 'O':
      return s[1] === 'n' || s[1] === 'N' ? true : s[1] === 'f' || s[1] === 'F' ? false : -EINVAL;
    case 'e':
    case 'E':
      return syntax === 'endis' ? true : -EINVAL;
    case 'd':
    case 'D':
      return syntax === 'endis' ? false : -EINVAL;
  }
  return -EINVAL;
}

/** kstrtouint(s, 0): an optional '+', 0x/0X hex, 0 octal, else decimal, one optional trailing newline. */
function parseUint(s: string): number {
  let i = s[0] === '+' ? 1 : 0;
  let base = 10;
  if (s[i] === '0') {
    const x = s[i + 1];
    if ((x === 'x' || x === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '')) {
      base = 16;
      i += 2;
    } else base = 8;
  }
  let v = 0n;
  const from = i;
  for (; i < s.length; i++) {
    const d = Number.parseInt(s[i], 16);
    if (Number.isNaN(d) || d >= base) break;
    v = v * BigInt(base) + BigInt(d);
    if (v > 0xffff_ffff_ffff_ffffn) return -ERANGE;
  }
  if (i === from) return -EINVAL;
  if (s[i] === '\n') i++;
  if (i !== s.length) return -EINVAL;
  return v > 0xffff_ffffn ? -ERANGE : Number(v);
}

function formatParam(p: ModuleParam): string {
  const v = p.get();
  return typeof v === 'boolean' ? (v ? 'Y' : 'N') : String(v);
}

/**
 * generic_file_llseek, as kernfs seeks a sysfs attribute whose inode size is one page (from source,
 * not recorded): SEEK_SET, SEEK_CUR and SEEK_END; SEEK_DATA is the offset and SEEK_HOLE the size
 * while the offset is inside the file, ENXIO past it; a negative result is EINVAL.
 */
function sysfsLlseek(pos: number, offset: number, whence: number): number {
  const size = 4096;
  if (whence === 3 || whence === 4) {
    if (offset < 0 || offset >= size) return -ENXIO;
    return whence === 3 ? offset : size;
  }
  if (whence > 2) return -EINVAL;
  const to = (whence === 0 ? 0 : whence === 1 ? pos : size) + offset;
  return to >= 0 ? to : -EINVAL;
}

/** A read-only sysfs attribute with fixed text (a device's `dev`: "major:minor"). */
export class SysfsAttrFile implements KernelFile {
  readonly kind = 'sysfs';

  constructor(private readonly fixed = '') {}

  /** What the attribute's show method prints. */
  protected text(): string {
    return this.fixed;
  }

  read(_current: Current, dst: Uint8Array, offset: number): number {
    const part = new TextEncoder().encode(this.text()).subarray(offset, offset + dst.byteLength);
    dst.set(part);
    return part.byteLength;
  }

  llseek(pos: number, offset: number, whence: number): number {
    return sysfsLlseek(pos, offset, whence);
  }
}

/** A module parameter: its value as param_get_* prints it; root writes it through param_set_*. */
export class SysfsParamFile extends SysfsAttrFile {
  constructor(
    readonly param: ModuleParam,
    private readonly boolSyntax: KernelProfile['boolParam'],
  ) {
    super();
  }

  protected override text(): string {
    return `${formatParam(this.param)}\n`;
  }

  write(current: Current, src: Uint8Array, _offset: number): number {
    if (current.task.euid !== 0) return -EACCES;
    // sysfs hands an empty write to no store method (oracle: it returns 0 and changes nothing).
    if (src.byteLength === 0) return 0;
    const v = parseParam(this.param.kind, new TextDecoder().decode(src), this.boolSyntax);
    if (typeof v === 'number' && v < 0) return v;
    this.param.set(v);
    return src.byteLength;
  }
}
