/**
 * One fuzz run: a host of the matrix, a process with known memory regions, the shadow model beside
 * it, and `step(op)`, which makes the system calls, predicts them with the shadow, and checks after
 * every step:
 *  - the call returned an integer >= 0 or -errno (never threw, never an unknown errno);
 *  - the answer and what was written back equal the shadow's (where the references decide it);
 *  - a failed call left the state digest unchanged (src/host/digest.ts);
 *  - the model's state equals the shadow's (mappings, dma_avail, locked_vm, pins, fds, groups);
 *  - isolation: every IOVA the device can reach through any STE / context / endpoint is mapped for
 *    it and lands on a frame pinned for it (invariants.ts).
 * With `shadow: false` only the model-independent checks run (raw fuzzing of fds the shadow does
 * not model: iommufd, the VFIO cdev).
 */

import { stateDigest } from '../../src/host/digest.ts';
import { Host, type HostOptions } from '../../src/host/host.ts';
import type { Process } from '../../src/host/process.ts';
import type { IoctlArg } from '../../src/mm/uaccess.ts';
import { errnoName } from '../../src/uapi/errno.ts';
import type { VfioContainer } from '../../src/vfio/container.ts';
import { configName, type FuzzConfig } from './facts.ts';
import { checkIsolation, checkTornDown, type Tracked } from './invariants.ts';
import {
  type FdSel,
  MUTATE_BASES,
  type Op,
  PARAMS,
  type RawArg,
  REGIONS,
  SCRATCH,
  show,
  type VaSel,
  type Via,
} from './ops.ts';
import {
  type ArgView,
  type MemOracle,
  PAGE,
  type Prediction,
  REQ,
  type SContainer,
  type SFile,
  Shadow,
  type SProc,
} from './shadow.ts';
import { deviceMmap } from './shadow-device.ts';

/** Errno values Linux defines (asm-generic/errno-base.h and errno.h): 1..133. */
const MAX_ERRNO = 133;

export class FuzzFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FuzzFailure';
  }
}

export interface WorldOptions {
  /** Check against the shadow model (default true). */
  shadow?: boolean;
  /** Host options beyond the config for raw runs. */
  hostExtra?: Pick<HostOptions, 'nestBind' | 'iommufd'>;
}

export interface WorldStats {
  steps: number;
  failedCalls: number;
  uncertain: number;
  isolationChecks: number;
}

const enc = new TextEncoder();

/** The selector each kind of open file answers to; any kind not listed is 'other'. */
const FD_SEL: Record<string, string> = {
  'vfio-container': 'container',
  'vfio-group': 'group',
  'vfio-device': 'device',
  sysfs: 'sysfs',
  eventfd: 'eventfd',
  iommufd: 'iommufd',
  'vfio-device-cdev': 'cdev',
  tty: 'tty',
};

function put32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset).setUint32(off, v >>> 0, true);
}
function put64(b: Uint8Array, off: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset).setBigUint64(off, BigInt.asUintN(64, v), true);
}

export class World {
  readonly host: Host;
  readonly shadow: Shadow | null;
  proc: Process;
  sp: SProc | null;
  /** Every process that ever ran on the host (the digest covers them all). */
  readonly procs: Process[] = [];
  /** Shadow container -> the model's. */
  readonly containers = new Map<SContainer, VfioContainer>();
  readonly tracked: Tracked;
  readonly stats: WorldStats = { steps: 0, failedCalls: 0, uncertain: 0, isolationChecks: 0 };
  private readonly trace: string[] = [];
  private readonly oracle: MemOracle;

  constructor(
    readonly cfg: FuzzConfig,
    readonly options: WorldOptions = {},
  ) {
    this.host = new Host({ ...cfg, memory: 2 ** 34, ...options.hostExtra });
    this.shadow =
      (options.shadow ?? true) ? new Shadow(cfg, this.host.groups[0].id, this.host.devices[0].name) : null;
    this.tracked = { ranges: [], seen: new Map() };
    this.proc = this.spawn();
    this.sp = this.shadow?.spawn() ?? null;
    this.oracle = {
      vma: (va) => {
        if (va >= 1n << 53n) return undefined;
        const v = this.proc.mm.findVma(Number(va));
        if (v === undefined) return undefined;
        return {
          prot: v.prot,
          kind: v.pfnmapBase !== undefined ? 'pfnmap' : v.pageLg2 > 12 ? 'huge' : 'anon',
        };
      },
      populated: (va) => {
        const v = this.proc.mm.findVma(Number(va));
        if (v === undefined) return false;
        const unit = 2 ** v.pageLg2;
        return v.pages.has(Math.floor((Number(va) - v.start) / unit));
      },
      canRead: (va, len) => this.accessible(va, len, 1),
      canWrite: (va, len) => this.accessible(va, len, 2),
    };
  }

