/**
 * The kernel's promise, checked by machine: a failed ioctl changes nothing, and when a process goes
 * away its locked memory and pins come back. Random operation sequences on random state, across
 * kernel profiles and host IOMMUs; after every failed call the state digest must equal the one before.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stateDigest } from '../../src/host/digest.ts';
import { Host } from '../../src/host/host.ts';
import type { Process } from '../../src/host/process.ts';
import { VfioContainerHandle, VfioGroupHandle } from '../../src/host/vfio-api.ts';
import { RLIM_INFINITY } from '../../src/mm/task.ts';
import { VFIO_IOMMU_DIRTY_PAGES } from '../../src/uapi/vfio.ts';

type Op =
  | { k: 'openContainer' }
  | { k: 'openGroup' }
  | { k: 'close'; fd: number }
  | { k: 'setContainer'; g: number; c: number }
  | { k: 'unset'; g: number }
  | { k: 'setIommu'; c: number; type: number }
  | { k: 'map'; c: number; iova: number; pages: number; off: number; flags: number; argsz: number }
  | { k: 'unmap'; c: number; iova: number; pages: number; flags: number }
  | { k: 'info'; c: number; argsz: number }
  | { k: 'dirty'; c: number; flags: number }
  | { k: 'rlimit'; pages: number }
  | { k: 'drop' }
  | { k: 'raw'; fd: number; nr: number; bytes: number[] };

// fd 3 is usually the container and 4 the group (the setup prefix opens them in that order).
const fdArb = fc.oneof(
  { arbitrary: fc.constantFrom(3, 4), weight: 6 },
  { arbitrary: fc.integer({ min: -1, max: 8 }), weight: 1 },
);
/** Most runs begin by assigning the device, so later calls reach the backend. */
const setupArb = fc.constantFrom<Op[]>(
  [],
  [{ k: 'openContainer' }, { k: 'openGroup' }, { k: 'setContainer', g: 4, c: 3 }],
  [
    { k: 'openContainer' },
    { k: 'openGroup' },
    { k: 'setContainer', g: 4, c: 3 },
    { k: 'setIommu', c: 3, type: 1 },
  ],
  [
    { k: 'openContainer' },
    { k: 'openGroup' },
    { k: 'setContainer', g: 4, c: 3 },
    { k: 'setIommu', c: 3, type: 3 },
  ],
  // One mapping already in place, so every run of this shape reaches the mapped state.
  [
    { k: 'openContainer' },
    { k: 'openGroup' },
    { k: 'setContainer', g: 4, c: 3 },
    { k: 'setIommu', c: 3, type: 3 },
    { k: 'map', c: 3, iova: 0x100000, pages: 1, off: 0, flags: 3, argsz: 32 },
  ],
  [
    { k: 'openContainer' },
    { k: 'openGroup' },
    { k: 'setContainer', g: 4, c: 3 },
    { k: 'setIommu', c: 3, type: 6 },
  ],
);
const iovaArb = fc.oneof(
  fc.integer({ min: 0, max: 16 }).map((i) => 0x100000 + i * 0x1000),
  fc.constantFrom(0, 0x800, 0xfee00000, 0x8000000, 2 ** 39, 2 ** 44, 2 ** 48, 2 ** 64 - 0x1000),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ k: 'openContainer' }),
  fc.constant<Op>({ k: 'openGroup' }),
  fdArb.map((fd): Op => ({ k: 'close', fd })),
  fc.record({ k: fc.constant('setContainer' as const), g: fdArb, c: fdArb }),
  fc.record({ k: fc.constant('unset' as const), g: fdArb }),
  fc.record({ k: fc.constant('setIommu' as const), c: fdArb, type: fc.constantFrom(0, 1, 3, 6, 9, 10) }),
  fc.record({
    k: fc.constant('map' as const),
    c: fdArb,
    iova: iovaArb,
    pages: fc.constantFrom(0, 1, 2, 8, 17, 512),
    off: fc.constantFrom(0, 0x1000, 0x800, 0x3ff000),
    flags: fc.constantFrom(0, 1, 2, 3, 3, 3, 4, 7, 8),
    argsz: fc.constantFrom(32, 32, 31, 4096),
  }),
  fc.record({
    k: fc.constant('unmap' as const),
    c: fdArb,
    iova: iovaArb,
    pages: fc.constantFrom(0, 1, 2, 8, 2 ** 20),
    flags: fc.constantFrom(0, 1, 2, 4, 6, 8),
  }),
  fc.record({ k: fc.constant('info' as const), c: fdArb, argsz: fc.constantFrom(0, 15, 16, 24, 116, 4096) }),
  fc.record({ k: fc.constant('dirty' as const), c: fdArb, flags: fc.constantFrom(0, 1, 2, 3, 4) }),
  fc.record({ k: fc.constant('rlimit' as const), pages: fc.constantFrom(0, 4, 16, 1024) }),
  fc.constant<Op>({ k: 'drop' }),
  fc.record({
    k: fc.constant('raw' as const),
    fd: fdArb,
    nr: fc.integer({ min: 0x3b60, max: 0x3b80 }),
    bytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 64 }),
  }),
);

