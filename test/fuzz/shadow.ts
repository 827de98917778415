/**
 * The shadow model: a small, independent statement of what the kernel answers, written from the
 * references (facts.ts cites them), not from src/. It keeps an interval list of vfio_dma ranges per
 * container, dma_avail, each process's locked_vm and pinned pages, the fd tables, groups and
 * containers, and predicts every syscall the fuzzer makes that the references decide: the return
 * value, what is written back, and the state afterwards.
 *
 * Where the references do not decide an answer (3.19's UNMAP of a wrapping range, search results
 * that depend on the red-black tree's shape once a mapping ends at 2^64, ...) the prediction is
 * `uncertain`: the runner then takes the model's answer and the shadow re-reads the state it could
 * not predict (counted and reported; it must stay rare).
 *
 * What a process's memory looks like (which pages exist, are writable, already hold data) is read
 * from the address space through `MemOracle`, as /proc/pid/maps and pagemap would show it: which
 * pages get_user_pages faults in before a failure depends on batch boundaries, not on VFIO.
 */

import {
  EACCES,
  EBADF,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  EMFILE,
  ENODEV,
  ENOENT,
  ENOMEM,
  ENOSPC,
  ENOTTY,
  EOVERFLOW,
  EPERM,
  ERANGE,
  ESPIPE,
  type FuzzConfig,
  type HostFacts,
  hostFacts,
  KERNEL_FACTS,
  type KernelFacts,
  NOFILE,
  type Range,
  type Stage,
  TWO_64,
  U64_MAX,
  validList,
} from './facts.ts';
import { type FileIo, show } from './ops.ts';
import { deviceIoctl, NUM_REGIONS } from './shadow-device.ts';

export const PAGE = 4096n;
const VFIO_BASE = 0x3b64;
export const REQ = {
  GET_API_VERSION: VFIO_BASE + 0,
  CHECK_EXTENSION: VFIO_BASE + 1,
  SET_IOMMU: VFIO_BASE + 2,
  GROUP_GET_STATUS: VFIO_BASE + 3,
  GROUP_SET_CONTAINER: VFIO_BASE + 4,
  GROUP_UNSET_CONTAINER: VFIO_BASE + 5,
  GROUP_GET_DEVICE_FD: VFIO_BASE + 6,
  IOMMU_GET_INFO: VFIO_BASE + 12,
  IOMMU_MAP_DMA: VFIO_BASE + 13,
  IOMMU_UNMAP_DMA: VFIO_BASE + 14,
  IOMMU_DIRTY_PAGES: VFIO_BASE + 17,
} as const;

const CAP_SETUID = 7;
const CAP_IPC_LOCK = 14;
const CAP_SYS_RESOURCE = 24;
/** Root's CapEff on 5.9+ kernels: bits 0..40. */
export const CAP_FULL = 2 ** 41 - 1;
/** x86-64 / arm64 user address space for access_ok (TASK_SIZE_MAX, 47 bits). */
const TASK_SIZE = 1n << 47n;

/** How a page of the calling process looks to get_user_pages. */
export interface MemOracle {
  /** The mapping at `va`: its protection (PROT_READ 1 | PROT_WRITE 2), whether it is device memory (VM_PFNMAP), anonymous 4 KiB memory, or hugetlb. */
  vma(va: bigint): { prot: number; kind: 'anon' | 'huge' | 'pfnmap' } | undefined;
  /** The page at `va` has a frame of its own (it was written, or faulted in for writing). */
  populated(va: bigint): boolean;
  /** copy_from_user / copy_to_user of [va, va + len) would succeed. */
  canRead(va: bigint, len: number): boolean;
  canWrite(va: bigint, len: number): boolean;
}

/** The argument of one ioctl as the kernel sees it (a value, or a pointer to user memory). */
export interface ArgView {
  /** The raw unsigned long. */
  readonly value: bigint;
  /** copy_from_user of `len` bytes at `off`: the bytes, or -EFAULT. */
  read(len: number, off?: number): Uint8Array | number;
  /** Whether copy_to_user of `len` bytes at `off` would succeed. */
  canWrite(len: number, off?: number): boolean;
}

export interface SDma {
  iova: bigint;
  size: bigint;
  vaddr: bigint;
  /** IOMMU_READ 1 | IOMMU_WRITE 2. */
  prot: number;
  /** Pages charged to the owner's locked_vm (= pages pinned: reserved pages are neither). */
  charged: number;
  owner: SProc;
  lockCap: boolean;
  invalid: boolean;
}

export interface SContainer {
  readonly id: number;
  groups: SGroup[];
  /** The IOMMU type set (1, 3, 6), 0 when none. */
  type: number;
  stage: Stage;
  /** The valid IOVA list (null before 5.4: no list). */
  list: Range[] | null;
  pgsizes: bigint;
  dmas: SDma[];
  avail: number;
  dirty: boolean;
  /** Open fds naming the container (the container lives while an fd or a group holds it). */
  fds: number;
}

export interface SGroup {
  readonly id: number;
  /** The group file exists (opened, and not yet released). */
  opened: boolean;
  /** The fd is still in a table (the file outlives it while device fds are open). */
  fdOpen: boolean;
  container: SContainer | null;
  devices: number;
}

export type SFile =
  | { kind: 'tty' }
  | { kind: 'container'; c: SContainer }
  | { kind: 'group'; g: SGroup }
  | { kind: 'device'; g: SGroup }
  | { kind: 'sysfs'; param: string }
  | { kind: 'eventfd' }
  | { kind: 'other' };

