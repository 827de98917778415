/**
 * The kernel's promise for iommufd, checked by machine: random sequences of iommufd and cdev calls
 * (valid, invalid and garbage) on a 6.18 SMMUv3 host; after every failed call the state is what it was
 * (objects, users, IOAS areas and reserved ranges, pins and charges, STEs and page-table leaves), no call
 * throws, and when the process exits everything it pinned and charged comes back.
 *
 * Two failures change state on purpose, as the kernel's do: IOAS_UNMAP that meets a mapping sticking
 * out of its range after unmapping the ones before it (iopt_unmap_iova_range), and HWPT_INVALIDATE,
 * which has issued the commands of any full batch before the refused one (arm_vsmmu_cache_invalidate;
 * nested-iommu.md §7.4, recorded in 6.18-iommufd/x10-iommufd-invalidate seq 25-26).
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stateDigest } from '../../src/host/digest.ts';
import { Host } from '../../src/host/host.ts';
import type { Process } from '../../src/host/process.ts';
import type { IommufdFile } from '../../src/iommufd/main.ts';
import type { Ioas } from '../../src/iommufd/objects.ts';
import { encodeCommand } from '../../src/smmu/index.ts';
import { IO } from '../../src/uapi/ioctl.ts';
import { IommufdHandle, VfioCdevHandle } from '../../src/vmm/iommufd-api.ts';

type Op =
  | { k: 'ioasAlloc' }
  | { k: 'map'; ioas: number; iova: number; pages: number; off: number; flags: number }
  | { k: 'unmap'; ioas: number; iova: number; pages: number }
  | { k: 'hwpt'; pt: number; flags: number; ste0?: bigint }
  | { k: 'viommu'; hwpt: number; type: number }
  | { k: 'vdevice'; viommu: number; virt: number }
  | { k: 'veventq'; viommu: number; depth: number }
  | { k: 'attach'; pt: number }
  | { k: 'detach' }
  | { k: 'destroy'; id: number }
  | { k: 'invalidate'; id: number; ops: number[] }
  | { k: 'raw'; nr: number; bytes: number[] };

const id = fc.integer({ min: 0, max: 12 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ k: 'ioasAlloc' }),
  fc.record({
    k: fc.constant('map' as const),
    ioas: id,
    iova: fc.constantFrom(0, 0x1000, 0x40_0000, 0x800_0000, 0x4000_0000, 2 ** 44),
    pages: fc.integer({ min: 0, max: 4 }),
    off: fc.constantFrom(0, 0x1000, 0x800),
    flags: fc.constantFrom(7, 6, 5, 1, 0xf),
  }),
  fc.record({
    k: fc.constant('unmap' as const),
    ioas: id,
    iova: fc.constantFrom(0, 0x1000, 0x40_0000, 0x4000_0000),
    pages: fc.integer({ min: 0, max: 8 }),
  }),
  fc.record({
    k: fc.constant('hwpt' as const),
    pt: id,
    flags: fc.constantFrom(0, 1, 2, 8, 5),
    ste0: fc.option(fc.constantFrom(0n, 0x9n, 0x4010_000bn, 0xfn, 0x1n), { nil: undefined }),
  }),
  fc.record({ k: fc.constant('viommu' as const), hwpt: id, type: fc.constantFrom(1, 0, 2) }),
  fc.record({ k: fc.constant('vdevice' as const), viommu: id, virt: fc.constantFrom(0x42, 0x43) }),
  fc.record({ k: fc.constant('veventq' as const), viommu: id, depth: fc.constantFrom(0, 1, 64) }),
  fc.record({ k: fc.constant('attach' as const), pt: id }),
  fc.constant<Op>({ k: 'detach' }),
  fc.record({ k: fc.constant('destroy' as const), id }),
  fc.record({
    k: fc.constant('invalidate' as const),
    id,
    ops: fc.array(fc.constantFrom(0x10, 0x11, 0x12, 0x30, 0x05, 0x03, 0x46), { maxLength: 5 }),
  }),
  fc.record({
    k: fc.constant('raw' as const),
    nr: fc.integer({ min: 0x7f, max: 0x96 }),
    bytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 56 }),
  }),
);

/** The iommufd side of the state: objects and their users, each IOAS's areas, reserved ranges, pins. */
function iommufdDigest(proc: Process, fd: number): string {
  const f = proc.fdget(fd) as IommufdFile | undefined;
  if (f === undefined) return 'closed';
  const out: unknown[] = [];
  for (const [i, o] of f.ctx.entries) {
    if (typeof o === 'string') {
      out.push([i, o]);
      continue;
    }
    const e: unknown[] = [i, o.type, o.users];
    if (o.type === 'ioas') {
      const t = (o as Ioas).iopt;
      e.push(
        t.iovaAlignment.toString(),
        t.domains.length,
        t.areas.map((a) => [a.iova.toString(), a.last.toString(), a.prot, a.pages.runs?.length ?? -1]),
        t.reserved.map((r) => [r.start.toString(), r.last.toString()]),
      );
    }
    out.push(e);
  }
  return JSON.stringify(out);
}