  private accessible(va: bigint, len: number, bit: number): boolean {
    if (len === 0) return true;
    if (va + BigInt(len) > 1n << 47n) return false;
    for (let a = (va / PAGE) * PAGE; a < va + BigInt(len); a += PAGE) {
      const v = this.proc.mm.findVma(Number(a));
      if (v === undefined || (v.prot & bit) === 0) return false;
    }
    return true;
  }

  private spawn(): Process {
    const p = this.host.spawn();
    for (const r of REGIONS) {
      if (r.kind === 'hole' || r.kind === 'bar') continue;
      const opts =
        r.kind === 'huge' ? { addr: r.base, hugeLg2: 21 as const } : { addr: r.base, prot: r.prot };
      const at = p.mmap(r.pages * 4096, opts);
      if (at !== r.base) throw new Error(`mmap of region at ${r.base.toString(16)} gave ${at}`);
    }
    p.mmap(SCRATCH.pages * 4096, { addr: SCRATCH.rw });
    p.mmap(SCRATCH.pages * 4096, { addr: SCRATCH.ro });
    this.procs.push(p);
    return p;
  }

  get name(): string {
    return configName(this.cfg);
  }

  // ---- resolving abstract targets ------------------------------------------------------------

  private fdsOfKind(sel: FdSel['sel']): number[] {
    const out: number[] = [];
    for (const fd of this.proc.openFds) {
      const k = FD_SEL[this.proc.fdget(fd)!.kind] ?? 'other';
      if (sel === 'any' || k === sel || (sel === 'other' && (k === 'iommufd' || k === 'cdev'))) out.push(fd);
    }
    return out;
  }

  fd(s: FdSel): number {
    if (s.sel === 'num') return s.fd;
    const list = this.fdsOfKind(s.sel);
    return list.length === 0 ? 99 : list[s.i % list.length];
  }

  va(s: VaSel): bigint {
    if ('abs' in s) return s.abs;
    return BigInt(REGIONS[s.r].base) + BigInt(s.page) * PAGE + BigInt(s.off);
  }

  // ---- arguments -----------------------------------------------------------------------------

  /** Places an ioctl struct where `via` says; returns the model's argument and the shadow's view of it. */
  private place(bytes: Uint8Array, via: Via): { arg: IoctlArg; view: ArgView } {
    switch (via) {
      case 'bytes':
        return { arg: bytes, view: this.bytesView(bytes) };
      case 'short': {
        const b = bytes.slice(0, Math.max(0, bytes.byteLength - 4));
        return { arg: b, view: this.bytesView(b) };
      }
      case 'ptr':
        return this.pointer(SCRATCH.rw + 0x3000, bytes);
      case 'ptr-ro':
        return this.pointer(SCRATCH.ro + 0x3000, bytes);
      case 'ptr-hole':
        return this.pointer(SCRATCH.rw + SCRATCH.pages * 4096 + 0x1000, bytes);
    }
  }

  /** Writes `bytes` at `addr` (through a writable window for the read-only scratch, as mprotect would). */
  private pointer(addr: number, bytes: Uint8Array): { arg: IoctlArg; view: ArgView } {
    const v = this.proc.mm.findVma(addr);
    if (v !== undefined) {
      const prot = v.prot;
      v.prot = 3;
      this.proc.writeMemory(addr, bytes);
      v.prot = prot;
      if (addr === SCRATCH.ro + 0x3000) v.prot = 1;
    }
    return { arg: addr, view: this.addrView(BigInt(addr)) };
  }

  private bytesView(b: Uint8Array): ArgView {
    return {
      value: 0x7ffc_0000_0000n,
      read: (len, off = 0) => (off + len > b.byteLength ? -14 : b.slice(off, off + len)),
      canWrite: (len, off = 0) => off + len <= b.byteLength,
    };
  }

