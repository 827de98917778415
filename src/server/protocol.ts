/**
 * The wire protocol between `vfio-nest serve` and its clients (native/preload.c): little-endian
 * binary frames over a Unix stream socket, one 32-byte header and the data. docs/serve-protocol.md
 * is the description; native/preload.c carries the same numbers (test/server/protocol.test.ts checks).
 *
 *   off size field
 *     0  u32  len    the whole frame's length, header included
 *     4  u16  type   what the frame is (REQ_*, CB_*, REPLY)
 *     6  u16  flags
 *     8  i32  fd     the client's fd number the request is about
 *    12  u32  num    ioctl request / open flags / whence / errno (in replies)
 *    16  u64  a      a value: ioctl argument, file offset, address, return value (replies: i64)
 *    24  u64  b      a second value: length, rlimit max, offset of the data in the argument
 *    32  ...  data
 */

import { defineStruct, type StructValues } from '../uapi/iommufd.ts';

/** The char major the model reports for VFIO device cdevs; the client reports it for their fds (fstat). */
export { VFIO_CDEV_MAJOR } from '../uapi/vfio.ts';

export const HEADER_SIZE = 32;
/** Largest frame either side sends: bigger transfers are split. */
export const MAX_FRAME = 4 * 2 ** 20 + HEADER_SIZE;
/** Largest argument an ioctl sends (the client caps argsz here). */
export const MAX_IOCTL_ARG = 2 ** 20;
/** Protocol version, sent in HELLO's `num`. */
export const PROTOCOL_VERSION = 1;

// Requests: client -> server.
export const REQ_HELLO = 1;
export const REQ_OPEN = 2;
export const REQ_CLOSE = 3;
export const REQ_IOCTL = 4;
export const REQ_PREAD = 5;
export const REQ_PWRITE = 6;
export const REQ_READ = 7;
export const REQ_WRITE = 8;
export const REQ_LSEEK = 9;
export const REQ_DUP = 10;
export const REQ_READLINK = 11;
export const REQ_LISTDIR = 12;
/** The client wrote its eventfd `fd` (`a` = the value), or with `num` = SIGNAL_FORGET closed it. */
export const REQ_SIGNAL = 13;
export const REQ_SETRLIMIT = 16;
export const REQ_SETUID = 17;
export const REQ_SETGID = 18;
export const REQ_SETGROUPS = 19;
export const REQ_CAPSET = 20;
export const REQ_STATUS = 32;
export const REQ_MUNMAP = 33;

// Callbacks: server -> client, only while one of that client's requests is being answered.
export const CB_READ = 64;
export const CB_WRITE = 65;
export const CB_VMA = 66;
export const CB_PAGES = 67;
export const CB_NEWFD = 68;
export const CB_FDCHECK = 69;
export const CB_SIGNAL = 70;
/** The client's answer to a callback. */
export const CB_REPLY = 79;
/** The server's answer to a request. */
export const REPLY = 128;

/** REQ_IOCTL: the data is the bytes the argument points to (else `a` is the argument's value). */
export const IOCTL_ARG_BYTES = 1;
/** HELLO: use the modelled kernel's default RLIMIT_MEMLOCK instead of the one sent. */
export const HELLO_MEMLOCK_HOST = 1;
/** CB_VMA reply flag: private anonymous memory (untouched pages are the zero page). */
export const VMA_ANONYMOUS = 1;
/** REQ_SIGNAL's `num` when the client closes the eventfd: the number no longer names it. */
export const SIGNAL_FORGET = 1;
/** CB_FDCHECK answers: the fd is open; it is an eventfd. */
export const FD_OPEN = 1;
export const FD_EVENTFD = 2;
/** RLIMIT_MEMLOCK, the only resource REQ_SETRLIMIT takes. */
export const RLIMIT_MEMLOCK = 8;

export const REQUEST_NAMES: Record<number, string> = {
  [REQ_HELLO]: 'hello',
  [REQ_OPEN]: 'open',
  [REQ_CLOSE]: 'close',
  [REQ_IOCTL]: 'ioctl',
  [REQ_PREAD]: 'pread',
  [REQ_PWRITE]: 'pwrite',
  [REQ_READ]: 'read',
  [REQ_WRITE]: 'write',
  [REQ_LSEEK]: 'lseek',
  [REQ_DUP]: 'dup',
  [REQ_READLINK]: 'readlink',
  [REQ_LISTDIR]: 'listdir',
  [REQ_SIGNAL]: 'signal',
  [REQ_SETRLIMIT]: 'setrlimit',
  [REQ_SETUID]: 'setuid',
  [REQ_SETGID]: 'setgid',
  [REQ_SETGROUPS]: 'setgroups',
  [REQ_CAPSET]: 'capset',
  [REQ_STATUS]: 'status',
  [REQ_MUNMAP]: 'munmap',
};

export interface Frame {
  type: number;
  flags: number;
  fd: number;
  num: number;
  a: bigint;
  b: bigint;
  data: Uint8Array;
}

