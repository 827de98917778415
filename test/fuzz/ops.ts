/**
 * The operations a fuzz run is made of, and their fast-check arbitraries. Operations name their
 * targets abstractly (the i-th open container fd, a page of a memory region) and are resolved
 * against the state when they run, so any sequence is meaningful in any state. Values are biased
 * to the boundaries the references talk about (apertures, reserved windows, 2^64, the last page).
 */

import fc from 'fast-check';
import { KERNEL_VERSIONS, type KernelVersion } from '../../src/uapi/profile.ts';
import type { FuzzConfig } from './facts.ts';

/** JSON with 64-bit values in hex: how ops, counterexamples and predictions are printed. */
export function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
}

/** The file system calls the fuzzer makes on an fd. */
export type FileIo = 'read' | 'write' | 'pread' | 'pwrite' | 'lseek';

/** An fd: the i-th open fd of a kind (ascending), or a literal number. */
export type FdSel =
  | {
      sel: 'container' | 'group' | 'device' | 'sysfs' | 'eventfd' | 'iommufd' | 'cdev' | 'other' | 'any';
      i: number;
    }
  | { sel: 'num'; fd: number };

/** A process address: a page (and offset) of a region, or an absolute value. */
export type VaSel = { r: number; page: number; off: number } | { abs: bigint };

/** How an ioctl's struct reaches the kernel: a byte buffer, or a pointer into process memory. */
export type Via = 'bytes' | 'short' | 'ptr' | 'ptr-ro' | 'ptr-hole';

export type RawArg =
  | { t: 'bytes'; bytes: number[]; argsz?: number; flags?: number }
  /** A well-formed struct of a real request (MUTATE_BASES), then bytes overwritten and bits flipped. */
  | { t: 'mutate'; base: number; sets: [number, number][]; flips: [number, number][] }
  | { t: 'ptr'; where: 'rw' | 'ro' | 'hole' | 'region'; off: number; bytes: number[] }
  | { t: 'value'; v: bigint };

export type Op =
  | { k: 'open'; what: 'container' | 'group' | 'group-bad' | 'sysfs' | 'eventfd' | 'iommufd' | 'cdev' }
  | { k: 'close'; fd: FdSel }
  /** eventfd(2) until the table is full (NOFILE), then one more: EMFILE, and every later open too. */
  | { k: 'fillFds' }
  | { k: 'api'; fd: FdSel }
  | { k: 'ext'; fd: FdSel; ext: number }
  | { k: 'setIommu'; fd: FdSel; type: number }
  | { k: 'status'; fd: FdSel; argsz: number; via: Via }
  | { k: 'setContainer'; fd: FdSel; target: FdSel }
  | { k: 'unset'; fd: FdSel }
  | { k: 'device'; fd: FdSel; name: 'good' | 'bad' | 'empty' }
  | { k: 'map'; fd: FdSel; iova: bigint; size: bigint; va: VaSel; flags: number; argsz: number; via: Via }
  | {
      k: 'unmap';
      fd: FdSel;
      iova: bigint;
      size: bigint;
      flags: number;
      argsz: number;
      via: Via;
      bitmap?: { pgsize: bigint; size: bigint; data: VaSel };
    }
  | { k: 'info'; fd: FdSel; argsz: number; len: number; via: Via }
  | {
      k: 'dirty';
      fd: FdSel;
      flags: number;
      argsz: number;
      get?: { iova: bigint; size: bigint; pgsize: bigint; bsize: bigint; data: VaSel };
    }
  | { k: 'rlimit'; cur: bigint; max: bigint }
  | { k: 'setuid'; uid: number }
  | { k: 'dropCaps'; keep: number }
  | { k: 'touch'; va: VaSel; pages: number }
  | { k: 'munmap'; r: number; page: number; pages: number; remap: boolean }
  /** mmap of the device's BAR0 through its fd at BAR_VA: device memory (VM_PFNMAP) MAP_DMA can map. */
  | { k: 'mmapBar'; page: number; pages: number }
  | { k: 'param'; name: number; value: string }
  | { k: 'exit' }
  | { k: 'raw'; fd: FdSel; req: number; arg: RawArg }
  /** A vfio-pci device request on the device fd with a struct of eight 32-bit words. */
  | { k: 'dev'; req: number; words: number[] }
  /** read, write, pread, pwrite or lseek (offset, SEEK_SET..SEEK_HOLE) on an fd; no writes reach a device. */
  | { k: 'fileIo'; fd: FdSel; how: FileIo; off: number; len: number; whence: number };