export interface SProc {
  readonly id: number;
  fds: Map<number, SFile>;
  uid: number;
  euid: number;
  capEff: number;
  memlock: { cur: bigint; max: bigint };
  lockedVm: number;
  alive: boolean;
}

/** A prediction: the return value (or uncertain), and a check of what the call wrote back. */
export interface Prediction {
  /** undefined: the references do not decide it (the runner re-reads the state afterwards). */
  ret: number | undefined;
  /** Checks the argument after the call; returns a difference or null. */
  check?: () => string | null;
  /** Why it is uncertain. */
  why?: string;
  /**
   * The kernel fails this call after changing state (an UNMAP whose reply or dirty bitmap cannot be
   * written: §3.9 step 6d and vfio_iommu_type1_unmap_dma's copy back); the digest may change.
   */
  changesOnFailure?: boolean;
}

export const certain = (ret: number, check?: () => string | null): Prediction => ({ ret, check });
export const uncertain = (why: string): Prediction => ({ ret: undefined, why });

export function u32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}
function u64(b: Uint8Array, off: number): bigint {
  return (BigInt(u32(b, off + 4)) << 32n) | BigInt(u32(b, off));
}
function capable(p: SProc, cap: number): boolean {
  return Math.floor(p.capEff / 2 ** cap) % 2 === 1;
}
function lowestBit(v: bigint): bigint {
  if (v === 0n) return 0n;
  let b = 1n;
  while ((v & b) === 0n) b <<= 1n;
  return b;
}

export class Shadow {
  readonly k: KernelFacts;
  readonly h: HostFacts;
  readonly procs: SProc[] = [];
  readonly group: SGroup;
  readonly containers: SContainer[] = [];
  private nextContainer = 0;
  /** Module parameters as type-1 reads them. */
  params = { dmaEntryLimit: 65535, allowUnsafeInterrupts: false, disableHugepages: false, noiommu: false };
  /** Predictions the references could not make. */
  uncertainCount = 0;

  constructor(
    readonly cfg: FuzzConfig,
    /** The group number of the assigned device (the host's enumeration). */
    groupId: number,
    readonly deviceName: string,
  ) {
    this.k = KERNEL_FACTS[cfg.kernel];
    this.h = hostFacts(cfg);
    this.group = { id: groupId, opened: false, fdOpen: false, container: null, devices: 0 };
    for (const [key, v] of Object.entries(cfg.params)) this.applyParam(key, v);
  }

  private applyParam(key: string, v: string): void {
    const bool = /^(1|y|Y)$/.test(v);
    if (key === 'vfio_iommu_type1.dma_entry_limit') this.params.dmaEntryLimit = Number(v);
    else if (key === 'vfio_iommu_type1.allow_unsafe_interrupts') this.params.allowUnsafeInterrupts = bool;
    else if (key === 'vfio_iommu_type1.disable_hugepages') this.params.disableHugepages = bool;
    else if (key === 'vfio.enable_unsafe_noiommu_mode') this.params.noiommu = bool;
  }

  // ---- processes ----------------------------------------------------------------------------

  spawn(uid = 0, memlock?: { cur: bigint; max: bigint }): SProc {
    const p: SProc = {
      id: this.procs.length,
      fds: new Map<number, SFile>([
        [0, { kind: 'tty' }],
        [1, { kind: 'tty' }],
        [2, { kind: 'tty' }],
      ]),
      uid,
      euid: uid,
      capEff: uid === 0 ? CAP_FULL : 0,
      memlock: memlock ?? { cur: this.k.defaultMemlock, max: this.k.defaultMemlock },
      lockedVm: 0,
      alive: true,
    };
    this.procs.push(p);
    return p;
  }

  private install(p: SProc, f: SFile): number {
    for (let fd = 0; ; fd++)
      if (!p.fds.has(fd)) {
        p.fds.set(fd, f);
        return fd;
      }
  }

  /** get_unused_fd_flags: -EMFILE once NOFILE descriptors are open. */
  private fdFull(p: SProc): boolean {
    return p.fds.size >= NOFILE;
  }

  /**
   * open(2) of the paths the fuzzer uses: the descriptor first (O: y4-emfile-open, EMFILE
   * even for a missing path).
   */
  open(p: SProc, path: string): Prediction {
    if (this.fdFull(p)) return certain(-EMFILE);
    if (path === '/dev/vfio/vfio') {
      const c: SContainer = {
        id: this.nextContainer++,
        groups: [],
        type: 0,
        stage: 'S1',
        list: null,
        pgsizes: 0xffff_ffff_ffff_f000n,
        dmas: [],
        avail: 0,
        dirty: false,
        fds: 1,
      };
      this.containers.push(c);
      return certain(this.install(p, { kind: 'container', c }));
    }
    const g = /^\/dev\/vfio\/(\d+)$/.exec(path);
    if (g !== null) {
      // §3.4: a second open of the group node is EBUSY; no such group node: ENOENT.
      if (Number(g[1]) !== this.group.id || String(Number(g[1])) !== g[1]) return certain(-ENOENT);
      if (this.group.opened) return certain(-EBUSY);
      this.group.opened = true;
      this.group.fdOpen = true;
      return certain(this.install(p, { kind: 'group', g: this.group }));
    }
    const sp = /^\/sys\/module\/(vfio_iommu_type1|vfio)\/parameters\/([a-z_]+)$/.exec(path);
    if (sp !== null) {
      // dma_entry_limit appeared in 5.1 and the no-IOMMU mode in 4.5 (§8, SE §2.1).
      const known = [
        ...(this.k.entryLimit ? ['vfio_iommu_type1.dma_entry_limit'] : []),
        'vfio_iommu_type1.allow_unsafe_interrupts',
        'vfio_iommu_type1.disable_hugepages',
        ...(this.k.noiommu ? ['vfio.enable_unsafe_noiommu_mode'] : []),
      ];
      const key = `${sp[1]}.${sp[2]}`;
      if (!known.includes(key)) return certain(-ENOENT);
      return certain(this.install(p, { kind: 'sysfs', param: key }));
    }
    return uncertain(`open ${path}`);
  }

