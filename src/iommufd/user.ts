/**
 * User memory as iommufd reads it: copy_struct_from_user (extensible structs: a shorter user struct is
 * zero-extended, a longer one must have a zero tail, else E2BIG), clear_user, and the driver-data
 * accessors (struct iommu_user_data, iommu_user_data_array) the IOMMU driver reads through.
 */

import type { UserDataArray, UserData as UserDataIface } from '../iommu/arm-smmu-v3-iommufd.ts';
import type { MmStruct } from '../mm/mm.ts';
import { type UserArg, userPointer } from '../mm/uaccess.ts';
import { E2BIG, EFAULT } from '../uapi/errno.ts';

const CHUNK = 4096;

/** check_zeroed_user: 1 when `len` bytes at `off` are all zero, 0 when not, -EFAULT on a fault. */
export function checkZeroedUser(arg: UserArg, off: number, len: number): number {
  for (let pos = 0; pos < len; pos += CHUNK) {
    const n = Math.min(CHUNK, len - pos);
    const b = arg.copyFrom(n, off + pos);
    if (typeof b === 'number') return -EFAULT;
    if (b.some((x) => x !== 0)) return 0;
  }
  return 1;
}

/** copy_struct_from_user into `ksize` bytes from a user struct of `usize` bytes. */
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

/** clear_user of `len` bytes at `off`: 0 or -EFAULT. */
export function clearUser(arg: UserArg, off: number, len: number): number {
  const zeros = new Uint8Array(Math.min(CHUNK, len));
  for (let pos = 0; pos < len; pos += CHUNK) {
    const n = Math.min(CHUNK, len - pos);
    if (arg.copyTo(n === zeros.length ? zeros : zeros.subarray(0, n), off + pos) < 0) return -EFAULT;
  }
  return 0;
}

/** struct iommu_user_data over a process's memory. */
export class UserData implements UserDataIface {
  constructor(
    private readonly mm: MmStruct,
    readonly type: number,
    readonly uptr: bigint,
    readonly len: number,
  ) {}

  copyStruct(ksize: number): Uint8Array | number {
    return copyStructFromUser(userPointer(this.mm, this.uptr), ksize, this.len);
  }
}

/** struct iommu_user_data_array over a process's memory. */
export class UserArray implements UserDataArray {
  done = 0;

  constructor(
    private readonly mm: MmStruct,
    readonly type: number,
    readonly uptr: bigint,
    readonly entryLen: number,
    readonly entryNum: number,
  ) {}

  copy(len: number): Uint8Array | number {
    const b = userPointer(this.mm, this.uptr).copyFrom(len);
    return typeof b === 'number' ? -EFAULT : b;
  }

  copyEntry(index: number, ksize: number): Uint8Array | number {
    const at = BigInt.asUintN(64, this.uptr + BigInt(this.entryLen) * BigInt(index));
    return copyStructFromUser(userPointer(this.mm, at), ksize, this.entryLen);
  }
}