/** Runs one op; returns its result (< 0 = failed) or undefined for ops that are not calls. */
function run(p: Process, buf: number, op: Op): number {
  switch (op.k) {
    case 'openContainer':
      return p.open('/dev/vfio/vfio');
    case 'openGroup':
      return p.open(`/dev/vfio/${p.host.groups[0].id}`);
    case 'close':
      return op.fd >= 3 ? p.close(op.fd) : p.close(99);
    case 'setContainer':
      return new VfioGroupHandle(p, op.g).setContainer(op.c);
    case 'unset':
      return new VfioGroupHandle(p, op.g).unsetContainer();
    case 'setIommu':
      return new VfioContainerHandle(p, op.c).setIommu(op.type);
    case 'map':
      return new VfioContainerHandle(p, op.c).mapDma({
        vaddr: buf + op.off,
        iova: BigInt(op.iova),
        size: op.pages * 4096,
        flags: op.flags,
        argsz: op.argsz,
      });
    case 'unmap':
      return new VfioContainerHandle(p, op.c).unmapDma({
        iova: BigInt(op.iova),
        size: BigInt(op.pages) * 4096n,
        flags: op.flags,
      }).ret;
    case 'info':
      return new VfioContainerHandle(p, op.c).getInfo(op.argsz).ret;
    case 'dirty': {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(0, 8, true);
      new DataView(b.buffer).setUint32(4, op.flags, true);
      return p.ioctl(op.c, VFIO_IOMMU_DIRTY_PAGES, b);
    }
    case 'rlimit':
      return p.setrlimitMemlock(BigInt(op.pages) * 4096n, p.task.memlock.max);
    case 'drop':
      return p.setuid(1000);
    case 'raw':
      return p.ioctl(op.fd, op.nr, new Uint8Array(op.bytes));
  }
}

const CONFIGS = [
  { kernel: '6.1', iommu: 'intel' },
  { kernel: '6.12', iommu: 'intel' },
  { kernel: '6.18', iommu: 'intel' },
  { kernel: '6.12', iommu: 'virtio', params: { 'vfio_iommu_type1.allow_unsafe_interrupts': '1' } },
  { kernel: '6.18', iommu: 'virtio' },
  { kernel: '3.19', iommu: 'intel' },
] as const;

describe('a failed ioctl changes nothing; exit returns every pin and charge', () => {
  for (const cfg of CONFIGS) {
    it(`${cfg.kernel} ${cfg.iommu}${'params' in cfg ? ' (allow_unsafe_interrupts)' : ''}`, () => {
      const succeeded = new Map<string, number>();
      fc.assert(
        fc.property(setupArb, fc.array(opArb, { minLength: 20, maxLength: 60 }), (setup, rest) => {
          const ops = [...setup, ...rest];
          const host = new Host({ ...cfg, memory: 2 ** 32 });
          const p = host.spawn({ memlock: { cur: RLIM_INFINITY, max: RLIM_INFINITY } });
          const buf = p.mmap(8 << 20);
          for (const op of ops) {
            const before = stateDigest(host, [p]);
            const r = run(p, buf, op);
            if (r >= 0) succeeded.set(op.k, (succeeded.get(op.k) ?? 0) + 1);
            if (r < 0 && op.k !== 'rlimit' && op.k !== 'drop')
              expect(stateDigest(host, [p]), `${op.k} -> ${r}`).toBe(before);
          }
          p.exit();
          expect(p.mm.lockedVm).toBe(0);
          expect(p.mm.pinnedPages).toBe(0);
          for (const g of host.groups) {
            expect(g.domain).toBe(null);
            expect(g.ownerCount).toBe(0);
          }
        }),
        { numRuns: Number(process.env.FC_RUNS ?? 150) },
      );
      // The sequences must reach the interesting states, not just fail early.
      const attachable = !(cfg.iommu === 'virtio' && !('params' in cfg));
      for (const k of attachable ? ['setContainer', 'setIommu', 'map', 'unmap', 'info'] : ['setContainer'])
        expect(succeeded.get(k) ?? 0, `successful ${k} calls`).toBeGreaterThan(0);
    });
  }
});