  eventfd(p: SProc): Prediction {
    if (this.fdFull(p)) return certain(-EMFILE);
    return certain(this.install(p, { kind: 'eventfd' }));
  }

  /** close(2): the last reference to a group file detaches it (§3.6). */
  close(p: SProc, fd: number): Prediction {
    const f = p.fds.get(fd);
    if (f === undefined) return certain(-EBADF);
    p.fds.delete(fd);
    switch (f.kind) {
      case 'container':
        f.c.fds--;
        this.gc(f.c);
        break;
      case 'group':
        f.g.fdOpen = false;
        this.maybeReleaseGroup(f.g);
        break;
      case 'device':
        f.g.devices--;
        this.maybeReleaseGroup(f.g);
        break;
    }
    return certain(0);
  }

  private maybeReleaseGroup(g: SGroup): void {
    if (g.fdOpen || g.devices > 0 || !g.opened) return;
    this.detach(g);
    g.opened = false;
  }

  private gc(c: SContainer): void {
    if (c.fds === 0 && c.groups.length === 0) this.containers.splice(this.containers.indexOf(c), 1);
  }

  /** exit(2): every fd closed in ascending order. */
  exit(p: SProc): void {
    for (const fd of [...p.fds.keys()].sort((a, b) => a - b)) this.close(p, fd);
    p.alive = false;
  }

  setrlimit(p: SProc, cur: bigint, max: bigint): Prediction {
    if (cur > max) return certain(-EINVAL);
    if (max > p.memlock.max && !capable(p, CAP_SYS_RESOURCE)) return certain(-EPERM);
    p.memlock = { cur, max };
    return certain(0);
  }

  /** setuid(2): leaving uid 0 drops every capability (capabilities(7)). */
  setuid(p: SProc, uid: number): Prediction {
    if (!capable(p, CAP_SETUID)) {
      if (uid !== p.uid) return certain(-EPERM);
      p.euid = uid;
      return certain(0);
    }
    const wasRoot = p.uid === 0 || p.euid === 0;
    p.uid = uid;
    p.euid = uid;
    if (wasRoot && uid !== 0) p.capEff = 0;
    return certain(0);
  }

  /** capset(2) that only drops capabilities. */
  dropCaps(p: SProc, keep: number): void {
    let out = 0;
    for (let b = 0; b <= 40; b++) if (capable(p, b) && Math.floor(keep / 2 ** b) % 2 === 1) out += 2 ** b;
    p.capEff = out;
  }

  /**
   * write(2) to a module parameter file, as root: kstrtobool by first characters (the words each
   * kernel knows: KernelFacts.boolWords), kstrtouint base 0 (octal, 0x, '+', one newline, ERANGE past
   * u32). An empty write reaches no store method (O: y1-sysfs-params).
   */
  writeParam(p: SProc, fd: number, text: string): Prediction {
    const f = p.fds.get(fd);
    if (f === undefined) return certain(-EBADF);
    if (f.kind !== 'sysfs') return uncertain('write to a non-sysfs file');
    if (p.euid !== 0) return certain(-EACCES);
    if (text === '') return certain(0);
    if (f.param !== 'vfio_iommu_type1.dma_entry_limit') {
      if (!this.k.boolWords.test(text)) return certain(-EINVAL);
      this.applyParam(f.param, /^([yY1tTeE]|[oO][nN])/.test(text) ? '1' : '0');
      return certain(text.length);
    }
    const m = /^\+?(?:0[xX]([0-9a-fA-F]+)|0([0-7]*)|([1-9][0-9]*))\n?$/.exec(text);
    if (m === null) return certain(-EINVAL);
    const v =
      m[1] !== undefined
        ? BigInt(`0x${m[1]}`)
        : m[2] !== undefined
          ? BigInt(`0o${m[2] || '0'}`)
          : BigInt(m[3]);
    if (v > 0xffff_ffffn) return certain(-ERANGE);
    this.applyParam(f.param, String(v));
    return certain(text.length);
  }

  /**
   * read, write, pread, pwrite or lseek (O: y9-fd-syscalls, all eight configurations; 3.19 was never
   * asked): a negative pread/pwrite offset is EINVAL before the fd is looked up; no vfio fd has
   * llseek (ESPIPE); the container and group have no read or write (EINVAL); vfio-pci refuses a
   * region index past its last (EINVAL). What a device region holds is left to the model.
   */
  fileIo(p: SProc, fd: number, how: FileIo, off: number, len: number): Prediction {
    const positional = how === 'pread' || how === 'pwrite';
    if (positional && off < 0) return certain(-EINVAL);
    const f = p.fds.get(fd);
    if (f === undefined) return certain(-EBADF);
    if (this.k.device === null || this.k.eventfdWriteExact === null)
      return uncertain('file syscalls on 3.19');
    switch (f.kind) {
      case 'eventfd':
        // O y11-eventfd-syscalls: no position (pread, pwrite ESPIPE; lseek 0), reads of at least 8
        // bytes, writes of 8 (or more before 6.12). The fuzzer writes zeros, which add nothing.
        if (how === 'lseek') return certain(0); // seq 16-18, 24-26
        if (positional) return certain(-ESPIPE); // seq 13-15
        if (how === 'read') return len < 8 ? certain(-EINVAL) : uncertain('an eventfd count'); // seq 7
        if (len < 8 || (this.k.eventfdWriteExact && len !== 8)) return certain(-EINVAL); // seq 9, 12
        return certain(8); // seq 11, 21
      case 'container':
      case 'group':
        return certain(how === 'lseek' ? -ESPIPE : -EINVAL); // seq 1-6, 8-12
      case 'device':
        if (how === 'lseek') return certain(-ESPIPE); // seq 18-19, 22, 25-26
        if (positional && off >= NUM_REGIONS * 2 ** 40) return certain(-EINVAL); // seq 29-30
        return uncertain('a device region through read/write');
      default:
        return uncertain('file syscalls on another file');
    }
  }