/** The process's memory regions: [base, pages, kind]. */
export const REGIONS = [
  { base: 0x1000_0000, pages: 1024, kind: 'anon' as const, prot: 3 },
  { base: 0x2000_0000, pages: 1024, kind: 'huge' as const, prot: 3 },
  { base: 0x3000_0000, pages: 16, kind: 'anon' as const, prot: 1 },
  // A hole: never mapped.
  { base: 0x4000_0000, pages: 16, kind: 'hole' as const, prot: 0 },
  // Where mmapBar puts the device's BAR0 (a hole until then).
  { base: 0x6000_0000, pages: 256, kind: 'bar' as const, prot: 3 },
];
/** Where pointer arguments of ioctls live: read-write, read-only, and a hole. */
export const SCRATCH = { rw: 0x5000_0000, ro: 0x5010_0000, hole: 0x5020_0000, pages: 16 };

export const PARAMS = [
  'vfio_iommu_type1.dma_entry_limit',
  'vfio_iommu_type1.allow_unsafe_interrupts',
  'vfio_iommu_type1.disable_hugepages',
  'vfio.enable_unsafe_noiommu_mode',
];

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const PG = 0x1000n;
const T64 = 1n << 64n;

export const iovaArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 40 }).map((k) => 0x10_0000n + BigInt(k) * PG) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 8 }).map((k) => 0x20_0000n * BigInt(k + 1)) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      0n,
      0x800n,
      0x7f_f000n,
      0x800_0000n,
      0x80f_f000n,
      0x810_0000n,
      0xfedf_f000n,
      0xfee0_0000n,
      0xfeef_f000n,
      0xfef0_0000n,
      (1n << 39n) - PG,
      1n << 39n,
      (1n << 44n) - PG,
      1n << 44n,
      (1n << 48n) - PG,
      1n << 48n,
      1n << 63n,
      T64 - 2n * PG,
      T64 - PG,
    ),
  },
  { weight: 1, arbitrary: u64 },
);

export const sizeArb: fc.Arbitrary<bigint> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.constantFrom(1, 1, 1, 2, 3, 4, 8, 16, 17, 32, 512, 513).map((n) => BigInt(n) * PG),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      0n,
      0x800n,
      1n << 21n,
      1n << 40n,
      1n << 63n,
      T64 - PG,
      T64 - 0x800n,
      0x10_0000n,
    ),
  },
  { weight: 1, arbitrary: u64 },
);

export const vaArb: fc.Arbitrary<VaSel> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      r: fc.constantFrom(0, 0, 0, 1, 2, 3, 4),
      page: fc.oneof(fc.integer({ min: 0, max: 24 }), fc.integer({ min: 1000, max: 1030 }), fc.constant(14)),
      off: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 0, 0x800, 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(0n, 0x1000n, (1n << 47n) - PG, 1n << 47n, 1n << 53n, T64 - PG, T64 - 2n * PG)
      .map((abs) => ({ abs })),
  },
);

export function fdArb(prefer: FdSel['sel']): fc.Arbitrary<FdSel> {
  return fc.oneof(
    // i picks among the open fds of the kind (modulo their number): wide enough for 'any' to reach all.
    { weight: 12, arbitrary: fc.integer({ min: 0, max: 15 }).map((i) => ({ sel: prefer, i }) as FdSel) },
    {
      weight: 2,
      arbitrary: fc.record({
        sel: fc.constantFrom('container', 'group', 'device', 'sysfs', 'eventfd', 'iommufd', 'cdev', 'any'),
        i: fc.integer({ min: 0, max: 3 }),
      }) as fc.Arbitrary<FdSel>,
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(-1, 0, 2, 99, 1023, 1024, -2147483648)
        .map((fd) => ({ sel: 'num', fd }) as FdSel),
    },
  );
}

