/**
 * A user process on the modelled host: credentials and rlimits (task), an address space (mm) and an
 * fd table. Its system calls return what the real ones return: a value >= 0, or -errno.
 */

import { EventFd } from '../mm/eventfd.ts';
import type { Current, KernelFile } from '../mm/file.ts';
import { type MmapOptions, MmStruct } from '../mm/mm.ts';
import { type Credentials, type Rlimit, Task } from '../mm/task.ts';
import { type IoctlArg, UserArg } from '../mm/uaccess.ts';
import { EBADF, EINVAL, EMFILE, ENODEV, ENOTTY, ESPIPE } from '../uapi/errno.ts';
import type { Host } from './host.ts';

/** stdin/stdout/stderr: ordinary character devices, not VFIO files. */
class Tty implements KernelFile {
  readonly kind = 'tty';
}

const MAX_FDS = 1024;
/** The last whence lseek(2) knows (SEEK_MAX). */
const SEEK_HOLE = 4;

export interface ProcessOptions extends Partial<Credentials> {
  memlock?: Rlimit;
}

export interface ProcStatus {
  /** /proc/self/status VmLck (kB): mm->locked_vm. */
  VmLck_kB: number;
  /** VmPin (kB): mm->pinned_vm. */
  VmPin_kB: number;
  /** CapEff as 16 hex digits. */
  CapEff: string;
}

export class Process implements Current {
  readonly task: Task;
  readonly mm: MmStruct;
  private readonly fds = new Map<number, KernelFile>();
  /** Each open file's position (f_pos), by fd: read(2), write(2) and lseek(2) move it. */
  private readonly pos = new Map<number, number>();
  /** No descriptor below this is free (the kernel's files->next_fd): a full table fills in O(n). */
  private nextFd = 0;
  private exited = false;

  constructor(
    readonly host: Host,
    options: ProcessOptions = {},
  ) {
    this.task = new Task(
      options,
      options.memlock ?? { cur: host.profile.defaultMemlock, max: host.profile.defaultMemlock },
    );
    this.mm = new MmStruct(host.phys, host.profile.longtermPinsZeroPage);
    for (let fd = 0; fd < 3; fd++) this.fds.set(fd, new Tty());
  }

  /** open(2) of a device node or a sysfs file this host models; the descriptor comes first (EMFILE). */
  open(path: string): number {
    const fd = this.unusedFd();
    if (fd < 0) return fd;
    const file = this.host.openPath(path, this);
    if (typeof file === 'number') return file;
    return this.installFd(file);
  }

  /** close(2). */
  close(fd: number): number {
    const f = this.fds.get(fd);
    if (f === undefined) return -EBADF;
    this.fds.delete(fd);
    this.pos.delete(fd);
    if (fd < this.nextFd) this.nextFd = fd;
    f.release?.(this);
    return 0;
  }

  /** ioctl(2): `arg` is a value, an address in this process, or a byte buffer standing for a pointer. */
  ioctl(fd: number, request: number, arg: IoctlArg = 0): number {
    const f = this.fds.get(fd);
    const ret =
      f === undefined
        ? -EBADF
        : f.ioctl === undefined
          ? -ENOTTY
          : f.ioctl(this, request >>> 0, new UserArg(arg, this.mm));
    this.host.onIoctl?.(this, fd, request >>> 0, ret);
    return ret;
  }

  /**
   * pread(2). ksys_pread64 refuses a negative offset before it looks at the fd; a stream has no
   * FMODE_PREAD (ESPIPE, y10 seq 28-29); a file without a read operation is EINVAL (y9 seq 2).
   */
  pread(fd: number, dst: Uint8Array, offset: number): number {
    return this.rwAt(fd, dst, offset, false);
  }

  /** pwrite(2): as pread (y10 seq 31, y9 seq 4). */
  pwrite(fd: number, src: Uint8Array, offset: number): number {
    return this.rwAt(fd, src, offset, true);
  }

  /**
   * read(2) at the file position, which it then advances: two reads of a vfio device fd read
   * consecutive bytes of region 0 (y9 seq 16-17). A stream has no position (y10 seq 25-27).
   */
  read(fd: number, dst: Uint8Array): number {
    return this.rwAtPosition(fd, dst, false);
  }

  /** write(2) at the file position, which it then advances (y9 seq 20 wrote where two reads left it). */
  write(fd: number, src: Uint8Array): number {
    return this.rwAtPosition(fd, src, true);
  }

