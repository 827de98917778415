/**
 * The argument of an ioctl as the kernel sees it, and copy_from_user / copy_to_user over it.
 *
 * Callers pass either a value (a number or bigint: what `unsigned long arg` holds; for ioctls
 * that take a pointer it is an address in the process's memory) or a byte buffer standing for
 * "a pointer to these bytes" (what the typed API and the interposer's wire protocol carry).
 * Reading or writing outside the buffer, or at an unmapped address, is -EFAULT.
 */

import { E2BIG, EFAULT } from '../uapi/errno.ts';
import type { MmStruct } from './mm.ts';

export type IoctlArg = number | bigint | Uint8Array;

/** Where a byte-buffer argument appears to live, for ioctls that read the raw value. */
const BUFFER_ADDRESS = 0x7ffc_0000_0000n;

export class UserArg {
  constructor(
    readonly raw: IoctlArg,
    private readonly mm: MmStruct,
  ) {}

  /** The raw `unsigned long` value (by-value ioctls such as CHECK_EXTENSION, SET_IOMMU). */
  get value(): bigint {
    if (this.raw instanceof Uint8Array) return BUFFER_ADDRESS;
    return BigInt.asUintN(64, BigInt(this.raw));
  }

  /** copy_from_user of `len` bytes at `off` from the pointer; -EFAULT on a bad range. */
  copyFrom(len: number, off = 0): Uint8Array | number {
    if (this.raw instanceof Uint8Array) {
      if (off + len > this.raw.byteLength) return -EFAULT;
      return this.raw.slice(off, off + len);
    }
    const addr = this.address(off);
    if (addr < 0) return -EFAULT;
    const out = new Uint8Array(len);
    return this.mm.readUser(addr, out, 0, len) < 0 ? -EFAULT : out;
  }

  /**
   * copy_from_user of `len` bytes at `off` into the caller's `dst` (reused by hot paths, so nothing
   * is allocated); 0 or -EFAULT on a bad range.
   */
  copyFromInto(dst: Uint8Array, len: number, off = 0): number {
    const raw = this.raw;
    if (raw instanceof Uint8Array) {
      if (off + len > raw.byteLength) return -EFAULT;
      for (let i = 0; i < len; i++) dst[i] = raw[off + i];
      return 0;
    }
    const addr = this.address(off);
    if (addr < 0) return -EFAULT;
    return this.mm.readUser(addr, dst, 0, len) < 0 ? -EFAULT : 0;
  }

  /** copy_to_user of `bytes` at `off`; 0 or -EFAULT. */
  copyTo(bytes: Uint8Array, off = 0): number {
    if (this.raw instanceof Uint8Array) {
      if (off + bytes.byteLength > this.raw.byteLength) return -EFAULT;
      this.raw.set(bytes, off);
      return 0;
    }
    const addr = this.address(off);
    if (addr < 0) return -EFAULT;
    return this.mm.writeUser(addr, bytes, 0, bytes.byteLength) < 0 ? -EFAULT : 0;
  }

  /** strncpy_from_user: a NUL-terminated string of at most `max` bytes; -EFAULT on a bad pointer. */
  copyString(max: number): string | number {
    const bytes: number[] = [];
    for (let i = 0; i < max; i++) {
      const b = this.copyFrom(1, i);
      if (typeof b === 'number') return b;
      if (b[0] === 0) break;
      bytes.push(b[0]);
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }

  private address(off: number): number {
    const v = this.value + BigInt(off);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(v);
  }
}

/** A user pointer held inside a struct (vfio_bitmap.data, iommufd data_uptr): always an address. */
export function userPointer(mm: MmStruct, address: bigint): UserArg {
  return new UserArg(address, mm);
}

/** Bytes checked per copy by check_zeroed_user. */
const ZERO_CHUNK = 4096;

/** check_zeroed_user: 1 when `len` bytes at `off` are all zero, 0 when not, -EFAULT on a fault. */
function checkZeroedUser(arg: UserArg, off: number, len: number): number {
  for (let pos = 0; pos < len; pos += ZERO_CHUNK) {
    const n = Math.min(ZERO_CHUNK, len - pos);
    const b = arg.copyFrom(n, off + pos);
    if (typeof b === 'number') return -EFAULT;
    if (b.some((x) => x !== 0)) return 0;
  }
  return 1;
}

/**
 * copy_struct_from_user into `ksize` bytes from a user struct of `usize` bytes (extensible structs:
 * a shorter one is zero-extended, a longer one must have a zero tail, else E2BIG). iommufd and the
 * VFIO device cdev read their argsz/size structs through it.
 */
export function copyStructFromUser(arg: UserArg, ksize: number, usize: number): Uint8Array | number {
  const out = new Uint8Array(ksize);
  if (usize > ksize) {
    const z = checkZeroedUser(arg, ksize, usize - ksize);
    if (z <= 0) return z < 0 ? z : -E2BIG;
  }
  const n = Math.min(ksize, usize);
  if (n > 0) {
    const b = arg.copyFrom(n);
    if (typeof b === 'number') return -EFAULT;
    out.set(b);
  }
  return out;
}
