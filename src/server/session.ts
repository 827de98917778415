/**
 * One client of `vfio-nest serve`: a model Process on the server's Host, the client's fd numbers
 * mapped to the model's, and the client's memory behind the process's address space. `handle`
 * answers one request frame with one reply frame, asking the client (callbacks) when the model needs
 * its memory or a new fd number. Everything is synchronous; the transport lives in server.ts.
 */

import type { Host } from '../host/host.ts';
import type { Process } from '../host/process.ts';
import { EventFd } from '../mm/eventfd.ts';
import { CAP_FULL_SET } from '../mm/task.ts';
import { EBADF, EINVAL, EMFILE, EPERM, errnoName } from '../uapi/errno.ts';
import { ioctlName } from '../uapi/names.ts';
import * as vfio from '../uapi/vfio.ts';
import {
  decodeIrqSet,
  IOEVENTFD_FD_AT,
  IRQ_SET_SIZE,
  VFIO_IRQ_SET_DATA_EVENTFD,
} from '../uapi/vfio-device.ts';
import { type ClientChannel, ClientMemory } from './client-memory.ts';
import {
  CB_FDCHECK,
  CB_NEWFD,
  CB_SIGNAL,
  decodeFrame,
  decodeHello,
  encodeFrame,
  encodeReply,
  FD_EVENTFD,
  FD_OPEN,
  type Frame,
  HELLO_MEMLOCK_HOST,
  IOCTL_ARG_BYTES,
  MAX_IOCTL_ARG,
  PROTOCOL_VERSION,
  REQ_CAPSET,
  REQ_CLOSE,
  REQ_DUP,
  REQ_HELLO,
  REQ_IOCTL,
  REQ_LISTDIR,
  REQ_LSEEK,
  REQ_MUNMAP,
  REQ_OPEN,
  REQ_PREAD,
  REQ_PWRITE,
  REQ_READ,
  REQ_READLINK,
  REQ_SETGID,
  REQ_SETGROUPS,
  REQ_SETRLIMIT,
  REQ_SETUID,
  REQ_SIGNAL,
  REQ_STATUS,
  REQ_WRITE,
  REQUEST_NAMES,
  RLIMIT_MEMLOCK,
  SIGNAL_FORGET,
  statusBlock,
} from './protocol.ts';

/** EPROTO: a frame the protocol does not allow (the server's own errno; not in the model's table). */
export const EPROTO = 71;
/** Largest read or write one request moves (the client splits bigger ones). */
const MAX_IO = 2 ** 20;
/** An fd number no model process has open (INT_MAX). */
const CLOSED_FD = 0x7fff_ffff;

/** A path in a frame's data, up to its NUL. */
function pathOf(f: Frame): string {
  return new TextDecoder().decode(f.data).replace(/\0.*$/s, '');
}

/**
 * An eventfd of the client, given to VFIO_DEVICE_SET_IRQS or VFIO_DEVICE_IOEVENTFD: the model's
 * device signals it like any eventfd, and each signal is passed on to the client's real eventfd
 * (CB_SIGNAL), so the program's poll loop wakes. Devices raise interrupts during the client's own
 * calls (a DMA ends when its doorbell is written); a signal outside one waits for the client's next
 * request. The client's own writes to it come back as REQ_SIGNAL and run the model's waiters.
 */
export class ClientEventFd extends EventFd {
  private readonly session: Session;
  readonly clientFd: number;

  constructor(session: Session, clientFd: number) {
    super();
    this.session = session;
    this.clientFd = clientFd;
  }

  override signal(n = 1n): void {
    super.signal(n);
    this.session.signalClient(this.clientFd, n);
  }
}