const viaArb: fc.Arbitrary<Via> = fc.constantFrom<Via>(
  'bytes',
  'bytes',
  'bytes',
  'bytes',
  'bytes',
  'bytes',
  'ptr',
  'ptr',
  'short',
  'ptr-ro',
  'ptr-hole',
);

/** Real VFIO request numbers (0x3b64 + n), iommufd's (0x3b80 +), vfio-nest's extension, and noise. */
export const requestArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0x3b64, max: 0x3b7f }) },
  { weight: 3, arbitrary: fc.integer({ min: 0x3b80, max: 0x3b95 }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.integer({ min: 0x3b64, max: 0x3b95 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 0x3fff }),
      )
      .map(([nr, dir, size]) => (nr | (size << 16) | (dir << 30)) >>> 0),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 0x5401, 0x3b00, 0x3bff, 0x80000000, 0xffffffff) },
);

const bytesArb = fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 96 });

/** The structs `mutate` starts from: [name, request, bytes]. Offsets and sizes as include/uapi/linux/vfio.h. */
export const MUTATE_BASES: readonly [string, number, number[]][] = (() => {
  const le = (v: number | bigint, n: number) => {
    const out: number[] = [];
    let x = BigInt(v);
    for (let i = 0; i < n; i++) {
      out.push(Number(x & 0xffn));
      x >>= 8n;
    }
    return out;
  };
  return [
    [
      'map',
      0x3b71,
      [...le(32, 4), ...le(3, 4), ...le(0x1000_0000, 8), ...le(0x10_0000, 8), ...le(0x1000, 8)],
    ],
    ['unmap', 0x3b72, [...le(24, 4), ...le(0, 4), ...le(0x10_0000, 8), ...le(0x1000, 8)]],
    ['unmap-all', 0x3b72, [...le(24, 4), ...le(2, 4), ...le(0, 8), ...le(0, 8)]],
    ['info', 0x3b70, [...le(120, 4), ...new Array<number>(116).fill(0)]],
    ['dirty-start', 0x3b75, [...le(8, 4), ...le(1, 4)]],
    [
      'dirty-get',
      0x3b75,
      [
        ...le(48, 4),
        ...le(4, 4),
        ...le(0x10_0000, 8),
        ...le(0x4000, 8),
        ...le(0x1000, 8),
        ...le(8, 8),
        ...le(0x5000_0000, 8),
      ],
    ],
    ['status', 0x3b67, [...le(8, 4), ...le(0, 4)]],
    ['set-container', 0x3b68, le(3, 4)],
    ['device-info', 0x3b6b, [...le(24, 4), ...new Array<number>(20).fill(0)]],
    ['region-info', 0x3b6c, [...le(32, 4), ...le(0, 4), ...le(0, 4), ...new Array<number>(20).fill(0)]],
    ['irq-info', 0x3b6d, [...le(16, 4), ...le(0, 4), ...le(0, 4), ...le(0, 4)]],
    ['irq-set', 0x3b6e, [...le(24, 4), ...le(0x24, 4), ...le(1, 4), ...le(0, 4), ...le(1, 4), ...le(5, 4)]],
    ['irq-set-none', 0x3b6e, [...le(20, 4), ...le(0x21, 4), ...le(0, 4), ...le(0, 4), ...le(1, 4)]],
    ['reset', 0x3b6f, []],
    // Device requests whose numbers type-1 also uses (the 'dev-' names go to the device fd).
    ['dev-hot-reset-info', 0x3b70, [...le(16, 4), ...le(0, 4), ...le(0, 4), ...le(0, 4)]],
    ['dev-hot-reset', 0x3b71, [...le(16, 4), ...le(0, 4), ...le(1, 4), ...le(0, 4)]],
    [
      'dev-ioeventfd',
      0x3b74,
      [...le(32, 4), ...le(4, 4), ...le(4, 8), ...le(0x1234, 8), ...le(0xffff_ffff, 4), ...le(0, 4)],
    ],
    ['dev-feature', 0x3b75, [...le(16, 4), ...le(0x60003, 4), ...le(0, 8)]],
    // iommufd (6.18 hosts built with it): /dev/iommu, and the VFIO cdev's bind/attach/detach.
    ['ioas-alloc', 0x3b81, [...le(12, 4), ...le(0, 4), ...le(0, 4)]],
    [
      'ioas-map',
      0x3b85,
      [
        ...le(40, 4),
        ...le(7, 4),
        ...le(1, 4),
        ...le(0, 4),
        ...le(0x1000_0000, 8),
        ...le(0x4000, 8),
        ...le(0x10_0000, 8),
      ],
    ],
    ['ioas-unmap', 0x3b86, [...le(24, 4), ...le(1, 4), ...le(0x10_0000, 8), ...le(0x4000, 8)]],
    [
      'hwpt-alloc',
      0x3b89,
      [...le(48, 4), ...le(1, 4), ...le(1, 4), ...le(1, 4), ...new Array<number>(32).fill(0)],
    ],
    ['destroy', 0x3b80, [...le(8, 4), ...le(1, 4)]],
    ['bind', 0x3b76, [...le(24, 4), ...le(0, 4), ...le(3, 4), ...le(0, 4), ...le(0, 8)]],
    ['attach-pt', 0x3b77, [...le(16, 4), ...le(0, 4), ...le(1, 4), ...le(0, 4)]],
    ['detach-pt', 0x3b78, [...le(12, 4), ...le(0, 4), ...le(0, 4)]],
  ];
})();

