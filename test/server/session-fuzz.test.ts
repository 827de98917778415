/**
 * The server's model side against a hostile client: random request frames (known and unknown types,
 * any fd, request number, values and data; paths the model routes and garbage) after a HELLO, with
 * the fake client answering callbacks. The session must answer every frame with a well-formed REPLY
 * (an errno, or a value) and never throw, and still answer STATUS afterwards: a client cannot take
 * the server down (issue 9's rule that exceptions escaping the model are bugs, at the socket).
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import {
  decodeFrame,
  encodeFrame,
  MAX_IOCTL_ARG,
  REPLY,
  REQ_CAPSET,
  REQ_CLOSE,
  REQ_DUP,
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
} from '../../src/server/protocol.ts';
import { Session } from '../../src/server/session.ts';
import { FakeClient, helloRoot } from './fake-client.ts';

const PATHS = [
  '/dev/vfio/vfio',
  '/dev/vfio/1',
  '/dev/vfio/0',
  '/dev/vfio/devices/vfio0',
  '/dev/iommu',
  '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit',
  '/sys/bus/pci/devices/0000:00:01.0/vfio-dev',
  '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode',
  '/sys/bus/pci/devices/0000:00:01.0/iommu_group',
  '/sys/bus/pci/devices/../../etc/passwd',
  '',
  '/dev/null',
];
const TYPES = [
  REQ_OPEN,
  REQ_CLOSE,
  REQ_IOCTL,
  REQ_PREAD,
  REQ_PWRITE,
  REQ_READ,
  REQ_WRITE,
  REQ_LSEEK,
  REQ_DUP,
  REQ_READLINK,
  REQ_LISTDIR,
  REQ_SIGNAL,
  REQ_SETRLIMIT,
  REQ_SETUID,
  REQ_SETGID,
  REQ_SETGROUPS,
  REQ_CAPSET,
  REQ_STATUS,
  REQ_MUNMAP,
];
const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: 64n }),
  fc.constantFrom(
    0x1000n,
    0x10_0000n,
    0x7000_0000_0000n,
    0x7f12_3400_0000n,
    1n << 40n,
    1n << 63n,
    (1n << 64n) - 1n,
  ),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);
const frameArb = fc.record({
  type: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...TYPES) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
  ),
  flags: fc.constantFrom(0, 0, 1, 0xffff),
  fd: fc.oneof(fc.integer({ min: -2, max: 40 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
  num: fc.oneof(
    fc.integer({ min: 0x3b64, max: 0x3b95 }),
    fc.integer({ min: 0, max: 40 }),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  ),
  a: u64,
  b: u64,
  data: fc.oneof(
    fc.constantFrom(...PATHS).map((p) => new TextEncoder().encode(`${p}\0`)),
    fc.uint8Array({ maxLength: 96 }),
    fc.constant(new Uint8Array(0)),
  ),
});

describe('a session under random request frames', () => {
  it('answers each with a REPLY and never throws; STATUS still answers after', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('6.1', '6.12', '6.18'),
        fc.constantFrom('intel', 'smmuv3') as fc.Arbitrary<'intel' | 'smmuv3'>,
        fc.array(frameArb, { minLength: 1, maxLength: 40 }),
        (kernel, iommu, frames) => {
          const host = new Host({ kernel, iommu });
          const client = new FakeClient();
          const session = new Session(host, client);
          expect(helloRoot(session)).toBe(0);
          client.map(0x7f12_3400_0000, 16 * 4096);
          for (let i = 0; i < 8; i++) client.reserveFd();
          client.eventfd();
          for (const f of frames) {
            const reply = decodeFrame(session.handle(encodeFrame(f)));
            expect(reply.type).toBe(REPLY);
            // An error is -1 with an errno; a success carries no errno.
            if (reply.num !== 0) expect(reply.a).toBe((1n << 64n) - 1n);
            expect(reply.data.byteLength).toBeLessThanOrEqual(MAX_IOCTL_ARG);
          }
          const status = decodeFrame(session.handle(encodeFrame({ type: REQ_STATUS })));
          expect([status.type, status.num]).toEqual([REPLY, 0]);
          session.close();
        },
      ),
      { numRuns: Number(process.env.SERVE_FUZZ_RUNS ?? 300) },
    );
  });
});