  private addrView(addr: bigint): ArgView {
    return {
      value: addr,
      read: (len, off = 0) => {
        const va = addr + BigInt(off);
        if (!this.oracle.canRead(va, len)) return -14;
        const out = new Uint8Array(len);
        this.proc.mm.readUser(Number(va), out, 0, len);
        return out;
      },
      canWrite: (len, off = 0) => this.oracle.canWrite(addr + BigInt(off), len),
    };
  }

  private valueView(v: bigint): ArgView {
    return this.addrView(BigInt.asUintN(64, v));
  }

  // ---- one step ------------------------------------------------------------------------------

  step(op: Op): void {
    this.stats.steps++;
    const n = this.stats.steps;
    try {
      const before = this.digest();
      const r = this.run(op);
      // Invariants after every step: re-checked whenever the state changed (an unchanged digest
      // means the state they were last checked on).
      if (this.digest() !== before) this.isolation();
      if (typeof r === 'number' && r >= 0) this.succeeded.set(op.k, (this.succeeded.get(op.k) ?? 0) + 1);
      this.trace.push(`${n}: ${show(op)} -> ${r}`);
      if (this.trace.length > 16) this.trace.shift();
    } catch (e) {
      if (e instanceof FuzzFailure) {
        throw new FuzzFailure(
          `${e.message}\n  host ${this.name}\n  step ${n}: ${show(op)}\n  before:\n    ${this.trace.join('\n    ')}`,
        );
      }
      throw new FuzzFailure(
        `exception at step ${n} (${show(op)}) on ${this.name}: ${(e as Error).stack ?? e}\n  before:\n    ${this.trace.join('\n    ')}`,
      );
    }
  }