  private rwAt(fd: number, buf: Uint8Array, offset: number, write: boolean): number {
    if (offset < 0) return -EINVAL;
    const f = this.fds.get(fd);
    if (f === undefined) return -EBADF;
    if (f.stream === true) return -ESPIPE;
    const io = write ? f.write : f.read;
    return io === undefined ? -EINVAL : io.call(f, this, buf, offset);
  }

  private rwAtPosition(fd: number, buf: Uint8Array, write: boolean): number {
    const f = this.fds.get(fd);
    if (f === undefined) return -EBADF;
    const io = write ? f.write : f.read;
    if (io === undefined) return -EINVAL;
    const stream = f.stream === true;
    const pos = stream ? 0 : (this.pos.get(fd) ?? 0);
    const r = io.call(f, this, buf, pos);
    if (r > 0 && !stream) this.pos.set(fd, pos + r);
    return r;
  }

  /**
   * lseek(2): a whence past SEEK_HOLE is EINVAL (ksys_lseek, from source), then ESPIPE unless the
   * file has an llseek operation (no vfio or iommufd fd has: y9, y10).
   */
  lseek(fd: number, offset: number, whence: number): number {
    const f = this.fds.get(fd);
    if (f === undefined) return -EBADF;
    if (whence >>> 0 > SEEK_HOLE) return -EINVAL;
    if (f.llseek === undefined) return -ESPIPE;
    const r = f.llseek(this.pos.get(fd) ?? 0, offset, whence);
    if (r >= 0) this.pos.set(fd, r);
    return r;
  }

  /**
   * mmap(2): anonymous memory when fd is -1 (options.hugeLg2 for MAP_HUGETLB), else a file region,
   * shared unless `private` (MAP_PRIVATE).
   */
  mmap(len: number, options: MmapOptions & { fd?: number; offset?: number; private?: boolean } = {}): number {
    if (options.fd === undefined || options.fd < 0) return this.mm.mmap(len, options);
    const f = this.fds.get(options.fd);
    if (f === undefined) return -EBADF;
    if (f.mmap === undefined) return -ENODEV;
    const m = f.mmap(this, options.offset ?? 0, len, options.private !== true);
    if (typeof m === 'number') return m;
    return this.mm.mmap(len, { ...options, pfnmapBase: m.pa, mmio: m.mmio, mmioOffset: m.mmioOffset });
  }

  munmap(addr: number, len: number): number {
    return this.mm.munmap(addr, len);
  }

  setrlimitMemlock(cur: bigint, max: bigint): number {
    return this.task.setrlimitMemlock(cur, max);
  }

  getrlimitMemlock(): Rlimit {
    return { ...this.task.memlock };
  }

  setgroups(groups: number[]): number {
    return this.task.setgroups(groups);
  }

  setgid(gid: number): number {
    return this.task.setgid(gid);
  }

  setuid(uid: number): number {
    return this.task.setuid(uid);
  }

  /** The lines of /proc/self/status a VFIO user reads. */
  status(): ProcStatus {
    return {
      VmLck_kB: this.mm.lockedVm * 4,
      VmPin_kB: this.mm.pinnedVm * 4,
      CapEff: this.task.capEffHex,
    };
  }

  /** Writes bytes into this process's memory (memcpy from the outside); -EFAULT if unmapped. */
  writeMemory(va: number, bytes: Uint8Array): number {
    return this.mm.writeUser(va, bytes, 0, bytes.byteLength);
  }

  /** Reads `len` bytes of this process's memory. */
  readMemory(va: number, len: number): Uint8Array | number {
    const out = new Uint8Array(len);
    const r = this.mm.readUser(va, out, 0, len);
    return r < 0 ? r : out;
  }

  /** eventfd(2): a new counter file. */
  eventfd(): number {
    return this.installFd(new EventFd(this.host.profile.eventfdWriteExact));
  }

  /** exit(2): every fd is closed, then the address space goes away. */
  exit(): void {
    if (this.exited) return;
    for (const fd of this.openFds) this.close(fd);
    this.mm.exit();
    this.exited = true;
  }

  /** The open fds, ascending. */
  get openFds(): number[] {
    return [...this.fds.keys()].sort((a, b) => a - b);
  }

  fdget(fd: number): KernelFile | undefined {
    return this.fds.get(fd);
  }

  installFd(file: KernelFile): number {
    const fd = this.unusedFd();
    if (fd < 0) file.release?.(this);
    else {
      this.fds.set(fd, file);
      this.nextFd = fd + 1;
    }
    return fd;
  }

  unusedFd(): number {
    for (let fd = this.nextFd; fd < MAX_FDS; fd++) if (!this.fds.has(fd)) return fd;
    return -EMFILE;
  }
}