  // ---- ioctl --------------------------------------------------------------------------------

  ioctl(p: SProc, fd: number, request: number, arg: ArgView, mem: MemOracle): Prediction {
    const f = p.fds.get(fd);
    if (f === undefined) return certain(-EBADF);
    switch (f.kind) {
      case 'container':
        return this.containerIoctl(p, f.c, request >>> 0, arg, mem);
      case 'group':
        return this.groupIoctl(p, f.g, request >>> 0, arg);
      case 'tty':
      case 'sysfs':
      case 'eventfd':
        return certain(-ENOTTY);
      case 'device':
        return deviceIoctl(this.k.device, request >>> 0, arg);
      default:
        return uncertain('another file');
    }
  }

  // §3.2, §3.3, §1 dispatch
  private containerIoctl(p: SProc, c: SContainer, req: number, arg: ArgView, mem: MemOracle): Prediction {
    switch (req) {
      case REQ.GET_API_VERSION:
        return certain(0);
      case REQ.CHECK_EXTENSION:
        return this.checkExtension(c, arg.value);
      case REQ.SET_IOMMU:
        return this.setIommu(c, arg.value);
    }
    if (c.type === 0) return certain(-EINVAL);
    switch (req) {
      case REQ.IOMMU_GET_INFO:
        return this.getInfo(c, arg);
      case REQ.IOMMU_MAP_DMA:
        return this.map(p, c, arg, mem);
      case REQ.IOMMU_UNMAP_DMA:
        return this.unmap(c, arg, mem);
      case REQ.IOMMU_DIRTY_PAGES:
        return this.k.dirty ? this.dirtyPages(c, arg, mem) : certain(-ENOTTY);
      default:
        return certain(-ENOTTY);
    }
  }

  private checkExtension(c: SContainer, ext: bigint): Prediction {
    const k = this.k;
    const set = c.type !== 0;
    switch (ext) {
      case 1n:
      case 3n:
        return certain(1);
      case 6n:
        return certain(k.nesting ? 1 : 0);
      case 4n: {
        if (!set) return certain(0);
        const cc = this.h.dmaCc(this.cfg.kernel);
        return cc === undefined ? uncertain('DMA_CC_IOMMU on this host') : certain(cc);
      }
      case 9n:
        return certain(k.allVaddr ? 1 : 0);
      case 10n:
        return certain(k.allVaddr && set ? 1 : 0);
      case 8n:
        // The no-IOMMU driver answers when its parameter is set and the container holds no group (§3.2).
        return certain(!set && k.noiommu && this.params.noiommu && c.groups.length === 0 ? 1 : 0);
      default:
        return certain(0);
    }
  }

  private setIommu(c: SContainer, type: bigint): Prediction {
    const k = this.k;
    if (c.groups.length === 0 || c.type !== 0) return certain(-EINVAL);
    const claims = type === 1n || type === 3n || (type === 6n && k.nesting) || (type === 9n && k.allVaddr);
    if (!claims) return certain(-ENODEV);
    if (type === 9n) return certain(-EINVAL); // claimed by CHECK_EXTENSION, refused by open() (§3.3)
    const nesting = type === 6n;
    if (nesting) {
      const r = this.h.nestingErrno(k);
      if (r !== 0) return certain(-r);
    }
    // §3.3 step 10: interrupt isolation, after the nesting request.
    if (!this.h.isolatedMsi && !this.params.allowUnsafeInterrupts) return certain(-EPERM);
    c.type = Number(type);
    c.stage = this.h.stage(nesting);
    c.list = k.iovaList ? validList(this.h, c.stage) : null;
    c.pgsizes = this.h.pgsizes;
    c.avail = this.params.dmaEntryLimit;
    c.dmas = [];
    c.dirty = false;
    return certain(0);
  }