export const rawArgArb: fc.Arbitrary<RawArg> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('mutate' as const),
      base: fc.integer({ min: 0, max: MUTATE_BASES.length - 1 }),
      // Small values half the time: indexes, counts and flag fields are small.
      sets: fc.array(
        fc.tuple(
          fc.integer({ min: 0, max: 47 }),
          fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 255 })),
        ),
        { maxLength: 2 },
      ),
      flips: fc.array(fc.tuple(fc.integer({ min: 0, max: 47 }), fc.integer({ min: 0, max: 7 })), {
        maxLength: 2,
      }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record(
      {
        t: fc.constant('bytes' as const),
        bytes: bytesArb,
        argsz: fc.constantFrom(0, 7, 8, 16, 20, 23, 24, 32, 48, 64, 0xffff_ffff),
        flags: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 8), fc.integer({ min: 0, max: 0xffff_ffff })),
      },
      { requiredKeys: ['t', 'bytes'] },
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('ptr' as const),
      where: fc.constantFrom('rw', 'rw', 'ro', 'hole', 'region') as fc.Arbitrary<
        'rw' | 'ro' | 'hole' | 'region'
      >,
      off: fc.constantFrom(0, 8, 0xfe0, 0xff8, 0xffc),
      bytes: bytesArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc
      .oneof(fc.constantFrom(0n, 1n, 3n, 6n, 9n, 0x4e42n, -1n & ((1n << 64n) - 1n)), u64)
      .map((v) => ({
        t: 'value' as const,
        v,
      })),
  },
);

const rlimitVal = fc.constantFrom(0n, 0x1_0000n, 0x4_0000n, 0x80_0000n, 0x1000_0000n, (1n << 64n) - 1n);

/**
 * Device requests with fields near their edges: argsz around each struct's size, indexes around the
 * last, SET_IRQS flag combinations, eventfd numbers, ioeventfd sizes and offsets, feature numbers
 * with GET/SET/PROBE. Each is eight 32-bit words on the device fd.
 */
const w = (...xs: number[]) => fc.constantFrom(...xs);
const anyU32 = fc.integer({ min: 0, max: 0xffff_ffff });
const small = (max: number) =>
  fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: anyU32 });
const fdWord = fc.oneof(w(0xffff_ffff, 0xffff_fffe), fc.integer({ min: 0, max: 6 }), w(900));
const devReq = (req: number, fields: fc.Arbitrary<number>[]): fc.Arbitrary<Op> =>
  fc
    .tuple(...fields)
    .map((words): Op => ({ k: 'dev', req, words: [...words, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8) }));