export function encodeFrame(f: Partial<Frame> & { type: number }): Uint8Array {
  const data = f.data ?? new Uint8Array(0);
  const out = new Uint8Array(HEADER_SIZE + data.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.byteLength, true);
  v.setUint16(4, f.type, true);
  v.setUint16(6, f.flags ?? 0, true);
  v.setInt32(8, f.fd ?? -1, true);
  v.setUint32(12, (f.num ?? 0) >>> 0, true);
  v.setBigUint64(16, BigInt.asUintN(64, f.a ?? 0n), true);
  v.setBigUint64(24, BigInt.asUintN(64, f.b ?? 0n), true);
  out.set(data, HEADER_SIZE);
  return out;
}

/** Decodes one whole frame (its length already checked by the reader). */
export function decodeFrame(bytes: Uint8Array): Frame {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    type: v.getUint16(4, true),
    flags: v.getUint16(6, true),
    fd: v.getInt32(8, true),
    num: v.getUint32(12, true),
    a: v.getBigUint64(16, true),
    b: v.getBigUint64(24, true),
    data: bytes.subarray(HEADER_SIZE),
  };
}

/** A reply: `ret` >= 0, or -errno; `data` to be written at offset `dataOffset` of the argument. */
export function encodeReply(ret: number | bigint, data?: Uint8Array, dataOffset = 0): Uint8Array {
  const r = BigInt(ret);
  return encodeFrame({
    type: REPLY,
    num: r < 0n ? Number(-r) : 0,
    a: r < 0n ? -1n : r,
    b: BigInt(dataOffset),
    data,
  });
}

/**
 * Splits a byte stream into frames: push() what the socket gave, then take whole frames. A length
 * outside [HEADER_SIZE, MAX_FRAME] is a protocol error (the connection is dropped).
 */
export class FrameReader {
  private buf = new Uint8Array(0);
  private used = 0;

  push(chunk: Uint8Array): void {
    if (this.used + chunk.byteLength > this.buf.byteLength) {
      const next = new Uint8Array(Math.max(2 * this.buf.byteLength, this.used + chunk.byteLength, 4096));
      next.set(this.buf.subarray(0, this.used));
      this.buf = next;
    }
    this.buf.set(chunk, this.used);
    this.used += chunk.byteLength;
  }

  /** The next whole frame (a copy), undefined if incomplete; throws on a bad length. */
  next(): Uint8Array | undefined {
    if (this.used < 4) return undefined;
    const len = new DataView(this.buf.buffer, this.buf.byteOffset, 4).getUint32(0, true);
    if (len < HEADER_SIZE || len > MAX_FRAME) throw new Error(`bad frame length ${len}`);
    if (this.used < len) return undefined;
    const frame = this.buf.slice(0, len);
    this.buf.copyWithin(0, len, this.used);
    this.used -= len;
    return frame;
  }
}

// The blocks' layouts as uapi's struct codecs, one table each (offsets: docs/serve-protocol.md "Blocks").

export const STATUS_BLOCK_SIZE = 56;
/** The process state block: what STATUS and every credential request answer with. */
export const statusBlock = defineStruct(STATUS_BLOCK_SIZE, STATUS_BLOCK_SIZE, {
  uid: [0, 'u32'],
  euid: [4, 'u32'],
  gid: [8, 'u32'],
  egid: [12, 'u32'],
  capEff: [16, 'u64'],
  memlockCur: [24, 'u64'],
  memlockMax: [32, 'u64'],
  vmLckKb: [40, 'u64'],
  vmPinKb: [48, 'u64'],
});
export type StatusBlock = StructValues<typeof statusBlock.fields>;

export const HELLO_SIZE = 48;
/** HELLO's data: who the client is when it connects; `flags`: HELLO_MEMLOCK_HOST. */
export const helloBlock = defineStruct(HELLO_SIZE, HELLO_SIZE, {
  pid: [0, 'u32'],
  uid: [4, 'u32'],
  euid: [8, 'u32'],
  gid: [12, 'u32'],
  egid: [16, 'u32'],
  flags: [20, 'u32'],
  capEff: [24, 'u64'],
  memlockCur: [32, 'u64'],
  memlockMax: [40, 'u64'],
});
export type Hello = StructValues<typeof helloBlock.fields>;

/** A HELLO block, undefined when the client sent too few bytes. */
export function decodeHello(b: Uint8Array): Hello | undefined {
  return b.byteLength < HELLO_SIZE ? undefined : helloBlock.decode(b);
}

export const VMA_REPLY_SIZE = 32;
/** CB_VMA's reply data: the client's mapping around an address. */
export const vmaReply = defineStruct(VMA_REPLY_SIZE, VMA_REPLY_SIZE, {
  start: [0, 'u64'],
  end: [8, 'u64'],
  prot: [16, 'u32'],
  pageLg2: [20, 'u32'],
  flags: [24, 'u32'],
});
export type VmaReply = StructValues<typeof vmaReply.fields>;

/** A CB_VMA reply, undefined when the client sent too few bytes. */
export function decodeVmaReply(b: Uint8Array): VmaReply | undefined {
  return b.byteLength < VMA_REPLY_SIZE ? undefined : vmaReply.decode(b);
}