  /** §3.7 */
  private getInfo(c: SContainer, arg: ArgView): Prediction {
    const b = arg.read(16);
    if (typeof b === 'number') return certain(b);
    const argsz = u32(b, 0);
    if (argsz < 16) return certain(-EINVAL);
    const k = this.k;
    if (!k.infoCaps) {
      // SE §3.4: 16 bytes back, flags 0, argsz as given.
      if (!arg.canWrite(16)) return certain(-EFAULT);
      return certain(0, () => {
        const o = arg.read(16) as Uint8Array;
        return diff(
          'GET_INFO',
          { argsz, flags: 0, pgsizes: c.pgsizes },
          {
            argsz: u32(o, 0),
            flags: u32(o, 4),
            pgsizes: u64(o, 8),
          },
        );
      });
    }
    const ranges = c.list ?? [];
    const dmaAvailSize = k.capsAlign8 ? 16 : 12;
    const total = 24 + 32 + dmaAvailSize + 16 + 16 * ranges.length;
    const fits = argsz >= total;
    // 6.1 copies 20 bytes when argsz >= 20, else 16; 6.6+ copies min(argsz, 24) (§3.7).
    const hdrLen = k.capsAlign8 ? Math.min(argsz, 24) : argsz >= 20 ? 20 : 16;
    const writeLen = fits ? total : hdrLen;
    // The caps go first (at offset 24), then the header: either copy failing is EFAULT.
    if (!arg.canWrite(hdrLen) || (fits && !arg.canWrite(total - 24, 24))) return certain(-EFAULT);
    const want = {
      argsz: fits ? argsz : total,
      flags: 3,
      pgsizes: c.pgsizes,
      capOffset: hdrLen >= 20 && fits ? 24 : hdrLen >= 20 ? 0 : -1,
      caps: fits
        ? [
            { id: 2, version: 1, next: 56, flags: 0, pgsize: lowestBit(c.pgsizes), max: 0x1000_0000n },
            { id: 3, version: 1, next: 56 + dmaAvailSize, avail: c.avail },
            { id: 1, version: 1, next: 0, ranges: ranges.map((r) => `${r.start}-${r.end}`) },
          ]
        : [],
    };
    return certain(0, () => {
      const o = arg.read(writeLen) as Uint8Array;
      const got = {
        argsz: u32(o, 0),
        flags: u32(o, 4),
        pgsizes: u64(o, 8),
        capOffset: hdrLen >= 20 ? u32(o, 16) : -1,
        caps: fits ? readCaps(o) : [],
      };
      return diff('GET_INFO', want, got);
    });
  }

  // ---- MAP (§3.8) ---------------------------------------------------------------------------

  /**
   * vfio_find_dma: a mapping overlapping [start, end). Before 6.18 a mapping that ends at 2^64 is
   * never found (its end wraps to 0: the descent always goes right of it), and a query that ends at
   * 2^64 finds nothing (R 6.12-virtio x5-overflow). Once such a mapping exists, whether a lower
   * mapping is found depends on the red-black tree's shape (it may sit in the hidden one's left
   * subtree): `undefined` with `this.shapeDependent` set.
   */
  private findDma(c: SContainer, start: bigint, end: bigint): SDma | undefined {
    this.shapeDependent = false;
    if (this.k.endOfSpaceBug && end === TWO_64) return undefined;
    const hidden = this.hasHiddenTop(c);
    for (const d of c.dmas) {
      if (this.k.endOfSpaceBug && d.iova + d.size === TWO_64) continue;
      if (d.iova < end && start < d.iova + d.size) {
        if (hidden) {
          this.shapeDependent = true;
          return undefined;
        }
        return d;
      }
    }
    return undefined;
  }

  /** Set by findDma / containing when the answer depends on the tree's shape. */
  private shapeDependent = false;

  private hasHiddenTop(c: SContainer): boolean {
    return this.k.endOfSpaceBug && c.dmas.some((d) => d.iova + d.size === TWO_64);
  }

  private map(p: SProc, c: SContainer, arg: ArgView, mem: MemOracle): Prediction {
    const b = arg.read(32);
    if (typeof b === 'number') return certain(b);
    const k = this.k;
    const argsz = u32(b, 0);
    const flags = u32(b, 4);
    const vaddr = u64(b, 8);
    const iova = u64(b, 16);
    const size = u64(b, 24);
    const mask = k.allVaddr ? 7 : 3;
    if (argsz < 32 || (flags & ~mask) !== 0) return certain(-EINVAL);
    const setVaddr = (flags & 4) !== 0;
    const prot = flags & 3;
    const wraps = size > 0n && (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX);
    if (k.overflowFirst) {
      if (size === 0n) return certain(-EINVAL);
      if (wraps) return certain(-EOVERFLOW);
    }
    if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) return certain(-EINVAL);
    const pg = lowestBit(c.pgsizes);
    if (size === 0n || (size | iova | vaddr) % pg !== 0n) return certain(-EINVAL);
    if (wraps) return certain(-k.wrapErrno);
    const end = iova + size;
    const found = this.findDma(c, iova, end);
    if (this.shapeDependent) return uncertain('vfio_find_dma with a mapping that ends at 2^64 (tree shape)');
    if (setVaddr) {
      if (found === undefined) return certain(-ENOENT);
      if (!found.invalid || found.iova !== iova || found.size !== size) return certain(-EINVAL);
      if (found.owner !== p) {
        // VADDR from another process takes the mapping's charge over first (§4).
        const cap = capable(p, CAP_IPC_LOCK);
        if (!cap && BigInt(p.lockedVm + found.charged) > p.memlock.cur >> 12n) return certain(-ENOMEM);
        p.lockedVm += found.charged;
        found.owner.lockedVm = Math.max(0, found.owner.lockedVm - found.charged);
        found.owner = p;
        found.lockCap = cap;
      }
      found.vaddr = vaddr;
      found.invalid = false;
      return certain(0);
    }
    if (found !== undefined) return certain(-EEXIST);
    if (k.entryLimit && c.avail === 0) return certain(-ENOSPC);
    if (c.list !== null && !c.list.some((r) => iova >= r.start && end - 1n <= r.end)) return certain(-EINVAL);

