/**
 * A client's memory as the model sees it: the ExternalAddressSpace of its model process. Every
 * question goes to the client as a callback during the client's own call (it is waiting for its
 * reply and answers them): which mapping holds an address (CB_VMA), whether an anonymous page was
 * ever written (CB_PAGES), and the bytes themselves (CB_READ, CB_WRITE).
 *
 * Within one call the pages read are cached (a table walk reads the same page many times); the
 * cache is dropped when the call ends, because the client's threads may write its memory between
 * calls. Writes go through at once. When the client is gone, reads give zeros and writes are lost,
 * as with a bus error.
 */

import type { ExternalAddressSpace, ExternalMapping } from '../mm/mm.ts';
import type { ExternalMemory } from '../mm/physmem.ts';
import {
  CB_PAGES,
  CB_READ,
  CB_VMA,
  CB_WRITE,
  decodeVmaReply,
  encodeFrame,
  type Frame,
  HEADER_SIZE,
  MAX_FRAME,
  VMA_ANONYMOUS,
} from './protocol.ts';

/** The way back to the client during a call. */
export interface ClientChannel {
  /** Sends a callback and waits for the client's CB_REPLY; undefined when the client is gone. */
  call(frame: Uint8Array): Frame | undefined;
}

const PAGE = 4096;
/** Largest read asked in one callback. */
const READ_CHUNK = Math.min(2 ** 20, MAX_FRAME - HEADER_SIZE);

export class ClientMemory implements ExternalAddressSpace, ExternalMemory {
  readonly memory: ExternalMemory = this;
  private readonly cache = new Map<number, Uint8Array>();
  /** Callbacks asked (for tests and the trace). */
  callbacks = 0;

  private readonly channel: ClientChannel;

  constructor(channel: ClientChannel) {
    this.channel = channel;
  }

  private call(f: Parameters<typeof encodeFrame>[0]): Frame | undefined {
    this.callbacks++;
    return this.channel.call(encodeFrame(f));
  }

  lookup(va: number): ExternalMapping | undefined {
    const r = this.call({ type: CB_VMA, a: BigInt(va) });
    if (r === undefined || r.num !== 0) return undefined;
    const m = decodeVmaReply(r.data);
    if (m === undefined || m.end <= m.start || m.end > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const pageLg2 = m.pageLg2 === 21 || m.pageLg2 === 30 ? m.pageLg2 : 12;
    return {
      start: Number(m.start),
      end: Number(m.end),
      prot: m.prot & 3,
      pageLg2,
      anonymous: (m.flags & VMA_ANONYMOUS) !== 0,
    };
  }

  populated(va: number): boolean {
    const r = this.call({ type: CB_PAGES, a: BigInt(va - (va % PAGE)), b: 1n });
    return r !== undefined && r.num === 0 && r.data.byteLength >= 1 && r.data[0] !== 0;
  }

  read(addr: number, dst: Uint8Array, dstOff: number, len: number): void {
    while (len > 0) {
      const page = addr - (addr % PAGE);
      const inPage = Math.min(len, page + PAGE - addr);
      let bytes = this.cache.get(page);
      if (bytes === undefined) {
        this.fetch(page, addr + len);
        bytes = this.cache.get(page)!;
      }
      dst.set(bytes.subarray(addr - page, addr - page + inPage), dstOff);
      addr += inPage;
      dstOff += inPage;
      len -= inPage;
    }
  }

  /** Reads the uncached pages from `page` on (up to `end`, one callback) into the cache. */
  private fetch(page: number, end: number): void {
    let last = page + PAGE;
    while (last < end && last - page < READ_CHUNK && !this.cache.has(last)) last += PAGE;
    const len = last - page;
    const r = this.call({ type: CB_READ, a: BigInt(page), b: BigInt(len) });
    const got = r !== undefined && r.num === 0 ? r.data : new Uint8Array(0);
    for (let off = 0; off < len; off += PAGE) {
      const p = new Uint8Array(PAGE);
      if (off < got.byteLength) p.set(got.subarray(off, Math.min(off + PAGE, got.byteLength)));
      this.cache.set(page + off, p);
    }
  }

  write(addr: number, src: Uint8Array, srcOff: number, len: number): void {
    const bytes = src.slice(srcOff, srcOff + len);
    for (let off = 0; off < len; ) {
      const n = Math.min(len - off, READ_CHUNK);
      this.call({ type: CB_WRITE, a: BigInt(addr + off), data: bytes.subarray(off, off + n) });
      off += n;
    }
    for (let a = addr; a < addr + len; ) {
      const page = a - (a % PAGE);
      const inPage = Math.min(addr + len - a, page + PAGE - a);
      this.cache.get(page)?.set(bytes.subarray(a - addr, a - addr + inPage), a - page);
      a += inPage;
    }
  }

  /** The client's call is answered: what it does next with its memory is its own business. */
  endCall(): void {
    this.cache.clear();
  }
}