export class Session {
  proc: Process | undefined;
  readonly memory: ClientMemory;
  /** The client's pid, from HELLO. */
  pid = 0;
  /** client fd -> model fd */
  private readonly fds = new Map<number, number>();
  /** model fd -> how many client fds refer to it (dup shares the open file, as in the kernel) */
  private readonly refs = new Map<number, number>();
  /** Callbacks asked about fds and interrupts (CB_NEWFD, CB_FDCHECK, CB_SIGNAL). */
  private fdCallbacks = 0;
  /** Whether a request of this client is being answered (it can take callbacks). */
  private busy = false;
  /**
   * The client's eventfds the model was handed, by client fd: one stand-in each, so that the same
   * eventfd is the same file to the model, and so that the client's writes (REQ_SIGNAL) reach the
   * model's waiters on it. Forgotten when the client closes the fd.
   */
  private readonly eventfds = new Map<number, ClientEventFd>();
  /** Interrupts raised while the client was not waiting: client eventfd -> count. */
  private readonly pendingSignals = new Map<number, bigint>();

  readonly host: Host;
  private readonly channel: ClientChannel;
  private readonly trace: ((line: string) => void) | undefined;

  constructor(host: Host, channel: ClientChannel, trace?: (line: string) => void) {
    this.host = host;
    this.channel = channel;
    this.trace = trace;
    this.memory = new ClientMemory(channel);
  }

  /** Answers one request frame. */
  handle(bytes: Uint8Array): Uint8Array {
    const f = decodeFrame(bytes);
    const callbacks = this.memory.callbacks + this.fdCallbacks;
    let reply: Uint8Array;
    this.busy = true;
    try {
      for (const [fd, n] of this.pendingSignals) this.signalClient(fd, n);
      this.pendingSignals.clear();
      reply = this.dispatch(f);
    } finally {
      this.busy = false;
      this.memory.endCall();
    }
    if (this.trace !== undefined)
      this.trace(this.describe(f, reply, this.memory.callbacks + this.fdCallbacks - callbacks));
    return reply;
  }

  /** The client went away: its process exits (every fd closed, its mappings dropped). */
  close(): void {
    this.proc?.exit();
    this.proc = undefined;
  }

  /** Adds `n` to the client's eventfd `fd` now, or at its next request if it is not waiting. */
  signalClient(fd: number, n: bigint): void {
    if (!this.busy) {
      this.pendingSignals.set(fd, (this.pendingSignals.get(fd) ?? 0n) + n);
      return;
    }
    this.fdCallbacks++;
    this.channel.call(encodeFrame({ type: CB_SIGNAL, fd, a: n }));
  }

  /** The client fds mapped to model fds (for tests). */
  get clientFds(): number[] {
    return [...this.fds.keys()].sort((a, b) => a - b);
  }