    // Pin, charge and map, page by page in order (§4, §5): the first failure decides. Pinning cuts a
    // run at the first page it cannot pin or charge, and the run pinned so far is mapped before the
    // next pin reports the error, so per page: EFAULT (no page), ENOMEM (over the limit), then the
    // IOMMU driver refusing an IOVA it cannot translate (3.19: no valid-IOVA list stops it first).
    const cap = capable(p, CAP_IPC_LOCK);
    const limit = p.memlock.cur >> 12n;
    const write = (prot & 2) !== 0;
    const apEnd = this.h.apertureEnd(c.stage);
    let charged = 0;
    const pages = size / PAGE;
    for (let i = 0n; i < pages; i++) {
      const va = vaddr + i * PAGE;
      const v = va < TASK_SIZE ? mem.vma(va) : undefined;
      if (v === undefined || (v.prot & 1) === 0 || (write && (v.prot & 2) === 0)) return certain(-EFAULT);
      // The shared zero page backs read pins of untouched anonymous memory (hugetlb has none).
      const reserved =
        v.kind === 'pfnmap' || (k.zeroPage && !write && v.kind === 'anon' && !mem.populated(va));
      if (!reserved) {
        charged++;
        if (!cap && BigInt(p.lockedVm + charged) > limit) return certain(-ENOMEM);
      }
      if (iova + i * PAGE > apEnd) return certain(-this.h.outOfRangeErrno);
    }
    const dma: SDma = { iova, size, vaddr, prot, charged, owner: p, lockCap: cap, invalid: false };
    const at = c.dmas.findIndex((d) => d.iova > iova);
    c.dmas.splice(at < 0 ? c.dmas.length : at, 0, dma);
    c.avail--;
    p.lockedVm += charged;
    return certain(0);
  }

  // ---- UNMAP (§3.9) -------------------------------------------------------------------------

  private unmap(c: SContainer, arg: ArgView, mem: MemOracle): Prediction {
    const b = arg.read(24);
    if (typeof b === 'number') return certain(b);
    const k = this.k;
    const argsz = u32(b, 0);
    const flags = u32(b, 4);
    const iova = u64(b, 8);
    const size = u64(b, 16);
    const mask = k.allVaddr ? 7 : k.dirty ? 1 : 0;
    if (argsz < 24 || (flags & ~mask) !== 0) return certain(-EINVAL);
    const getBitmap = (flags & 1) !== 0;
    const all = (flags & 2) !== 0;
    const vaddrFlag = (flags & 4) !== 0;
    if (getBitmap && (all || vaddrFlag)) return certain(-EINVAL);
    let bm: { pgsize: bigint; size: bigint; data: bigint } | undefined;
    if (getBitmap) {
      if (argsz < 48) return certain(-EINVAL);
      const x = arg.read(24, 24);
      if (typeof x === 'number') return certain(x);
      bm = { pgsize: u64(x, 0), size: u64(x, 8), data: u64(x, 16) };
      if (bm.data + bm.size > TASK_SIZE) return certain(-EINVAL);
      const r = bitmapSizeOk(size >> log2(lowestBit(bm.pgsize)), bm.size);
      if (!r) return certain(-EINVAL);
    }
    const pg = lowestBit(c.pgsizes);
    if (iova % pg !== 0n) return certain(-EINVAL);
    let start = iova;
    let end: bigint;
    if (all) {
      if (iova !== 0n || size !== 0n) return certain(-EINVAL);
      start = 0n;
      end = TWO_64;
    } else {
      if (size === 0n || size % pg !== 0n) return certain(-EINVAL);
      if (iova + size - 1n > U64_MAX) {
        if (!k.unmapWrapKnown) return uncertain('3.19 UNMAP of a wrapping range (SE §3.2: UNVERIFIED)');
        return certain(-k.wrapErrno);
      }
      end = iova + size;
    }
    if (bm !== undefined && (!c.dirty || bm.pgsize !== pg)) return certain(-EINVAL);
    const isV2 = c.type !== 1;
    if (isV2 && !all) {
      const first = this.containing(c, start);
      if (this.shapeDependent) return uncertain('v2 bisection check with a mapping that ends at 2^64');
      if (first !== undefined && first.iova !== start) return certain(-EINVAL);
      const last = this.containing(c, end - PAGE);
      if (this.shapeDependent) return uncertain('v2 bisection check with a mapping that ends at 2^64');
      if (last !== undefined && last.iova + last.size !== end) return certain(-EINVAL);
    }
    if (this.k.endOfSpaceBug) {
      // Before 6.18 the walk's end test (dma->iova >= iova + size) wraps for a range that ends at
      // 2^64: nothing is unmapped (R x5 seq 13). vfio_find_dma_first_node cannot descend past a
      // mapping that ends at 2^64: with only such mappings in range nothing is found (R 6.12-virtio
      // x5 seq 10); with others too, which one it finds depends on the tree's shape.
      if (!all && end === TWO_64) return this.unmapped(arg, 0n);
      if (this.hasHiddenTop(c)) {
        const other = c.dmas.some(
          (d) => d.iova + d.size !== TWO_64 && d.iova < end && start < d.iova + d.size,
        );
        if (other) return uncertain('the UNMAP walk with a mapping that ends at 2^64 (tree shape)');
        return this.unmapped(arg, 0n);
      }
    }
    let total = 0n;
    const victims: SDma[] = [];
    for (const d of c.dmas) {
      if (d.iova + d.size <= start) continue;
      if (d.iova >= end) break;
      if (!isV2 && start > d.iova) break;
      if (vaddrFlag && d.invalid) {
        // 6b: undo this call's invalidations, EINVAL, nothing written back.
        return certain(-EINVAL);
      }
      if (bm !== undefined) {
        const bit = (d.iova - start) / pg;
        const word = (bit / 64n) * 8n;
        const shift = bit % 64n;
        const words = ((d.size / pg + shift + 63n) / 64n) * 8n;
        if (shift !== 0n && !mem.canRead(bm.data + word, 8)) return this.partialUnmap(c, victims);
        if (!mem.canWrite(bm.data + word, Number(words))) return this.partialUnmap(c, victims);
      }
      total += d.size;
      victims.push(d);
    }
    if (vaddrFlag) for (const d of victims) d.invalid = true;
    else for (const d of victims) this.remove(c, d);
    return this.unmapped(arg, total);
  }

  /**
   * Success, and the 24-byte header goes back with `size` = bytes unmapped. When the copy back fails
   * the unmap has happened anyway and the answer is EFAULT (vfio_iommu_type1_unmap_dma).
   */
  private unmapped(arg: ArgView, total: bigint): Prediction {
    if (!arg.canWrite(24)) return { ret: -EFAULT, changesOnFailure: true };
    return certain(0, () => checkUnmapSize(arg, total));
  }

  /** §3.9 6d: the dirty bitmap copy failed after earlier mappings went: EFAULT, those stay removed. */
  private partialUnmap(c: SContainer, done: SDma[]): Prediction {
    for (const d of done) this.remove(c, d);
    return { ret: -EFAULT, changesOnFailure: done.length > 0 };
  }

  /** vfio_find_dma(addr, 1): the mapping holding the page at `addr` (shape-dependent as findDma). */
  private containing(c: SContainer, addr: bigint): SDma | undefined {
    return this.findDma(c, addr, addr + PAGE);
  }

  /**
   * vfio_find_dma of one address: the mapping holding it, but before 6.18 never one that ends at
   * 2^64. A descent for a point below such a mapping turns left at it, one inside it turns right and
   * finds nothing, so unlike a range query the answer does not depend on the tree's shape.
   */
  private containingPoint(c: SContainer, addr: bigint): SDma | undefined {
    for (const d of c.dmas)
      if (d.iova <= addr && addr < d.iova + d.size && !(this.k.endOfSpaceBug && d.iova + d.size === TWO_64))
        return d;
    return undefined;
  }

  private remove(c: SContainer, d: SDma): void {
    c.dmas.splice(c.dmas.indexOf(d), 1);
    c.avail++;
    d.owner.lockedVm = Math.max(0, d.owner.lockedVm - d.charged);
  }

  // ---- DIRTY_PAGES (§3.10) ------------------------------------------------------------------

  private dirtyPages(c: SContainer, arg: ArgView, mem: MemOracle): Prediction {
    if (c.type === 1) return certain(-EACCES);
    const b = arg.read(8);
    if (typeof b === 'number') return certain(b);
    const argsz = u32(b, 0);
    const flags = u32(b, 4);
    if (argsz < 8 || (flags & ~7) !== 0) return certain(-EINVAL);
    if (flags === 1) {
      // Every mapping here is far below INT_MAX pages.
      c.dirty = true;
      return certain(0);
    }
    if (flags === 2) {
      c.dirty = false;
      return certain(0);
    }
    if (flags !== 4) return certain(-EINVAL);
    if (argsz - 8 < 40) return certain(-EINVAL);
    const x = arg.read(40, 8);
    if (typeof x === 'number') return certain(x);
    const iova = u64(x, 0);
    const size = u64(x, 8);
    const bm = { pgsize: u64(x, 16), size: u64(x, 24), data: u64(x, 32) };
    const k = this.k;
    if (k.overflowFirst) {
      if (size === 0n) return certain(-EINVAL);
      if (iova + size - 1n > U64_MAX) return certain(-EOVERFLOW);
    } else if (iova + size > U64_MAX) {
      // iova + size wraps (§3.10 step 6; oracle: [2^64-16K, 2^64) is EINVAL on 6.12, test/vfio/dirty.test.ts).
      return certain(-EINVAL);
    }
    if (bm.data + bm.size > TASK_SIZE) return certain(-EINVAL);
    if (!bitmapSizeOk(size >> log2(lowestBit(bm.pgsize)), bm.size)) return certain(-EINVAL);
    const pg = lowestBit(c.pgsizes);
    if (bm.pgsize !== pg) return certain(-EINVAL);
    if (iova % pg !== 0n) return certain(-EINVAL);
    if (size === 0n || size % pg !== 0n) return certain(-EINVAL);
    if (!c.dirty) return certain(-EINVAL);
    const end = iova + size;
    // Point lookups (vfio_find_dma(iova, 1), (end - 1, 0)): a hidden top mapping is never found and
    // misdirects nothing else, whatever the tree's shape (oracle, test/vfio/dirty.test.ts).
    const first = this.containingPoint(c, iova);
    if (first !== undefined && first.iova !== iova) return certain(-EINVAL);
    const last = this.containingPoint(c, end - PAGE);
    if (last !== undefined && last.iova + last.size !== end) return certain(-EINVAL);
    for (const d of c.dmas) {
      if (d.iova < iova || d.iova >= end) continue;
      const bit = (d.iova - iova) / pg;
      const word = (bit / 64n) * 8n;
      const shift = bit % 64n;
      const words = ((d.size / pg + shift + 63n) / 64n) * 8n;
      if (shift !== 0n && !mem.canRead(bm.data + word, 8)) return certain(-EFAULT);
      if (!mem.canWrite(bm.data + word, Number(words))) return certain(-EFAULT);
    }
    return certain(0);
  }

  // ---- groups (§3.4-3.6) --------------------------------------------------------------------

  private groupIoctl(p: SProc, g: SGroup, req: number, arg: ArgView): Prediction {
    switch (req) {
      case REQ.GROUP_GET_STATUS: {
        const b = arg.read(8);
        if (typeof b === 'number') return certain(b);
        if (u32(b, 0) < 8) return certain(-EINVAL);
        const flags = g.container !== null ? 3 : 1;
        if (!arg.canWrite(8)) return certain(-EFAULT);
        return certain(0, () => {
          const o = arg.read(8) as Uint8Array;
          return u32(o, 4) === flags ? null : `GROUP_GET_STATUS flags ${u32(o, 4)}, expected ${flags}`;
        });
      }
      case REQ.GROUP_SET_CONTAINER:
        return this.setContainer(p, g, arg);
      case REQ.GROUP_UNSET_CONTAINER:
        if (g.container === null) return certain(-EINVAL);
        if (g.devices > 0) return certain(-EBUSY);
        this.detach(g);
        return certain(0);
      case REQ.GROUP_GET_DEVICE_FD: {
        // 6.x: the name (ENODEV), a descriptor (EMFILE), then the open's container check (EINVAL)
        // (R x14-device-edges; O fill_fds, test/vfio/device.test.ts). 3.19: the container first,
        // then the name, the open, and the descriptor last (its vfio_group_get_device_fd, not recorded).
        const name = readString(arg);
        if (typeof name === 'number') return certain(name);
        const noIommu = g.container === null || g.container.type === 0;
        const order = this.k.deviceFdContainerFirst
          ? [noIommu && -EINVAL, name !== this.deviceName && -ENODEV, this.fdFull(p) && -EMFILE]
          : [name !== this.deviceName && -ENODEV, this.fdFull(p) && -EMFILE, noIommu && -EINVAL];
        const refused = order.find((e) => e !== false);
        if (refused !== undefined) return certain(refused);
        g.devices++;
        return certain(this.install(p, { kind: 'device', g }));
      }
      default:
        return certain(-ENOTTY);
    }
  }

  private setContainer(p: SProc, g: SGroup, arg: ArgView): Prediction {
    const k = this.k;
    const b = arg.read(4);
    if (typeof b === 'number') return certain(-EFAULT);
    const fd = u32(b, 0) | 0;
    if (fd < 0) return certain(-k.negFd);
    let f: SFile | undefined;
    if (k.fdFirst) {
      f = p.fds.get(fd);
      if (f === undefined) return certain(-EBADF);
      if (g.container !== null) return certain(-EINVAL);
    } else {
      if (g.container !== null) return certain(-EINVAL);
      f = p.fds.get(fd);
      if (f === undefined) return certain(-EBADF);
    }
    if (f.kind !== 'container') return certain(-k.notContainer);
    // One group per host: a container with a driver always holds this group, so no backend attach here.
    const c = f.c;
    if (c.type !== 0) return uncertain('attach to a container that has a driver');
    c.groups.push(g);
    g.container = c;
    return certain(0);
  }

  /** The group leaves its container; the last group takes the backend with it (§3.6). */
  private detach(g: SGroup): void {
    const c = g.container;
    if (c === null) return;
    c.groups.splice(c.groups.indexOf(g), 1);
    g.container = null;
    if (c.groups.length === 0) {
      for (const d of [...c.dmas]) this.remove(c, d);
      c.type = 0;
      c.list = null;
      c.dirty = false;
      this.gc(c);
    }
  }
}