  private run(op: Op): number | string {
    const p = this.proc;
    const sp = this.sp;
    const sh = this.shadow;
    switch (op.k) {
      case 'open': {
        const gid = this.host.groups[0].id;
        const path = {
          container: '/dev/vfio/vfio',
          group: `/dev/vfio/${gid}`,
          'group-bad': `/dev/vfio/${gid + 7}`,
          sysfs: '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit',
          eventfd: '',
          iommufd: '/dev/iommu',
          cdev: '/dev/vfio/devices/vfio0',
        }[op.what];
        if (op.what === 'eventfd')
          return this.syscall(sh && sp ? () => sh.eventfd(sp) : null, () => p.eventfd());
        // The shadow models VFIO's group/container path, not iommufd: shadowed runs leave those alone.
        if (sh && (op.what === 'iommufd' || op.what === 'cdev')) return 'skipped';
        const r = this.syscall(sh && sp ? () => sh.open(sp, path) : null, () => p.open(path));
        if (typeof r === 'number' && r >= 0 && op.what === 'container' && sp) {
          const sf = sp.fds.get(r);
          if (sf?.kind === 'container') this.containers.set(sf.c, p.fdget(r) as VfioContainer);
        }
        return r;
      }
      case 'fillFds': {
        // Fill the table with eventfds (the model's and the shadow's alike, unchecked one by one), check
        // what a full table answers (eventfd, open, GET_DEVICE_FD: EMFILE), then close the fillers again,
        // so later steps do not carry a thousand descriptors.
        const fillers: number[] = [];
        for (let fd = p.eventfd(); fd >= 0; fd = p.eventfd()) {
          if (sh && sp) sh.eventfd(sp);
          fillers.push(fd);
        }
        const out = [
          this.syscall(sh && sp ? () => sh.eventfd(sp) : null, () => p.eventfd()),
          this.run({ k: 'open', what: 'container' }),
          this.run({ k: 'open', what: 'group-bad' }),
          this.run({ k: 'device', fd: { sel: 'group', i: 0 }, name: 'good' }),
        ];
        for (const fd of fillers) {
          p.close(fd);
          if (sh && sp) sh.close(sp, fd);
        }
        return out.join(',');
      }
      case 'close': {
        const fd = this.fd(op.fd);
        return this.syscall(sh && sp ? () => sh.close(sp, fd) : null, () => p.close(fd));
      }
      case 'api':
        return this.ioctl(this.fd(op.fd), REQ.GET_API_VERSION, { value: 0n });
      case 'ext':
        return this.ioctl(this.fd(op.fd), REQ.CHECK_EXTENSION, { value: BigInt(op.ext) });
      case 'setIommu':
        return this.ioctl(this.fd(op.fd), REQ.SET_IOMMU, { value: BigInt(op.type) });
      case 'status': {
        const b = new Uint8Array(8);
        put32(b, 0, op.argsz);
        return this.ioctl(this.fd(op.fd), REQ.GROUP_GET_STATUS, { bytes: b, via: op.via });
      }
      case 'setContainer': {
        const b = new Uint8Array(4);
        put32(b, 0, this.fd(op.target));
        return this.ioctl(this.fd(op.fd), REQ.GROUP_SET_CONTAINER, { bytes: b, via: 'bytes' });
      }
      case 'unset':
        return this.ioctl(this.fd(op.fd), REQ.GROUP_UNSET_CONTAINER, { value: 0n });
      case 'device': {
        const name = { good: this.host.devices[0].name, bad: '0000:00:1f.7', empty: '' }[op.name];
        return this.ioctl(this.fd(op.fd), REQ.GROUP_GET_DEVICE_FD, {
          bytes: enc.encode(`${name}\0`),
          via: 'bytes',
        });
      }
      case 'map': {
        const b = new Uint8Array(32);
        put32(b, 0, op.argsz);
        put32(b, 4, op.flags);
        put64(b, 8, this.va(op.va));
        put64(b, 16, op.iova);
        put64(b, 24, op.size);
        return this.ioctl(this.fd(op.fd), REQ.IOMMU_MAP_DMA, { bytes: b, via: op.via });
      }
      case 'unmap': {
        const b = new Uint8Array(op.bitmap ? 48 : 24);
        put32(b, 0, op.argsz);
        put32(b, 4, op.flags);
        put64(b, 8, op.iova);
        put64(b, 16, op.size);
        if (op.bitmap) {
          put64(b, 24, op.bitmap.pgsize);
          put64(b, 32, op.bitmap.size);
          put64(b, 40, this.bitmapAddr(op.bitmap.data));
        }
        return this.ioctl(this.fd(op.fd), REQ.IOMMU_UNMAP_DMA, { bytes: b, via: op.via });
      }
      case 'info': {
        const b = new Uint8Array(op.len < 0 ? Math.max(op.argsz, 16) : op.len);
        if (b.byteLength >= 4) put32(b, 0, op.argsz);
        return this.ioctl(this.fd(op.fd), REQ.IOMMU_GET_INFO, { bytes: b, via: op.via });
      }
      case 'dirty': {
        const b = new Uint8Array(op.get ? 48 : 8);
        put32(b, 0, op.argsz);
        put32(b, 4, op.flags);
        if (op.get) {
          put64(b, 8, op.get.iova);
          put64(b, 16, op.get.size);
          put64(b, 24, op.get.pgsize);
          put64(b, 32, op.get.bsize);
          put64(b, 40, this.bitmapAddr(op.get.data));
        }
        return this.ioctl(this.fd(op.fd), REQ.IOMMU_DIRTY_PAGES, { bytes: b, via: 'bytes' });
      }
      case 'rlimit':
        return this.syscall(sh && sp ? () => sh.setrlimit(sp, op.cur, op.max) : null, () =>
          p.setrlimitMemlock(op.cur, op.max),
        );
      case 'setuid':
        return this.syscall(sh && sp ? () => sh.setuid(sp, op.uid) : null, () => p.setuid(op.uid));
      case 'dropCaps': {
        let keep = 0;
        for (let b = 0; b <= 40; b++)
          if (Math.floor(p.task.capEff / 2 ** b) % 2 === 1 && Math.floor(op.keep / 2 ** b) % 2 === 1)
            keep += 2 ** b;
        p.task.setCapabilities(keep);
        if (sh && sp) sh.dropCaps(sp, op.keep);
        this.compare();
        return 0;
      }
      case 'touch': {
        const va = this.va(op.va);
        if (va >= 1n << 53n) return 'skipped';
        const r = p.writeMemory(Number(va), new Uint8Array(op.pages * 4096).fill(0xa5));
        this.compare();
        return r;
      }
      case 'munmap': {
        const reg = REGIONS[op.r];
        const huge = reg.kind === 'huge';
        const unit = huge ? 512 : 1;
        const page = Math.floor(op.page / unit) * unit;
        const pages = Math.min(Math.max(unit, Math.ceil(op.pages / unit) * unit), reg.pages - page);
        const addr = reg.base + page * 4096;
        const r = p.munmap(addr, pages * 4096);
        if (op.remap) p.mmap(pages * 4096, huge ? { addr, hugeLg2: 21 } : { addr, prot: reg.prot });
        this.compare();
        return r;
      }
      case 'mmapBar': {
        // mmap(MAP_SHARED) of BAR0 through the device fd: a VM_PFNMAP mapping of device memory.
        const dev = this.fdsOfKind('device')[0];
        if (dev === undefined) return 'skipped';
        const bar = REGIONS[4];
        p.munmap(bar.base, bar.pages * 4096);
        const pred = this.shadow ? deviceMmap(this.shadow.k.device, op.page * 4096, op.pages * 4096) : null;
        const r = p.mmap(op.pages * 4096, { fd: dev, offset: op.page * 4096, addr: bar.base });
        this.checkRet(Math.min(r, 0), pred, `mmap of BAR0 page ${op.page}, ${op.pages} pages`);
        this.compare();
        return Math.min(r, 0);
      }
      case 'param':
        return this.param(PARAMS[op.name], op.value);
      case 'exit':
        return this.exit();
      case 'raw':
        return this.raw(this.fd(op.fd), op.req, op.arg);
      case 'fileIo':
        return this.fileIo(this.fd(op.fd), op);
      case 'dev': {
        const bytes = new Uint8Array(32);
        op.words.forEach((w, i) => {
          put32(bytes, 4 * i, w);
        });
        return this.ioctl(this.fd({ sel: 'device', i: 0 }), op.req, { bytes, via: 'bytes' });
      }
    }
  }

