/**
 * A client of the serve protocol without a socket or a C program: its memory is a map of pages,
 * its mappings a list, its fd table a set; it answers the server's callbacks as native/preload.c
 * does. Drives a Session directly, so the model's side of the protocol is tested exactly.
 */

import type { ClientChannel } from '../../src/server/client-memory.ts';
import {
  CB_FDCHECK,
  CB_NEWFD,
  CB_PAGES,
  CB_READ,
  CB_REPLY,
  CB_SIGNAL,
  CB_VMA,
  CB_WRITE,
  decodeFrame,
  encodeFrame,
  FD_EVENTFD,
  FD_OPEN,
  type Frame,
  HELLO_MEMLOCK_HOST,
  type Hello,
  helloBlock,
  PROTOCOL_VERSION,
  REQ_HELLO,
  VMA_ANONYMOUS,
  vmaReply,
} from '../../src/server/protocol.ts';
import type { Session } from '../../src/server/session.ts';

const PAGE = 4096;

export interface FakeMapping {
  start: number;
  end: number;
  prot: number;
  anonymous: boolean;
}

export class FakeClient implements ClientChannel {
  /** Written pages, by address: what /proc/self/pagemap reports as populated. */
  readonly pages = new Map<number, Uint8Array>();
  readonly mappings: FakeMapping[] = [];
  /** The client's own open fds (0..2 and the ones it reserved for the model). */
  readonly fds = new Set([0, 1, 2]);
  /** Which of those are eventfds. */
  readonly eventfds = new Set<number>();
  /** What the server added to the client's eventfds (CB_SIGNAL), in order: [fd, count]. */
  readonly signals: [number, bigint][] = [];
  /** Callback types asked, in order. */
  readonly asked: number[] = [];
  private nextFd = 20;

  /** mmap: anonymous private memory, untouched. */
  map(start: number, len: number, prot = 3): number {
    this.mappings.push({ start, end: start + len, prot, anonymous: true });
    return start;
  }

  /** munmap: the pages and the mapping go away. */
  unmap(start: number, len: number): void {
    for (let i = this.mappings.length - 1; i >= 0; i--) {
      const m = this.mappings[i];
      if (m.start >= start && m.end <= start + len) this.mappings.splice(i, 1);
    }
    for (const p of [...this.pages.keys()]) if (p >= start && p < start + len) this.pages.delete(p);
  }

  write(addr: number, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.byteLength; ) {
      const a = addr + i;
      const page = a - (a % PAGE);
      let p = this.pages.get(page);
      if (p === undefined) {
        p = new Uint8Array(PAGE);
        this.pages.set(page, p);
      }
      const n = Math.min(bytes.byteLength - i, page + PAGE - a);
      p.set(bytes.subarray(i, i + n), a - page);
      i += n;
    }
  }

  read(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; ) {
      const a = addr + i;
      const page = a - (a % PAGE);
      const n = Math.min(len - i, page + PAGE - a);
      const p = this.pages.get(page);
      if (p !== undefined) out.set(p.subarray(a - page, a - page + n), i);
      i += n;
    }
    return out;
  }

  private mappingAt(addr: number): FakeMapping | undefined {
    return this.mappings.find((m) => addr >= m.start && addr < m.end);
  }

  call(frame: Uint8Array): Frame | undefined {
    const f = decodeFrame(frame);
    this.asked.push(f.type);
    const reply = (r: Partial<Frame> = {}): Frame => decodeFrame(encodeFrame({ type: CB_REPLY, ...r }));
    const addr = Number(f.a);
    switch (f.type) {
      case CB_READ:
        return this.mappingAt(addr) ? reply({ data: this.read(addr, Number(f.b)) }) : reply({ num: 14 });
      case CB_WRITE:
        if (!this.mappingAt(addr)) return reply({ num: 14 });
        this.write(addr, f.data.slice());
        return reply();
      case CB_VMA: {
        const m = this.mappingAt(addr);
        if (m === undefined) return reply({ num: 2 });
        return reply({
          data: vmaReply.encode({
            start: BigInt(m.start),
            end: BigInt(m.end),
            prot: m.prot,
            pageLg2: 12,
            flags: m.anonymous ? VMA_ANONYMOUS : 0,
          }),
        });
      }
      case CB_PAGES: {
        const out = new Uint8Array(Number(f.b));
        for (let i = 0; i < out.length; i++) out[i] = this.pages.has(addr + i * PAGE) ? 1 : 0;
        return reply({ data: out });
      }
      case CB_NEWFD: {
        const fd = this.nextFd++;
        this.fds.add(fd);
        return reply({ a: BigInt(fd) });
      }
      case CB_FDCHECK:
        return reply({
          a: this.eventfds.has(f.fd) ? BigInt(FD_EVENTFD) : this.fds.has(f.fd) ? BigInt(FD_OPEN) : 0n,
        });
      case CB_SIGNAL:
        if (!this.eventfds.has(f.fd)) return reply({ num: 9 });
        this.signals.push([f.fd, f.a]);
        return reply();
      default:
        return undefined;
    }
  }

  /** eventfd(2) of the client's own. */
  eventfd(): number {
    const fd = this.reserveFd();
    this.eventfds.add(fd);
    return fd;
  }

  /** A reserved fd number for an open (the interposer opens /dev/null for it). */
  reserveFd(): number {
    const fd = this.nextFd++;
    this.fds.add(fd);
    return fd;
  }
}

/** Sends one request to the session and decodes its reply: ret (or -errno) and the data. */
export function request(
  s: Session,
  f: Partial<Frame> & { type: number },
): { ret: number; data: Uint8Array; at: number } {
  const r = decodeFrame(s.handle(encodeFrame(f)));
  return {
    ret: r.num !== 0 ? -r.num : Number(BigInt.asIntN(64, r.a)),
    data: r.data.slice(),
    at: Number(r.b),
  };
}

/** HELLO as root with every capability and the modelled kernel's default RLIMIT_MEMLOCK. */
export function helloRoot(s: Session, over: Partial<Hello> = {}): number {
  const h: Hello = {
    pid: 4242,
    uid: 0,
    euid: 0,
    gid: 0,
    egid: 0,
    capEff: 0x1ff_ffff_ffffn,
    memlockCur: 0n,
    memlockMax: 0n,
    flags: HELLO_MEMLOCK_HOST,
    ...over,
  };
  return request(s, { type: REQ_HELLO, num: PROTOCOL_VERSION, data: helloBlock.encode(h) }).ret;
}