function log2(v: bigint): bigint {
  let n = 0n;
  while (v > 1n) {
    v >>= 1n;
    n++;
  }
  return n;
}

/** verify_bitmap_size (§3.9 step 3): pages > 0, 0 < size <= 256 MiB and enough bytes for the pages. */
function bitmapSizeOk(pages: bigint, size: bigint): boolean {
  return pages > 0n && size > 0n && size <= 0x1000_0000n && size >= ((pages + 63n) / 64n) * 8n;
}

function readString(arg: ArgView): string | number {
  let s = '';
  for (let i = 0; i < 4096; i++) {
    const b = arg.read(1, i);
    if (typeof b === 'number') return b;
    if (b[0] === 0) return s;
    s += String.fromCharCode(b[0]);
  }
  return s;
}

function checkUnmapSize(arg: ArgView, want: bigint): string | null {
  const o = arg.read(24) as Uint8Array;
  const got = u64(o, 16);
  return got === want ? null : `UNMAP_DMA wrote size 0x${got.toString(16)}, expected 0x${want.toString(16)}`;
}

function readCaps(o: Uint8Array): unknown[] {
  const out: unknown[] = [];
  let off = u32(o, 16);
  for (let n = 0; off !== 0 && n < 8 && off + 8 <= o.byteLength; n++) {
    const id = o[off] | (o[off + 1] << 8);
    const version = o[off + 2] | (o[off + 3] << 8);
    const next = u32(o, off + 4);
    if (id === 2)
      out.push({
        id,
        version,
        next,
        flags: u32(o, off + 8),
        pgsize: u64(o, off + 16),
        max: u64(o, off + 24),
      });
    else if (id === 3) out.push({ id, version, next, avail: u32(o, off + 8) });
    else if (id === 1) {
      const ranges: string[] = [];
      for (let i = 0; i < u32(o, off + 8) && off + 32 + 16 * i <= o.byteLength; i++)
        ranges.push(`${u64(o, off + 16 + 16 * i)}-${u64(o, off + 24 + 16 * i)}`);
      out.push({ id, version, next, ranges });
    } else out.push({ id, version, next });
    off = next;
  }
  return out;
}

export function diff(what: string, want: unknown, got: unknown): string | null {
  const w = show(want);
  const g = show(got);
  return w === g ? null : `${what}: expected ${w}, got ${g}`;
}