  private bitmapAddr(s: VaSel): bigint {
    // The dirty bitmap goes to the scratch pages (or wherever the selector points outside them).
    if ('abs' in s) return s.abs;
    return s.r === 0 ? BigInt(SCRATCH.rw + (s.page % SCRATCH.pages) * 4096 + s.off) : this.va(s);
  }

  private raw(fd: number, req: number, a: RawArg): number {
    if (a.t === 'value') return this.ioctl(fd, req, { value: a.v });
    if (a.t === 'mutate') {
      const [name, request, base] = MUTATE_BASES[a.base];
      const bytes = Uint8Array.from(base);
      if (name === 'set-container' && bytes.byteLength >= 4)
        put32(bytes, 0, this.fd({ sel: 'container', i: 0 }));
      if (name === 'irq-set' && bytes.byteLength >= 24) put32(bytes, 20, this.fd({ sel: 'eventfd', i: 0 }));
      if (name === 'bind' && bytes.byteLength >= 12) put32(bytes, 8, this.fd({ sel: 'iommufd', i: 0 }));
      for (const [at, v] of a.sets) if (at < bytes.byteLength) bytes[at] = v;
      for (const [at, bit] of a.flips) if (at < bytes.byteLength) bytes[at] ^= 1 << bit;
      // The struct goes to the fd of the kind its request is for (a random fd now and then).
      const target =
        (request >= 0x3b6b && request <= 0x3b6f) || name.startsWith('dev-')
          ? this.fd({ sel: 'device', i: 0 })
          : request >= 0x3b67 && request <= 0x3b6a
            ? this.fd({ sel: 'group', i: 0 })
            : request >= 0x3b76 && request <= 0x3b78
              ? this.fd({ sel: 'cdev', i: 0 })
              : request >= 0x3b80
                ? this.fd({ sel: 'iommufd', i: 0 })
                : this.fd({ sel: 'container', i: 0 });
      return this.ioctl(fd === -3 ? fd : target, request, { bytes, via: 'bytes' });
    }
    const bytes = Uint8Array.from(a.bytes);
    if (a.t === 'bytes') {
      if (a.argsz !== undefined && bytes.byteLength >= 4) put32(bytes, 0, a.argsz);
      if (a.flags !== undefined && bytes.byteLength >= 8) put32(bytes, 4, a.flags);
      return this.ioctl(fd, req, { bytes, via: 'bytes' });
    }
    const base =
      a.where === 'rw'
        ? SCRATCH.rw + 0x4000
        : a.where === 'ro'
          ? SCRATCH.ro + 0x4000
          : a.where === 'hole'
            ? SCRATCH.rw + SCRATCH.pages * 4096 + 0x1000
            : REGIONS[0].base;
    const addr = base + a.off;
    if (a.where === 'rw') this.proc.writeMemory(addr, bytes);
    return this.ioctl(fd, req, { value: BigInt(addr) });
  }

