/**
 * User memory as iommufd reads it: clear_user (copy_struct_from_user is mm/uaccess.ts's), and the driver-data
 * accessors (struct iommu_user_data, iommu_user_data_array) the IOMMU driver reads through.
 */

import type { UserDataArray, UserData as UserDataIface } from '../iommu/arm-smmu-v3-iommufd.ts';
import type { MmStruct } from '../mm/mm.ts';
import { copyStructFromUser, type UserArg, userPointer } from '../mm/uaccess.ts';
import { EFAULT } from '../uapi/errno.ts';

const CHUNK = 4096;

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