const devOpArb: fc.Arbitrary<Op> = fc.oneof(
  devReq(0x3b6b, [w(0, 15, 16, 20, 24, 256)]),
  devReq(0x3b6c, [w(0, 16, 31, 32, 40, 64), small(0), small(10)]),
  devReq(0x3b6d, [w(0, 15, 16, 20), small(0), small(6)]),
  devReq(0x3b6e, [
    w(19, 20, 21, 24, 28),
    fc.oneof(
      w(0x21, 0x22, 0x24, 0x09, 0x0a, 0x0c, 0x11, 0x12, 0x14, 0x20, 0x01, 0x23, 0x29, 0x31, 0x61),
      anyU32,
    ),
    small(5),
    small(2),
    small(2),
    fdWord,
    fdWord,
  ]),
  devReq(0x3b6f, []),
  devReq(0x3b70, [w(0, 11, 12, 16)]),
  devReq(0x3b71, [w(11, 12, 16, 20), w(0, 0, 1), small(3), fdWord, fdWord]),
  devReq(0x3b74, [
    w(27, 28, 32),
    fc.oneof(w(1, 2, 4, 8, 0, 3, 0x14), anyU32),
    w(0, 4, 0x10, 0xffffc, 0xffffe, 0x100000),
    w(0, 0, 0x100, 0x500, 0x700),
    small(0xff),
    w(0),
    fdWord,
  ]),
  devReq(0x3b75, [
    w(7, 8, 12, 16),
    fc
      .tuple(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 15 }))
      .map(([f, ops]) => (f | (ops << 16)) >>> 0),
    fdWord,
  ]),
  // The cdev-only BIND/ATTACH/DETACH_IOMMUFD_PT, here on a group-opened fd (y8-group-fd-cdev-ioctls).
  devReq(0x3b76, [w(8, 16, 24), w(0, 1), fdWord]),
  devReq(0x3b77, [w(4, 12), w(0, 1), small(3)]),
  devReq(0x3b78, [w(4, 8), w(0, 1)]),
  devReq(0x3b79, []),
  devReq(0x1234, []),
);