  /**
   * A file system call. Writes stay away from the device, whose registers start DMA, and from sysfs,
   * whose writes the 'param' op makes and follows.
   */
  private fileIo(fd: number, op: Extract<Op, { k: 'fileIo' }>): number | string {
    const p = this.proc;
    const kind = p.fdget(fd)?.kind ?? '';
    if ((op.how === 'write' || op.how === 'pwrite') && (kind.startsWith('vfio-device') || kind === 'sysfs'))
      return 'skipped';
    const buf = new Uint8Array(op.len);
    const predict =
      this.shadow && this.sp ? () => this.shadow!.fileIo(this.sp!, fd, op.how, op.off, op.len) : null;
    return this.syscall(predict, () => {
      switch (op.how) {
        case 'read':
          return p.read(fd, buf);
        case 'write':
          return p.write(fd, buf);
        case 'pread':
          return p.pread(fd, buf, op.off);
        case 'pwrite':
          return p.pwrite(fd, buf, op.off);
        case 'lseek':
          return p.lseek(fd, op.off, op.whence);
      }
    });
  }

  /** A module parameter file: open, write, read back, close. */
  private param(name: string, value: string): number | string {
    const p = this.proc;
    const path = `/sys/module/${name.replace('.', '/parameters/')}`;
    const fd = this.syscall(this.shadow && this.sp ? () => this.shadow!.open(this.sp!, path) : null, () =>
      p.open(path),
    );
    if (typeof fd !== 'number' || fd < 0) return fd;
    const text = enc.encode(value);
    const before = this.digest();
    const pred = this.shadow && this.sp ? this.shadow.writeParam(this.sp, fd, value) : null;
    const r = p.pwrite(fd, text, 0);
    this.checkRet(r, pred, `write(${path}, ${JSON.stringify(value)})`);
    if (r < 0) this.same(before, `failed write of ${name}`);
    if (pred && pred.ret === undefined && this.shadow) {
      // The shadow could not parse this text: take the value the model now holds.
      this.stats.uncertain++;
      const vp = this.host.vfioParams;
      this.shadow.params = {
        dmaEntryLimit: vp.dmaEntryLimit,
        allowUnsafeInterrupts: vp.allowUnsafeInterrupts,
        disableHugepages: vp.disableHugepages,
        noiommu: vp.enableUnsafeNoiommuMode,
      };
    }
    const out = new Uint8Array(32);
    const n = p.pread(fd, out, 0);
    if (this.shadow) {
      const sp = this.shadow.params;
      const want =
        name === 'vfio_iommu_type1.dma_entry_limit'
          ? String(sp.dmaEntryLimit)
          : (
                {
                  'vfio_iommu_type1.allow_unsafe_interrupts': sp.allowUnsafeInterrupts,
                  'vfio_iommu_type1.disable_hugepages': sp.disableHugepages,
                  'vfio.enable_unsafe_noiommu_mode': sp.noiommu,
                } as Record<string, boolean>
              )[name]
            ? 'Y'
            : 'N';
      const got = new TextDecoder().decode(out.subarray(0, Math.max(0, n)));
      if (got !== `${want}\n`)
        throw new FuzzFailure(`read of ${name} gave ${JSON.stringify(got)}, expected ${want}`);
    }
    this.syscall(this.shadow && this.sp ? () => this.shadow!.close(this.sp!, fd) : null, () => p.close(fd));
    return r;
  }

  /** exit(2), the invariants of a process gone, and a fresh process in its place. */
  private exit(): number {
    this.proc.exit();
    if (this.shadow && this.sp) this.shadow.exit(this.sp);
    checkTornDown(this);
    this.proc = this.spawn();
    this.sp = this.shadow?.spawn() ?? null;
    this.compare();
    return 0;
  }

  /** The end of a run: everything closed, nothing pinned or charged, no STE lets the device in. */
  finish(): void {
    try {
      this.proc.exit();
      if (this.shadow && this.sp) this.shadow.exit(this.sp);
      checkTornDown(this);
    } catch (e) {
      if (e instanceof FuzzFailure)
        throw new FuzzFailure(
          `${e.message}\n  host ${this.name}\n  at the end; last steps:\n    ${this.trace.join('\n    ')}`,
        );
      throw e;
    }
  }

