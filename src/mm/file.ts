/**
 * What a system call runs with (`current`) and the file operations a device node offers.
 * VFIO's container, group and device files, iommufd and the probe's ordinary files implement
 * `KernelFile`; the process's fd table holds them.
 */

import type { MmioOps, MmStruct } from './mm.ts';
import type { Task } from './task.ts';
import type { UserArg } from './uaccess.ts';

/** The calling process's task and address space. */
export interface Current {
  readonly task: Task;
  readonly mm: MmStruct;
  /** fdget: the file behind a descriptor of the calling process, if open. */
  fdget(fd: number): KernelFile | undefined;
  /** fd_install into the calling process: the new descriptor, or -EMFILE. */
  installFd(file: KernelFile): number;
  /** get_unused_fd_flags: the descriptor installFd would give now, or -EMFILE (nothing reserved). */
  unusedFd(): number;
}

export interface FileMapping {
  pa: number;
  mmio?: MmioOps;
  mmioOffset?: number;
}

export interface KernelFile {
  /** What the file is, for diagnostics and dumps: 'vfio-container', 'vfio-group', ... */
  readonly kind: string;
  /** unlocked_ioctl: returns >= 0 or -errno. Absent: ENOTTY. */
  ioctl?(current: Current, request: number, arg: UserArg): number;
  /** pread: bytes read or -errno. Absent: read(2) and pread(2) are EINVAL (no FMODE_CAN_READ). */
  read?(current: Current, dst: Uint8Array, offset: number): number;
  /** pwrite: bytes written or -errno. Absent: EINVAL. */
  write?(current: Current, src: Uint8Array, offset: number): number;
  /** Opened as a stream (stream_open, nonseekable_open): no file position; pread and pwrite are ESPIPE. */
  readonly stream?: boolean;
  /**
   * llseek: the new file position, from the current one, or -errno. Absent: the file's operations
   * have none, so lseek(2) is ESPIPE (every vfio and iommufd fd: y9 seq 5, 12, 18; y10 seq 6, 32).
   */
  llseek?(pos: number, offset: number, whence: number): number;
  /**
   * mmap of `len` bytes at file offset `offset`, MAP_SHARED or (`shared` false) MAP_PRIVATE: the
   * physical address to map (VM_PFNMAP) and the device registers behind it, or -errno.
   */
  mmap?(current: Current, offset: number, len: number, shared: boolean): FileMapping | number;
  /** Last close of the file. */
  release?(current: Current): void;
}