  private dispatch(f: Frame): Uint8Array {
    if (f.type === REQ_HELLO) return this.hello(f);
    const p = this.proc;
    if (p === undefined) return encodeReply(-EPROTO);
    switch (f.type) {
      case REQ_OPEN:
        return this.open(p, f);
      case REQ_CLOSE:
        return encodeReply(this.unmapFd(f.fd));
      case REQ_IOCTL:
        return this.ioctl(p, f);
      case REQ_PREAD:
      case REQ_READ: {
        const mfd = this.fds.get(f.fd);
        if (mfd === undefined) return encodeReply(-EBADF);
        const dst = new Uint8Array(Math.min(Number(f.b), MAX_IO));
        const r = f.type === REQ_READ ? p.read(mfd, dst) : p.pread(mfd, dst, this.offset(f.a));
        return encodeReply(r, r > 0 ? dst.subarray(0, r) : undefined);
      }
      case REQ_PWRITE:
      case REQ_WRITE: {
        const mfd = this.fds.get(f.fd);
        if (mfd === undefined) return encodeReply(-EBADF);
        const src = f.data.slice();
        return encodeReply(f.type === REQ_WRITE ? p.write(mfd, src) : p.pwrite(mfd, src, this.offset(f.a)));
      }
      case REQ_LSEEK: {
        const mfd = this.fds.get(f.fd);
        if (mfd === undefined) return encodeReply(-EBADF);
        return encodeReply(p.lseek(mfd, this.offset(f.a), f.num));
      }
      case REQ_SIGNAL: {
        // The program signalled its eventfd: as eventfd_signal in the kernel, the model's waiters
        // run (an INTx unmask, an ioeventfd's register write). Unknown fds are not the model's.
        const e = this.eventfds.get(f.fd);
        if (f.num === SIGNAL_FORGET) this.eventfds.delete(f.fd);
        else if (e !== undefined) e.add(f.a);
        return encodeReply(0);
      }
      case REQ_READLINK: {
        const path = pathOf(f);
        const target = this.host.readlinkPath(path);
        if (typeof target === 'number') return encodeReply(target);
        const bytes = new TextEncoder().encode(target);
        return encodeReply(bytes.byteLength, bytes);
      }
      case REQ_LISTDIR: {
        const names = this.host.listDir(pathOf(f));
        if (typeof names === 'number') return encodeReply(names);
        return encodeReply(names.length, new TextEncoder().encode(names.map((n) => `${n}\0`).join('')));
      }
      case REQ_DUP: {
        const mfd = this.fds.get(f.fd);
        if (mfd === undefined) return encodeReply(-EBADF);
        const to = Number(BigInt.asIntN(32, f.a));
        if (to < 0) return encodeReply(-EBADF);
        if (to !== f.fd) {
          this.unmapFd(to);
          this.mapFd(to, mfd);
        }
        return encodeReply(to);
      }
      case REQ_SETRLIMIT:
        if (f.num !== RLIMIT_MEMLOCK) return encodeReply(-EINVAL, this.status(p));
        return encodeReply(p.setrlimitMemlock(f.a, f.b), this.status(p));
      case REQ_SETUID:
        return encodeReply(p.setuid(Number(BigInt.asUintN(32, f.a))), this.status(p));
      case REQ_SETGID:
        return encodeReply(p.setgid(Number(BigInt.asUintN(32, f.a))), this.status(p));
      case REQ_SETGROUPS: {
        const v = new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength);
        const groups: number[] = [];
        for (let i = 0; i + 4 <= f.data.byteLength; i += 4) groups.push(v.getUint32(i, true));
        return encodeReply(p.setgroups(groups), this.status(p));
      }
      case REQ_CAPSET: {
        // The model keeps only the effective set: it can be lowered, never raised (capset(2): EPERM).
        const want = Number(BigInt.asUintN(64, f.a) & BigInt(CAP_FULL_SET));
        const have = p.task.capEff;
        const raises = Number(BigInt(want) & ~BigInt(have)) !== 0;
        if (raises) return encodeReply(-EPERM, this.status(p));
        p.task.setCapabilities(want);
        return encodeReply(0, this.status(p));
      }
      case REQ_STATUS:
        return encodeReply(0, this.status(p));
      case REQ_MUNMAP: {
        const addr = f.a;
        const len = f.b;
        if (addr + len > BigInt(Number.MAX_SAFE_INTEGER) || len === 0n) return encodeReply(0);
        return encodeReply(p.munmap(Number(addr), Number(len)));
      }
      default:
        return encodeReply(-EPROTO);
    }
  }

  private hello(f: Frame): Uint8Array {
    const h = decodeHello(f.data);
    if (this.proc !== undefined || h === undefined || f.num !== PROTOCOL_VERSION) return encodeReply(-EPROTO);
    const memlock =
      h.flags & HELLO_MEMLOCK_HOST
        ? { cur: this.host.profile.defaultMemlock, max: this.host.profile.defaultMemlock }
        : { cur: h.memlockCur, max: h.memlockMax };
    const p = this.host.spawn({
      uid: h.uid,
      gid: h.gid,
      capEff: Number(h.capEff & BigInt(CAP_FULL_SET)),
      memlock,
    });
    p.task.euid = h.euid;
    p.mm.external = this.memory;
    this.proc = p;
    this.pid = h.pid;
    return encodeReply(0, this.status(p));
  }

  private status(p: Process): Uint8Array {
    const st = p.status();
    return statusBlock.encode({
      uid: p.task.uid,
      euid: p.task.euid,
      gid: p.task.gid,
      egid: p.task.gid,
      capEff: BigInt(p.task.capEff),
      memlockCur: p.task.memlock.cur,
      memlockMax: p.task.memlock.max,
      vmLckKb: BigInt(st.VmLck_kB),
      vmPinKb: BigInt(st.VmPin_kB),
    });
  }

  /** A file offset (loff_t) from the wire; the process refuses a negative one where the kernel does. */
  private offset(a: bigint): number {
    return Number(BigInt.asIntN(64, a));
  }

  private open(p: Process, f: Frame): Uint8Array {
    if (f.fd < 0) return encodeReply(-EBADF);
    const path = pathOf(f);
    const mfd = p.open(path);
    if (mfd < 0) return encodeReply(mfd);
    this.unmapFd(f.fd); // a number the client reused without telling us
    this.mapFd(f.fd, mfd);
    return encodeReply(f.fd);
  }

  private mapFd(cfd: number, mfd: number): void {
    this.fds.set(cfd, mfd);
    this.refs.set(mfd, (this.refs.get(mfd) ?? 0) + 1);
  }

  /** Drops a client fd; the model fd is closed with its last client fd. 0 or -EBADF. */
  private unmapFd(cfd: number): number {
    const mfd = this.fds.get(cfd);
    if (mfd === undefined) return -EBADF;
    this.fds.delete(cfd);
    const n = (this.refs.get(mfd) ?? 1) - 1;
    if (n > 0) {
      this.refs.set(mfd, n);
      return 0;
    }
    this.refs.delete(mfd);
    return this.proc!.close(mfd);
  }

  /**
   * A client fd number inside an ioctl's argument, as a model fd: a mapped one is translated; an open
   * non-VFIO file of the client becomes model fd 0 (a tty: also not a VFIO file); a closed one a
   * number no model process has open (EBADF where the kernel's fdget fails); a negative one stays.
   */
  private modelFdFor(cfd: number, temps: number[]): number {
    if (cfd < 0) return cfd;
    const mfd = this.fds.get(cfd);
    if (mfd !== undefined) return mfd;
    this.fdCallbacks++;
    const r = this.channel.call(encodeFrame({ type: CB_FDCHECK, fd: cfd }));
    const what = r === undefined || r.num !== 0 ? 0n : r.a;
    if (what === BigInt(FD_EVENTFD)) {
      // For the length of the call the model process holds a stand-in (the device keeps the file).
      let e = this.eventfds.get(cfd);
      if (e === undefined) {
        e = new ClientEventFd(this, cfd);
        this.eventfds.set(cfd, e);
      }
      const t = this.proc!.installFd(e);
      if (t >= 0) temps.push(t);
      return t;
    }
    return what === BigInt(FD_OPEN) ? 0 : CLOSED_FD;
  }

  /** Client fd numbers inside an argument become model fds; stand-ins made for the call go in `temps`. */
  private translateFds(kind: string | undefined, request: number, arg: Uint8Array, temps: number[]): void {
    const v = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
    const at = (off: number): void => {
      if (arg.byteLength >= off + 4) v.setInt32(off, this.modelFdFor(v.getInt32(off, true), temps), true);
    };
    // A device fd from a group or from its cdev (only the cdev's binds to an iommufd).
    const device = kind === 'vfio-device' || kind === 'vfio-device-cdev';
    if (kind === 'vfio-group' && request === vfio.VFIO_GROUP_SET_CONTAINER) at(0);
    else if (device && request === vfio.VFIO_DEVICE_BIND_IOMMUFD) at(8);
    else if (device && request === vfio.VFIO_DEVICE_SET_IRQS && arg.byteLength >= IRQ_SET_SIZE) {
      // The vfio_irq_set header, then `count` eventfds for DATA_EVENTFD (a trigger's, or an unmask's).
      const irqs = decodeIrqSet(arg);
      if ((irqs.flags & VFIO_IRQ_SET_DATA_EVENTFD) === 0) return;
      const count = Math.min(irqs.count, (arg.byteLength - IRQ_SET_SIZE) / 4);
      for (let i = 0; i < count; i++) at(IRQ_SET_SIZE + 4 * i);
    } else if (device && request === vfio.VFIO_DEVICE_IOEVENTFD) at(IOEVENTFD_FD_AT);
  }

  private ioctl(p: Process, f: Frame): Uint8Array {
    const mfd = this.fds.get(f.fd);
    if (mfd === undefined) return encodeReply(-EBADF);
    const request = f.num >>> 0;
    let ret: number;
    let writeback: Uint8Array | undefined;
    let writebackAt = 0;
    if (f.flags & IOCTL_ARG_BYTES) {
      const arg = f.data.slice(0, MAX_IOCTL_ARG);
      const temps: number[] = [];
      this.translateFds(p.fdget(mfd)?.kind, request, arg, temps);
      const before = arg.slice();
      ret = p.ioctl(mfd, request, arg);
      for (const t of temps) p.close(t);
      // Only the bytes the kernel changed go back.
      let first = 0;
      while (first < arg.byteLength && arg[first] === before[first]) first++;
      if (first < arg.byteLength) {
        let last = arg.byteLength - 1;
        while (arg[last] === before[last]) last--;
        writeback = arg.subarray(first, last + 1);
        writebackAt = first;
      }
    } else {
      ret = p.ioctl(mfd, request, f.a);
    }
    // An ioctl that made a new file (GET_DEVICE_FD): the client gives it a number of its own.
    if (ret >= 3 && !this.refs.has(ret) && p.fdget(ret) !== undefined) {
      this.fdCallbacks++;
      const r = this.channel.call(encodeFrame({ type: CB_NEWFD }));
      const cfd = r !== undefined && r.num === 0 ? Number(BigInt.asIntN(64, r.a)) : -1;
      if (cfd < 0) {
        p.close(ret);
        return encodeReply(-EMFILE);
      }
      this.unmapFd(cfd);
      this.mapFd(cfd, ret);
      ret = cfd;
    }
    return encodeReply(ret, writeback, writebackAt);
  }

  private describe(f: Frame, reply: Uint8Array, callbacks: number): string {
    const r = decodeFrame(reply);
    const result = r.num !== 0 ? `-1 ${errnoName(r.num)}` : `${BigInt.asIntN(64, r.a)}`;
    const name = REQUEST_NAMES[f.type] ?? `type ${f.type}`;
    const hex = (v: bigint): string => `0x${v.toString(16)}`;
    let what = `${f.fd}`;
    switch (f.type) {
      case REQ_HELLO: {
        const h = decodeHello(f.data);
        what = h === undefined ? '' : `uid ${h.uid}, CapEff ${hex(h.capEff)}`;
        break;
      }
      case REQ_OPEN:
      case REQ_READLINK:
      case REQ_LISTDIR:
        what = JSON.stringify(pathOf(f));
        break;
      case REQ_IOCTL: {
        const mfd = this.fds.get(f.fd);
        const kind = mfd === undefined ? undefined : this.proc?.fdget(mfd)?.kind;
        what = `${f.fd}, ${ioctlName(f.num, kind)}`;
        break;
      }
      case REQ_PREAD:
      case REQ_PWRITE:
        what = `${f.fd}, ${f.type === REQ_PREAD ? f.b : f.data.byteLength}, ${hex(f.a)}`;
        break;
      case REQ_SETRLIMIT:
        what = `RLIMIT_MEMLOCK, ${hex(f.a)}, ${hex(f.b)}`;
        break;
      case REQ_SETUID:
      case REQ_SETGID:
      case REQ_CAPSET:
        what = f.type === REQ_CAPSET ? hex(f.a) : `${f.a}`;
        break;
      case REQ_STATUS:
      case REQ_SETGROUPS:
        what = '';
        break;
      case REQ_MUNMAP:
        what = `${hex(f.a)}, ${hex(f.b)}`;
        break;
    }
    const cb = callbacks > 0 ? ` (${callbacks} callback${callbacks > 1 ? 's' : ''})` : '';
    return `pid ${this.pid}: ${name}(${what}) = ${result}${cb}`;
  }
}