  // ---- the checks ----------------------------------------------------------------------------

  digest(): string {
    return stateDigest(this.host, this.procs);
  }

  private same(before: string, what: string): void {
    const after = this.digest();
    if (after !== before)
      throw new FuzzFailure(`${what} failed but changed the state:\n  ${firstDiff(before, after)}`);
  }

  private checkRet(r: number, pred: Prediction | null, what: string): void {
    if (typeof r !== 'number' || !Number.isInteger(r) || r < -MAX_ERRNO)
      throw new FuzzFailure(`${what} returned ${String(r)}, not >= 0 or -errno`);
    if (pred === null || pred.ret === undefined) return;
    if (r !== pred.ret)
      throw new FuzzFailure(`${what} returned ${errName(r)}, the references say ${errName(pred.ret)}`);
    const d = pred.check?.();
    if (d) throw new FuzzFailure(`${what}: ${d}`);
  }

  /** A non-ioctl system call with its shadow prediction. */
  private syscall(predict: (() => Prediction) | null, call: () => number): number {
    const before = this.digest();
    const pred = predict?.() ?? null;
    const r = call();
    this.checkRet(r, pred, 'syscall');
    if (r < 0) {
      this.stats.failedCalls++;
      this.same(before, 'syscall');
    }
    if (pred && pred.ret === undefined) this.uncertain(pred);
    this.compare();
    return r;
  }

  ioctl(fd: number, req: number, a: { value: bigint } | { bytes: Uint8Array; via: Via }): number {
    const { arg, view } =
      'value' in a ? { arg: a.value, view: this.valueView(a.value) } : this.place(a.bytes, a.via);
    const before = this.digest();
    const pred = this.shadow && this.sp ? this.shadow.ioctl(this.sp, fd, req, view, this.oracle) : null;
    const r = this.proc.ioctl(fd, req, arg);
    const what = `ioctl(${fd}, 0x${(req >>> 0).toString(16)})`;
    this.checkRet(r, pred, what);
    if (r < 0) {
      this.stats.failedCalls++;
      // The kernel itself fails an UNMAP after unmapping when it cannot write the reply or the dirty
      // bitmap back (§3.9 6d, vfio_iommu_type1_unmap_dma): the shadow says when; without it, any
      // UNMAP that ends in EFAULT is let through.
      const exempt = pred ? pred.changesOnFailure : req === REQ.IOMMU_UNMAP_DMA && r === -14;
      if (!exempt) this.same(before, what);
    }
    if (pred && pred.ret === undefined) this.uncertain(pred);
    this.compare();
    // The invariants are re-checked by step() whenever the state digest changed.
    return r;
  }

  private uncertain(pred: Prediction): void {
    this.stats.uncertain++;
    const why = pred.why ?? '?';
    this.uncertainWhy.set(why, (this.uncertainWhy.get(why) ?? 0) + 1);
    this.resync();
  }

  /** Calls that succeeded, by operation kind. */
  readonly succeeded = new Map<string, number>();

  /** Why the shadow could not predict, and how often. */
  readonly uncertainWhy = new Map<string, number>();

  /** After an answer the references do not decide: the shadow takes the model's type-1 state. */
  private resync(): void {
    const sh = this.shadow;
    if (sh === null) return;
    for (const [sc, mc] of this.containers) {
      const it = mc.iommu;
      if (it === null || sc.type === 0) continue;
      const owners = new Map<unknown, SProc>();
      for (const d of sc.dmas) owners.set(d.owner, d.owner);
      sc.dmas = [...it.s.dmas].map((d) => ({
        iova: BigInt(d.iova),
        size: BigInt(d.size),
        vaddr: BigInt(d.vaddr),
        prot: d.prot,
        charged: d.lockedPages,
        owner: this.sp!,
        lockCap: d.lockCap,
        invalid: d.vaddrInvalid,
      }));
      sc.avail = it.s.dmaAvail;
      sc.dirty = it.s.dirtyPageTracking;
    }
    if (this.sp) this.sp.lockedVm = this.proc.mm.lockedVm;
  }