/** Refused calls whose digest was compared: the property is not vacuous. */
let refusedChecked = 0;

function run(ops: Op[]): void {
  const host = new Host({
    kernel: '6.18',
    iommu: 'smmuv3',
    iommufd: true,
    params: { 'arm_smmu_v3.nest_ignore_coherency': '1' },
  });
  const proc = host.spawn();
  const ifd = IommufdHandle.open(proc) as IommufdHandle;
  const cdev = VfioCdevHandle.open(proc, '/dev/vfio/devices/vfio0') as VfioCdevHandle;
  expect(cdev.bind(ifd).ret).toBe(0);
  const buf = proc.mmap(1 << 20);
  proc.mm.fillUser(buf, 1 << 20, 0x5a);
  const digest = (): string => stateDigest(host, [proc]) + iommufdDigest(proc, ifd.fd);
  for (const op of ops) {
    const before = digest();
    let ret: number;
    let partial = false;
    switch (op.k) {
      case 'ioasAlloc':
        ret = ifd.ioasAlloc().ret;
        break;
      case 'map':
        ret = ifd.ioasMap({
          ioasId: op.ioas,
          userVa: buf + op.off,
          length: op.pages * 0x1000,
          iova: op.iova,
          flags: op.flags,
        }).ret;
        break;
      case 'unmap':
        ret = ifd.ioasUnmap({ ioasId: op.ioas, iova: op.iova, length: op.pages * 0x1000 }).ret;
        partial = true;
        break;
      case 'hwpt':
        ret =
          op.ste0 === undefined
            ? ifd.hwptAlloc({ devId: 1, ptId: op.pt, flags: op.flags }).ret
            : ifd.hwptAllocNestedSmmuv3(1, op.pt, op.ste0, 0xd4n).ret;
        break;
      case 'viommu':
        ret = ifd.viommuAlloc({ devId: 1, hwptId: op.hwpt, type: op.type }).ret;
        break;
      case 'vdevice':
        ret = ifd.vdeviceAlloc({ viommuId: op.viommu, devId: 1, virtId: op.virt }).ret;
        break;
      case 'veventq':
        ret = ifd.veventqAlloc({ viommuId: op.viommu, depth: op.depth }).ret;
        break;
      case 'attach':
        ret = cdev.attach(op.pt).ret;
        break;
      case 'detach':
        ret = cdev.detach();
        break;
      case 'destroy':
        ret = ifd.destroy(op.id);
        break;
      case 'invalidate':
        ret = ifd.invalidate(
          op.id,
          op.ops.map((o) => encodeCommand(o, { sid: 0x42, asid: 1, addr: 0x1000, leaf: 1 })),
        ).ret;
        partial = true;
        break;
      case 'raw': {
        const b = Uint8Array.from(op.bytes);
        if (b.length >= 4) new DataView(b.buffer).setUint32(0, b.length, true);
        ret = proc.ioctl(ifd.fd, IO(0x3b, op.nr), b);
        break;
      }
    }
    if (ret < 0 && !partial) {
      refusedChecked++;
      expect(
        digest(),
        `${JSON.stringify(op, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))} -> ${ret}`,
      ).toBe(before);
    }
  }
  proc.exit();
  expect(proc.mm.pinnedPages).toBe(0);
  expect(proc.mm.pinnedVm).toBe(0);
  expect(proc.mm.lockedVm).toBe(0);
  expect(host.iommufd!.lockedVm(0)).toBe(0);
  // The device is back on the blocking domain.
  expect(host.groups[0].domain).toBe(null);
}

describe('iommufd: a failed call changes nothing', () => {
  it('random call sequences (fast-check)', () => {
    const setup = fc.constantFrom<Op[]>(
      [],
      [{ k: 'ioasAlloc' }, { k: 'map', ioas: 2, iova: 0x40_0000, pages: 4, off: 0, flags: 7 }],
      [
        { k: 'ioasAlloc' },
        { k: 'map', ioas: 2, iova: 0x40_0000, pages: 4, off: 0, flags: 7 },
        { k: 'hwpt', pt: 2, flags: 1 },
        { k: 'viommu', hwpt: 3, type: 1 },
        { k: 'vdevice', viommu: 4, virt: 0x42 },
        { k: 'attach', pt: 3 },
      ],
    );
    fc.assert(
      fc.property(setup, fc.array(opArb, { maxLength: 30 }), (pre, ops) => run([...pre, ...ops])),
      { numRuns: 300 },
    );
    expect(refusedChecked).toBeGreaterThan(300);
  });
});