/** One operation. `raw` weights how often raw ioctls come up. */
export function opArb(raw = 3): fc.Arbitrary<Op> {
  const c = fdArb('container');
  const g = fdArb('group');
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom<Op>({ k: 'open', what: 'container' }, { k: 'open', what: 'group' }),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom('group-bad', 'sysfs', 'eventfd', 'iommufd', 'cdev')
        .map((what) => ({ k: 'open', what }) as Op),
    },
    { weight: 2, arbitrary: fdArb('any').map((fd): Op => ({ k: 'close', fd })) },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('fileIo' as const),
        fd: fdArb('any'),
        how: fc.constantFrom<FileIo>('read', 'write', 'pread', 'pwrite', 'lseek'),
        off: fc.oneof(
          fc.integer({ min: 0, max: 0x100 }),
          fc.constantFrom(-1, -4096, 0x700_0000_0000, 0x900_0000_0000, 0x7_0000_0000_0000, 2 ** 52),
        ),
        len: fc.constantFrom(0, 2, 4, 8, 64),
        whence: fc.integer({ min: 0, max: 4 }),
      }),
    },
    { weight: 1, arbitrary: fc.constant<Op>({ k: 'fillFds' }) },
    { weight: 1, arbitrary: c.map((fd): Op => ({ k: 'api', fd })) },
    {
      weight: 2,
      arbitrary: fc.record({
        k: fc.constant('ext' as const),
        fd: c,
        ext: fc.oneof(fc.integer({ min: 0, max: 11 }), fc.constantFrom(0x4e42, 0xffff_ffff)),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant('setIommu' as const),
        fd: c,
        type: fc.constantFrom(1, 3, 3, 6, 0, 2, 4, 8, 9, 10, 99),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('status' as const),
        fd: g,
        argsz: fc.constantFrom(8, 8, 0, 7, 16),
        via: viaArb,
      }),
    },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('setContainer' as const), fd: g, target: c }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('unset' as const), fd: g }) },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('device' as const),
        fd: g,
        name: fc.constantFrom('good', 'good', 'bad', 'empty') as fc.Arbitrary<'good' | 'bad' | 'empty'>,
      }),
    },
    {
      weight: 14,
      arbitrary: fc.record({
        k: fc.constant('map' as const),
        fd: c,
        iova: iovaArb,
        size: sizeArb,
        va: vaArb,
        flags: fc.constantFrom(3, 3, 3, 3, 3, 1, 1, 2, 0, 4, 5, 7, 8, 0x8000_0003),
        argsz: fc.constantFrom(32, 32, 32, 32, 32, 32, 31, 0, 40, 0xffff_ffff),
        via: viaArb,
      }),
    },
    {
      weight: 9,
      arbitrary: fc.record(
        {
          k: fc.constant('unmap' as const),
          fd: c,
          iova: iovaArb,
          size: sizeArb,
          flags: fc.constantFrom(0, 0, 0, 0, 2, 2, 4, 6, 1, 3, 5, 8),
          argsz: fc.constantFrom(24, 24, 24, 24, 23, 0, 48),
          via: viaArb,
          bitmap: fc.record({
            pgsize: fc.constantFrom(0x1000n, 0x1000n, 0n, 0x2000n),
            size: fc.constantFrom(8n, 64n, 0x1000n, 0n, 0x1000_0001n),
            data: vaArb,
          }),
        },
        { requiredKeys: ['k', 'fd', 'iova', 'size', 'flags', 'argsz', 'via'] },
      ),
    },
    {
      // The setups' own mappings, whole (v2 cannot split one), and UNMAP_ALL: unmaps that succeed, so
      // that the invariants see what a successful unmap leaves behind (a stale TLB entry needs one;
      // random ranges found one in ~200 runs).
      weight: 3,
      arbitrary: fc
        .record({
          fd: c,
          which: fc.constantFrom(
            [0x10_0000n, 0x4000n, 0],
            [0x10_0000n, 0x1000n, 0],
            [0x4000_0000n, 0x8000n, 0],
            [0n, 0n, 2],
          ),
          via: viaArb,
        })
        .map(
          ({ fd, which: [iova, size, flags], via }): Op => ({
            k: 'unmap',
            fd,
            iova,
            size,
            flags,
            argsz: 24,
            via,
          }),
        ),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant('info' as const),
        fd: c,
        argsz: fc.constantFrom(0, 15, 16, 20, 24, 115, 116, 119, 120, 4096),
        len: fc.constantFrom(-1, -1, -1, 16, 24, 100),
        via: viaArb,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record(
        {
          k: fc.constant('dirty' as const),
          fd: c,
          flags: fc.constantFrom(1, 2, 4, 4, 0, 3, 8),
          argsz: fc.constantFrom(8, 48, 48, 7, 47),
          get: fc.record({
            iova: iovaArb,
            size: sizeArb,
            pgsize: fc.constantFrom(0x1000n, 0x1000n, 0x2000n, 0n),
            bsize: fc.constantFrom(8n, 64n, 0x1000n, 0n),
            data: vaArb,
          }),
        },
        { requiredKeys: ['k', 'fd', 'flags', 'argsz'] },
      ),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(rlimitVal, rlimitVal, fc.boolean()).map(
        ([a, b, keepOrder]): Op => ({
          k: 'rlimit',
          cur: keepOrder && a > b ? b : a,
          max: keepOrder && a > b ? a : b,
        }),
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom(1000, 0, 1000).map((uid): Op => ({ k: 'setuid', uid })) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(2 ** 14, 0, 2 ** 24).map((keep): Op => ({ k: 'dropCaps', keep })),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        k: fc.constant('touch' as const),
        va: vaArb,
        pages: fc.constantFrom(1, 1, 2, 16, 600),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('munmap' as const),
        r: fc.constantFrom(0, 1, 2),
        page: fc.integer({ min: 0, max: 16 }),
        pages: fc.constantFrom(1, 4, 512),
        remap: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('param' as const),
        name: fc.integer({ min: 0, max: PARAMS.length - 1 }),
        value: fc.constantFrom(
          '1',
          '0',
          'Y',
          'N',
          '1\n',
          '3',
          '2',
          '65535',
          'yes',
          '010',
          '0x10',
          '+5',
          '',
          'maybe',
          'on',
          'off',
          'true',
          'enable',
          'disable',
          '09',
          '0x',
          '4294967296',
          ' 1',
          '7\n\n',
        ),
      }),
    },
    { weight: 1, arbitrary: fc.constant<Op>({ k: 'exit' }) },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('mmapBar' as const),
        page: fc.constantFrom(0, 0, 1, 16),
        pages: fc.constantFrom(1, 16, 256, 257),
      }),
    },
    { weight: 4, arbitrary: devOpArb },
    {
      weight: raw,
      arbitrary: fc.record({
        k: fc.constant('raw' as const),
        fd: fdArb('any'),
        req: requestArb,
        arg: rawArgArb,
      }),
    },
  );
}