  /** The model's state equals the shadow's. */
  compare(): void {
    const sh = this.shadow;
    const sp = this.sp;
    if (sh === null || sp === null) return;
    const p = this.proc;
    const fds = p.openFds;
    const sfds = [...sp.fds.keys()].sort((a, b) => a - b);
    if (fds.join() !== sfds.join())
      throw new FuzzFailure(`fds ${fds.join()} but the shadow has ${sfds.join()}`);
    for (const fd of fds) {
      const want = kindOf(sp.fds.get(fd)!);
      const got = p.fdget(fd)!.kind;
      if (want !== got && want !== '?')
        throw new FuzzFailure(`fd ${fd} is a ${got}, the shadow says ${want}`);
    }
    const mg = this.host.vfio.groups.get(this.host.groups[0].id)!;
    const sg = sh.group;
    if ((mg.openedFile !== null) !== sg.opened)
      throw new FuzzFailure(`group file open=${mg.openedFile !== null}, shadow ${sg.opened}`);
    if (mg.openDevices !== sg.devices)
      throw new FuzzFailure(`group has ${mg.openDevices} device fds, shadow ${sg.devices}`);
    const want = sg.container === null ? null : this.containers.get(sg.container);
    if (mg.container !== want)
      throw new FuzzFailure('the group is in a different container than the shadow says');
    let pinned = 0;
    for (const [sc, mc] of this.containers) {
      if (!sh.containers.includes(sc)) {
        this.containers.delete(sc);
        continue;
      }
      const it = mc.iommu;
      if ((it === null) !== (sc.type === 0))
        throw new FuzzFailure(
          `container IOMMU ${it === null ? 'unset' : 'set'}, the shadow says type ${sc.type}`,
        );
      if (it === null) continue;
      if (it.v2 !== (sc.type !== 1)) throw new FuzzFailure(`container v2=${it.v2}, shadow type ${sc.type}`);
      const s = it.s;
      const got = [...s.dmas].map(
        (d) =>
          `${d.iova.toString(16)}+${d.size.toString(16)}@${d.vaddr.toString(16)} p${d.prot} c${d.lockedPages}${d.vaddrInvalid ? ' inval' : ''}`,
      );
      const exp = sc.dmas.map(
        (d) =>
          `${d.iova.toString(16)}+${d.size.toString(16)}@${d.vaddr.toString(16)} p${d.prot} c${d.charged}${d.invalid ? ' inval' : ''}`,
      );
      if (got.join() !== exp.join())
        throw new FuzzFailure(
          `mappings differ:\n    model  [${got.join(', ')}]\n    shadow [${exp.join(', ')}]`,
        );
      if (s.dmaAvail !== sc.avail) throw new FuzzFailure(`dma_avail ${s.dmaAvail}, shadow ${sc.avail}`);
      if (s.dirtyPageTracking !== sc.dirty)
        throw new FuzzFailure(`dirty tracking ${s.dirtyPageTracking}, shadow ${sc.dirty}`);
      for (const d of sc.dmas) pinned += d.charged;
    }
    if (p.mm.lockedVm !== sp.lockedVm)
      throw new FuzzFailure(`locked_vm ${p.mm.lockedVm} pages, shadow ${sp.lockedVm}`);
    if (p.mm.pinnedPages !== pinned)
      throw new FuzzFailure(`pinned pages ${p.mm.pinnedPages}, shadow ${pinned}`);
    if (p.task.memlock.cur !== sp.memlock.cur || p.task.memlock.max !== sp.memlock.max)
      throw new FuzzFailure('RLIMIT_MEMLOCK differs from the shadow');
    if (p.task.capEff !== sp.capEff || p.task.uid !== sp.uid)
      throw new FuzzFailure('credentials differ from the shadow');
  }

  private isolation(): void {
    this.stats.isolationChecks++;
    checkIsolation(this);
  }
}

function kindOf(f: SFile): string {
  switch (f.kind) {
    case 'container':
      return 'vfio-container';
    case 'group':
      return 'vfio-group';
    case 'device':
      return 'vfio-device';
    case 'other':
      return '?';
    default:
      return f.kind;
  }
}

/** A return value for a message: 0, 3, -EINVAL. */
function errName(r: number): string {
  return r >= 0 ? String(r) : `-${errnoName(-r)}`;
}

function firstDiff(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `before …${a.slice(Math.max(0, i - 80), i + 80)}…\n  after  …${b.slice(Math.max(0, i - 80), i + 80)}…`;
}
