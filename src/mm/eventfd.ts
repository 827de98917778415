/**
 * eventfd(2): a 64-bit counter. Writes add, a read returns the count and resets it (-EAGAIN at 0,
 * as a non-blocking eventfd does). VFIO signals interrupts through it. Its file has no position
 * (oracle y11-eventfd-syscalls: pread and pwrite ESPIPE, lseek 0 wherever asked to go).
 */

import { EAGAIN, EBADF, EINVAL } from '../uapi/errno.ts';
import type { Current, KernelFile } from './file.ts';

export class EventFd implements KernelFile {
  readonly kind = 'eventfd';
  readonly stream = true;
  count = 0n;
  /**
   * Kernel waiters (virqfds: vfio's ioeventfds and INTx unmask): each runs when the count is raised;
   * one that returns true consumes the count (the virqfd handler reads it), so it stays at 0.
   */
  readonly waiters = new Set<() => boolean>();

  /** @param writeExact a write must be exactly 8 bytes (KernelProfile.eventfdWriteExact). */
  constructor(private readonly writeExact = true) {}

  signal(n = 1n): void {
    this.count += n;
    this.wake();
  }

  /** What a user's write(2) of `n` does, after its checks: the count grows, waiters run. */
  add(n: bigint): void {
    this.count += n;
    if (n !== 0n) this.wake();
  }

  private wake(): void {
    for (const w of this.waiters) if (w()) this.count = 0n;
  }

  read(_current: Current, dst: Uint8Array, _offset: number): number {
    if (dst.byteLength < 8) return -EINVAL;
    if (this.count === 0n) return -EAGAIN;
    new DataView(dst.buffer, dst.byteOffset, 8).setBigUint64(0, this.count, true);
    this.count = 0n;
    return 8;
  }

  /** noop_llseek: the position stays where it is, at 0 (y11 seq 16-18). */
  llseek(pos: number): number {
    return pos;
  }

  /** Fewer than 8 bytes, or all ones, is EINVAL (y11 seq 9-10); more is EINVAL from 6.12 (seq 12). */
  write(_current: Current, src: Uint8Array, _offset: number): number {
    if (this.writeExact ? src.byteLength !== 8 : src.byteLength < 8) return -EINVAL;
    const v = new DataView(src.buffer, src.byteOffset, 8).getBigUint64(0, true);
    if (v === 0xffff_ffff_ffff_ffffn) return -EINVAL;
    this.add(v);
    return 8;
  }
}

/** eventfd_ctx_fdget: the eventfd behind `fd`, or -EBADF (no such descriptor) or -EINVAL (not an eventfd). */
export function eventfdCtxFdget(current: Current, fd: number): EventFd | number {
  const f = current.fdget(fd);
  if (f === undefined) return -EBADF;
  return f instanceof EventFd ? f : -EINVAL;
}