const c0: FdSel = { sel: 'container', i: 0 };
const g0: FdSel = { sel: 'group', i: 0 };
const open: Op[] = [
  { k: 'open', what: 'container' },
  { k: 'open', what: 'group' },
  { k: 'setContainer', fd: g0, target: c0 },
];

/** The group in the first container with IOMMU `type`, and 16 KiB at IOVA 1 MiB mapped. */
export function mappedSetup(type: number): Op[] {
  return [
    ...open,
    { k: 'setIommu', fd: c0, type },
    {
      k: 'map',
      fd: c0,
      iova: 0x10_0000n,
      size: 0x4000n,
      va: { r: 0, page: 0, off: 0 },
      flags: 3,
      argsz: 32,
      via: 'bytes',
    },
  ];
}

/** Prefixes that reach the interesting states, so most runs do not fail early. */
export const SETUPS: Op[][] = (() => {
  const mapped = mappedSetup;
  const bar: Op[] = [
    ...mapped(3),
    { k: 'device', fd: { sel: 'group', i: 0 }, name: 'good' },
    { k: 'mmapBar', page: 0, pages: 16 },
    {
      k: 'map',
      fd: c0,
      iova: 0x4000_0000n,
      size: 0x8000n,
      va: { r: 4, page: 0, off: 0 },
      flags: 3,
      argsz: 32,
      via: 'bytes',
    },
  ];
  return [
    [],
    open,
    bar,
    [...open, { k: 'setIommu', fd: c0, type: 1 }],
    [...open, { k: 'setIommu', fd: c0, type: 3 }],
    [...open, { k: 'setIommu', fd: c0, type: 6 }],
    mapped(3),
    mapped(3),
    mapped(1),
    mapped(6),
    // The device fd open: its requests (devOpArb) answer rather than EBADF.
    [...mapped(3), { k: 'device', fd: g0, name: 'good' }],
    [...open, { k: 'setIommu', fd: c0, type: 1 }, { k: 'device', fd: g0, name: 'good' }],
  ];
})();

/** The host matrix: every kernel, every host IOMMU, the SMMU's stage sets, and module parameters. */
export function configArb(kernels: readonly KernelVersion[] = KERNEL_VERSIONS): fc.Arbitrary<FuzzConfig> {
  return fc
    .record({
      kernel: fc.constantFrom(...kernels),
      iommu: fc.constantFrom('intel', 'virtio', 'smmuv3') as fc.Arbitrary<FuzzConfig['iommu']>,
      smmu: fc.constantFrom('s1s2', 's1s2', 's1', 's2') as fc.Arbitrary<'s1s2' | 's1' | 's2'>,
      unsafe: fc.boolean(),
      limit: fc.constantFrom(undefined, undefined, undefined, '3', '1'),
      nohuge: fc.constantFrom(false, false, false, true),
      noiommu: fc.constantFrom(false, false, false, true),
    })
    .map((r) => {
      const params: Record<string, string> = {};
      if (r.unsafe) params['vfio_iommu_type1.allow_unsafe_interrupts'] = '1';
      if (r.limit !== undefined && r.kernel !== '3.19') params['vfio_iommu_type1.dma_entry_limit'] = r.limit;
      if (r.nohuge) params['vfio_iommu_type1.disable_hugepages'] = '1';
      // The no-IOMMU driver and its parameter appeared in 4.5 (SE §2.1).
      if (r.noiommu && r.kernel !== '3.19') params['vfio.enable_unsafe_noiommu_mode'] = '1';
      return { kernel: r.kernel, iommu: r.iommu, smmu: r.iommu === 'smmuv3' ? r.smmu : undefined, params };
    });
}
