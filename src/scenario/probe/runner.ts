/**
 * Runs probe files against a modelled host with the exact meaning of probe/vfioprobe.c: the same
 * slots (4 containers, 4 groups), the same lazily mapped 64 MiB buffer, fd 0 as a non-VFIO file,
 * and the same JSON lines, field for field and in the same order. Each file runs in a fresh
 * process on the same host, as the oracle runs one probe process per file in one boot.
 */

import type { Host } from '../../host/host.ts';
import type { Process } from '../../host/process.ts';
import type { KernelFile } from '../../mm/file.ts';
import { EINVAL, ENOENT, ENOSPC, errnoName } from '../../uapi/errno.ts';
import {
  IOMMU_DESTROY,
  IOMMU_GET_HW_INFO,
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_INVALIDATE,
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_UNMAP,
  IOMMU_VDEVICE_ALLOC,
  IOMMU_VEVENTQ_ALLOC,
  IOMMU_VIOMMU_ALLOC,
  iommuDestroy,
  iommuHwInfo,
  iommuHwptAlloc,
  iommuHwptInvalidate,
  iommuIoasAlloc,
  iommuIoasMap,
  iommuIoasUnmap,
  iommuVdeviceAlloc,
  iommuVeventqAlloc,
  iommuViommuAlloc,
  vfioDeviceAttachIommufdPt,
  vfioDeviceBindIommufd,
  vfioDeviceDetachIommufdPt,
} from '../../uapi/iommufd.ts';
import {
  decodeDmaUnmap,
  encodeDmaMap,
  encodeDmaUnmap,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
} from '../../uapi/vfio.ts';
import {
  DEVICE_INFO_SIZE,
  decodeRegionInfo,
  encodeRegionInfo,
  REGION_INFO_SIZE,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
} from '../../uapi/vfio-device.ts';
import { formatCaps } from './caps.ts';
import { buildCmd, formatVeventqRead, hex16 } from './iommufd-format.ts';
import { PROBE_OPS } from './ops.ts';
import { type ProbeLine, parseU64 } from './parse.ts';

export type ProbeRecord = Record<string, unknown>;

export interface ProbeOptions {
  /** The group number `open_group` uses by default (the oracle's VFIO_GROUP). */
  group?: number;
  /** The device name `device_open` uses by default (the oracle's VFIO_DEVICE). */
  device?: string;
  /** The probe was built with -DWITH_IOMMUFD (the 6.18-iommufd kernel's probe). */
  iommufd?: boolean;
  /** The probe has this project's local ops (scripts/oracle/x86-local-ops.patch). */
  localOps?: boolean;
}

const MAXC = 4;
const MAXG = 4;
/** iommufd_ops.inc's slot tables. */
const NSLOT = 8;
const ALL_ONES = 0xffff_ffff_ffff_ffffn;

/** The scenario file the C probe reads with fopen (its fd 3, before any op runs). */
class ScenarioFile implements KernelFile {
  readonly kind = 'file';
}
const MIB64 = 64n << 20n;

const hex = (v: bigint | number): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;

/** Byte `i` of the probe's `fill` pattern for `seed` (vfioprobe.c: (i * 7 + seed) & 0xff). */
export const fillByte = (i: number, seed: number): number => (i * 7 + seed) & 0xff;

/** `size` bytes of the `fill` pattern. */
export function fillPattern(seed: number, size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => fillByte(i, seed));
}

/** One probe process: its slots and buffer, and the output lines it printed. */
export class ProbeProcess {
  readonly proc: Process;
  readonly out: ProbeRecord[] = [];
  private cfd = [-1, -1, -1, -1];
  private dfd = -1;
  private bar0Off = 0;
  private cfgOff = 0;
  private gfd = [-1, -1, -1, -1];
  private buf = 0;
  /** The local `dirty` op's bitmap page. */
  private dirtyBits = 0;
  private buflen = 0;
  private seq = 0;
  // iommufd_ops.inc state
  private ifd = -1;
  private devId = 0;
  private readonly ioasId = new Array<number>(NSLOT).fill(0);
  private readonly hwptId = new Array<number>(NSLOT).fill(0);
  private readonly viommuId = new Array<number>(NSLOT).fill(0);
  private readonly vdevId = new Array<number>(NSLOT).fill(0);
  private veventqId = 0;
  private veventqFd = -1;
  private s1Root = ALL_ONES;
  private s1Pool = 0n;
  private s1PoolEnd = 0n;
  private s1IpaBase = 0n;
  /** A page of process memory for what the C probe keeps on its stack and passes by pointer. */
  private scratch = 0;
  private args: [string, string][] = [];
  private rec: ProbeRecord = {};

  constructor(
    readonly host: Host,
    readonly scenario: string | null,
    readonly options: ProbeOptions,
    proc?: Process,
  ) {
    this.proc = proc ?? host.spawn();
    // vfioprobe opens its scenario file before the first op: that file is fd 3.
    if (proc === undefined && scenario !== null) this.proc.installFd(new ScenarioFile());
  }

  run(lines: ProbeLine[]): void {
    for (const l of lines) this.runLine(l);
  }

  /** The process exits: every fd closed, memory released. */
  exit(): void {
    this.proc.exit();
  }

  runLine(l: ProbeLine): void {
    this.args = l.args;
    const spec = PROBE_OPS[l.op];
    const built = spec.local === true && this.options.localOps === true;
    if ((spec.iommufd || spec.local) && !built && !(spec.iommufd && this.options.iommufd)) {
      this.begin(l.op);
      this.rec.ret = -1;
      this.rec.errno = 'EPROBE_UNKNOWN_OP';
      this.end();
      return;
    }
    const fn = (this as unknown as Record<string, (() => void) | undefined>)[`op_${l.op}`];
    if (fn === undefined) throw new Error(`probe op '${l.op}' is not implemented in this model yet`);
    fn.call(this);
  }

  // ---- helpers, as in the C program ----
  private arg(k: string): string | undefined {
    for (const [key, v] of this.args) if (key === k) return v;
    return undefined;
  }

  private has(k: string): boolean {
    return this.arg(k) !== undefined;
  }

  private argu(k: string, def: bigint): bigint {
    const v = this.arg(k);
    return v === undefined ? def : parseU64(v);
  }

  /** idx(): a slot number, 0 when out of range. */
  private idx(k: string, max: number): number {
    const i = BigInt.asIntN(32, this.argu(k, 0n));
    return i < 0n || i >= BigInt(max) ? 0 : Number(i);
  }

  private begin(op: string): void {
    this.rec = { seq: this.seq++ };
    if (this.scenario !== null) this.rec.scenario = this.scenario;
    this.rec.op = op;
    this.rec.args = Object.fromEntries(this.args);
  }

  /** res(ret, errno) for a model result: >= 0 is the value, < 0 is -1 with that errno. */
  private res(r: number): void {
    this.rec.ret = r < 0 ? -1 : r;
    this.rec.errno = r < 0 ? errnoName(-r) : null;
  }

  private end(): void {
    this.out.push(this.rec);
  }

  private vmFields(): void {
    const st = this.proc.status();
    this.rec.VmLck_kB = st.VmLck_kB;
    this.rec.VmPin_kB = st.VmPin_kB;
    this.rec.CapEff = st.CapEff;
  }

  /** ensure_buf: keep the buffer if large enough, else replace it with a fresh anonymous mapping. */
  private ensureBuf(len: bigint): void {
    if (this.buf !== 0 && BigInt(this.buflen) >= len) return;
    if (this.buf !== 0) this.proc.munmap(this.buf, this.buflen);
    const addr = len > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : this.proc.mmap(Number(len));
    if (addr < 0) {
      this.buf = 0;
      this.buflen = 0;
      return;
    }
    this.buf = addr;
    this.buflen = Number(len);
  }

  private time<T>(fn: () => T): [T, number] {
    const t0 = performance.now();
    const r = fn();
    return [r, Math.round((performance.now() - t0) * 1000)];
  }

  // ---- container and group ops ----
  op_open_container(): void {
    const c = this.idx('c', MAXC);
    this.begin('open_container');
    const fd = this.proc.open(this.arg('path') ?? '/dev/vfio/vfio');
    if (fd >= 0) {
      if (this.cfd[c] >= 0) this.proc.close(this.cfd[c]);
      this.cfd[c] = fd;
    }
    this.res(Math.min(fd, 0));
    this.end();
  }

  op_close_container(): void {
    const c = this.idx('c', MAXC);
    this.begin('close_container');
    this.res(this.proc.close(this.cfd[c]));
    this.cfd[c] = -1;
    this.end();
  }

  op_get_api_version(): void {
    const c = this.idx('c', MAXC);
    this.begin('get_api_version');
    this.res(this.proc.ioctl(this.cfd[c], VFIO_GET_API_VERSION));
    this.end();
  }

  op_check_extension(): void {
    const c = this.idx('c', MAXC);
    const ext = this.argu('ext', 0n);
    this.begin('check_extension');
    this.res(this.proc.ioctl(this.cfd[c], VFIO_CHECK_EXTENSION, ext));
    this.end();
  }

  op_set_iommu(): void {
    const c = this.idx('c', MAXC);
    const t = this.argu('type', 3n);
    this.begin('set_iommu');
    this.res(this.proc.ioctl(this.cfd[c], VFIO_SET_IOMMU, t));
    this.end();
  }

  op_open_group(): void {
    const g = this.idx('g', MAXG);
    const num = this.has('group')
      ? Number(BigInt.asIntN(32, this.argu('group', 0n)))
      : (this.options.group ?? this.host.groups[0].id);
    this.begin('open_group');
    const fd = this.proc.open(`/dev/vfio/${num}`);
    if (fd >= 0) {
      if (this.gfd[g] >= 0) this.proc.close(this.gfd[g]);
      this.gfd[g] = fd;
    }
    this.res(Math.min(fd, 0));
    this.rec.group = num;
    this.end();
  }

  op_close_group(): void {
    const g = this.idx('g', MAXG);
    this.begin('close_group');
    this.res(this.proc.close(this.gfd[g]));
    this.gfd[g] = -1;
    this.end();
  }

  op_group_get_status(): void {
    const g = this.idx('g', MAXG);
    const st = new Uint8Array(8);
    const v = new DataView(st.buffer);
    v.setUint32(0, this.has('argsz') ? Number(BigInt.asUintN(32, this.argu('argsz', 0n))) : 8, true);
    this.begin('group_get_status');
    const r = this.proc.ioctl(this.gfd[g], VFIO_GROUP_GET_STATUS, st);
    this.res(r);
    if (r >= 0) {
      const flags = v.getUint32(4, true);
      this.rec.flags = flags;
      this.rec.viable = (flags & 1) !== 0;
      this.rec.container_set = (flags & 2) !== 0;
    }
    this.end();
  }

  op_group_set_container(): void {
    const g = this.idx('g', MAXG);
    const c = this.idx('c', MAXC);
    const fd = this.has('fd') ? Number(BigInt.asIntN(32, this.argu('fd', 0n))) : this.cfd[c];
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, fd, true);
    this.begin('group_set_container');
    this.res(this.proc.ioctl(this.gfd[g], VFIO_GROUP_SET_CONTAINER, b));
    this.end();
  }

  op_group_unset_container(): void {
    const g = this.idx('g', MAXG);
    this.begin('group_unset_container');
    this.res(this.proc.ioctl(this.gfd[g], VFIO_GROUP_UNSET_CONTAINER));
    this.end();
  }

  op_get_info(): void {
    const c = this.idx('c', MAXC);
    const ib = new Uint8Array(16384);
    const v = new DataView(ib.buffer);
    this.begin('get_info');
    if (this.has('argsz')) {
      const argsz = Number(BigInt.asUintN(32, this.argu('argsz', 0n)));
      v.setUint32(0, argsz, true);
      this.res(this.proc.ioctl(this.cfd[c], VFIO_IOMMU_GET_INFO, ib));
      this.rec.req_argsz = argsz;
    } else {
      v.setUint32(0, 24, true);
      let r = this.proc.ioctl(this.cfd[c], VFIO_IOMMU_GET_INFO, ib);
      if (r < 0) {
        this.res(r);
        this.end();
        return;
      }
      this.rec.first_argsz = v.getUint32(0, true);
      const need = v.getUint32(0, true);
      if (need > 24 && need <= ib.byteLength) {
        ib.fill(0);
        v.setUint32(0, need, true);
        r = this.proc.ioctl(this.cfd[c], VFIO_IOMMU_GET_INFO, ib);
      }
      this.res(r);
      if (r < 0) {
        this.end();
        return;
      }
    }
    const argsz = v.getUint32(0, true);
    const flags = v.getUint32(4, true);
    this.rec.argsz = argsz;
    this.rec.flags = flags;
    this.rec.iova_pgsizes = hex(v.getBigUint64(8, true));
    this.rec.cap_offset = v.getUint32(16, true);
    if (flags & 2 && v.getUint32(16, true))
      this.rec.caps = formatCaps(ib, Math.min(argsz, ib.byteLength), v.getUint32(16, true));
    this.end();
  }

  /** resolve_vaddr: an absolute vaddr=, or buffer + off (growing the buffer for large requests). */
  private resolveVaddr(): bigint {
    if (this.has('vaddr')) return this.argu('vaddr', 0n);
    const off = this.argu('off', 0n);
    const size = this.argu('size', 0n);
    let need = this.argu('bufsize', 0n);
    if (need === 0n) {
      need = MIB64;
      const end = off + size;
      if (end > need && end < 1n << 34n && BigInt.asUintN(64, end) > off) need = (end + 0xfffffn) & ~0xfffffn;
    }
    this.ensureBuf(need);
    return BigInt.asUintN(64, BigInt(this.buf) + off);
  }

  private doMap(c: number, iova: bigint, size: bigint, vaddr: bigint, flags: number, argsz: number): number {
    const b = encodeDmaMap({ argsz, flags, vaddr, iova, size });
    return this.proc.ioctl(this.cfd[c], VFIO_IOMMU_MAP_DMA, b);
  }

  op_map(): void {
    const c = this.idx('c', MAXC);
    const iova = this.argu('iova', 0n);
    const size = this.argu('size', 0n);
    const flags = Number(BigInt.asUintN(32, this.argu('flags', 3n)));
    const argsz = Number(BigInt.asUintN(32, this.argu('argsz', 32n)));
    const vaddr = this.resolveVaddr();
    this.begin('map');
    const [r, us] = this.time(() => this.doMap(c, iova, size, vaddr, flags, argsz));
    this.res(r);
    this.rec.req = {
      argsz,
      flags,
      iova: hex(iova),
      size: hex(size),
      vaddr_off: hex(vaddr - BigInt(this.buf)),
    };
    this.rec.us = us;
    if (this.has('vm')) this.vmFields();
    this.end();
  }

  op_unmap(): void {
    const c = this.idx('c', MAXC);
    const argsz = Number(BigInt.asUintN(32, this.argu('argsz', 24n)));
    const flags = Number(BigInt.asUintN(32, this.argu('flags', 0n)));
    const iova = this.argu('iova', 0n);
    const size = this.argu('size', 0n);
    const b = encodeDmaUnmap({ argsz, flags, iova, size });
    this.begin('unmap');
    const [r, us] = this.time(() => this.proc.ioctl(this.cfd[c], VFIO_IOMMU_UNMAP_DMA, b));
    this.res(r);
    this.rec.req = { argsz, flags, iova: hex(iova), size: hex(size) };
    this.rec.out = { size: hex(decodeDmaUnmap(b).size) };
    this.rec.us = us;
    if (this.has('vm')) this.vmFields();
    this.end();
  }

  op_map_loop(): void {
    const c = this.idx('c', MAXC);
    const iova = this.argu('iova', 0n);
    const size = this.argu('size', 4096n);
    const count = this.argu('count', 1n);
    const istride = this.argu('iova_stride', size);
    const ostride = this.argu('off_stride', 0n);
    const off = this.argu('off', 0n);
    const bsz = this.argu('bufsize', MIB64);
    const flags = Number(BigInt.asUintN(32, this.argu('flags', 3n)));
    const stop = this.argu('stop_on_error', 1n) !== 0n;
    this.ensureBuf(bsz);
    this.begin('map_loop');
    let ok = 0n;
    let fails = 0n;
    let firstErr = 0;
    let firstErrIdx = -1n;
    let i = 0n;
    const t0 = performance.now();
    const nslots = ostride !== 0n ? BigInt.asUintN(64, bsz - off - size) / ostride + 1n : 1n;
    for (i = 0n; i < count; i++) {
      const o = off + (i % nslots) * ostride;
      const r = this.doMap(
        c,
        BigInt.asUintN(64, iova + i * istride),
        size,
        BigInt.asUintN(64, BigInt(this.buf) + o),
        flags,
        32,
      );
      if (r < 0) {
        fails++;
        if (firstErrIdx < 0n) {
          firstErrIdx = i;
          firstErr = r;
        }
        if (stop) {
          i++;
          break;
        }
      } else ok++;
    }
    const ms = performance.now() - t0;
    this.res(firstErrIdx < 0n ? 0 : firstErr);
    this.rec.attempted = Number(i);
    this.rec.ok = Number(ok);
    this.rec.failed = Number(fails);
    this.rec.first_error_index = Number(firstErrIdx);
    this.rec.elapsed_ms = Number(ms.toFixed(3));
    this.rec.us_per_op = i > 0n ? Number(((ms * 1000) / Number(i)).toFixed(2)) : 0;
    if (this.has('vm')) this.vmFields();
    this.end();
  }

  op_unmap_loop(): void {
    const c = this.idx('c', MAXC);
    const iova = this.argu('iova', 0n);
    const size = this.argu('size', 4096n);
    const count = this.argu('count', 1n);
    const istride = this.argu('iova_stride', size);
    this.begin('unmap_loop');
    let ok = 0n;
    let fails = 0n;
    let total = 0n;
    let firstErr = 0;
    let firstErrIdx = -1n;
    const t0 = performance.now();
    for (let i = 0n; i < count; i++) {
      const b = encodeDmaUnmap({ argsz: 24, flags: 0, iova: BigInt.asUintN(64, iova + i * istride), size });
      const r = this.proc.ioctl(this.cfd[c], VFIO_IOMMU_UNMAP_DMA, b);
      if (r < 0) {
        fails++;
        if (firstErrIdx < 0n) {
          firstErrIdx = i;
          firstErr = r;
        }
      } else {
        ok++;
        total = BigInt.asUintN(64, total + decodeDmaUnmap(b).size);
      }
    }
    const ms = performance.now() - t0;
    this.res(firstErrIdx < 0n ? 0 : firstErr);
    this.rec.ok = Number(ok);
    this.rec.failed = Number(fails);
    this.rec.first_error_index = Number(firstErrIdx);
    this.rec.total_unmapped = hex(total);
    this.rec.elapsed_ms = Number(ms.toFixed(3));
    this.end();
  }

  op_buffer(): void {
    const sz = this.argu('size', MIB64);
    this.begin('buffer');
    if (this.buf !== 0) {
      this.proc.munmap(this.buf, this.buflen);
      this.buf = 0;
      this.buflen = 0;
    }
    this.ensureBuf(sz);
    this.res(this.buf !== 0 ? 0 : -12);
    if (this.has('touch') && this.buf !== 0) this.proc.mm.fillUser(this.buf, this.buflen, 0x5a);
    this.end();
  }

  op_setrlimit_memlock(): void {
    const rl = this.proc.getrlimitMemlock();
    const cur = this.has('cur') ? this.argu('cur', 0n) : rl.cur;
    const max = this.has('max') ? this.argu('max', 0n) : rl.max;
    this.begin('setrlimit_memlock');
    this.res(this.proc.setrlimitMemlock(cur, max));
    const now = this.proc.getrlimitMemlock();
    this.rec.cur = hex(now.cur);
    this.rec.max = hex(now.max);
    this.end();
  }

  op_drop_priv(): void {
    const uid = Number(BigInt.asUintN(32, this.argu('uid', 1000n)));
    const gid = Number(BigInt.asUintN(32, this.argu('gid', BigInt(uid))));
    this.begin('drop_priv');
    let r = this.proc.setgroups([]);
    if (r === 0) r = this.proc.setgid(gid);
    if (r === 0) r = this.proc.setuid(uid);
    this.res(r);
    this.rec.uid = this.proc.task.uid | 0;
    this.rec.euid = this.proc.task.euid | 0;
    this.vmFields();
    this.end();
  }

  op_vm_status(): void {
    this.begin('vm_status');
    this.res(0);
    this.vmFields();
    this.end();
  }

  op_sleep(): void {
    this.begin('sleep');
    this.res(0);
    this.end();
  }

  // ---- device and edu DMA ops ----
  private regionInfo(index: number): { size: bigint; flags: number; offset: number } | undefined {
    const ri = encodeRegionInfo({
      argsz: REGION_INFO_SIZE,
      flags: 0,
      index,
      capOffset: 0,
      size: 0n,
      offset: 0n,
    });
    if (this.proc.ioctl(this.dfd, VFIO_DEVICE_GET_REGION_INFO, ri) !== 0) return undefined;
    const d = decodeRegionInfo(ri);
    return { size: d.size, flags: d.flags, offset: Number(d.offset) };
  }

  op_device_open(): void {
    const g = this.idx('g', MAXG);
    const name = this.arg('name') ?? this.options.device ?? this.host.devices[0].name;
    this.begin('device_open');
    const fd = this.proc.ioctl(this.gfd[g], VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${name}\0`));
    this.res(Math.min(fd, 0));
    if (fd < 0) {
      this.end();
      return;
    }
    if (this.dfd >= 0) this.proc.close(this.dfd);
    this.dfd = fd;
    this.devRegions();
    this.end();
  }

  /**
   * dev_raw req= [w0..w15=] [efd_at=N] [show=8] [bad]: an ioctl on the device fd with a 256-byte
   * argument whose first words are w0..w15 (the rest zero), word N a new eventfd (efd_at), or an
   * unmapped pointer (bad); prints the first `show` words after the call (local op).
   */
  op_dev_raw(): void {
    const b = new Uint8Array(256);
    const v = new DataView(b.buffer);
    for (let i = 0; i < 16; i++) if (this.has(`w${i}`)) v.setUint32(i * 4, this.u32(`w${i}`, 0n), true);
    const efdAt = this.argu('efd_at', 0n);
    if (this.has('efd_at') && efdAt < 16n) v.setUint32(Number(efdAt) * 4, this.proc.eventfd() >>> 0, true);
    const req = this.u32('req', 0n);
    const show = Math.min(Number(BigInt.asUintN(32, this.argu('show', 8n))), 64);
    this.begin('dev_raw');
    this.res(this.proc.ioctl(this.dfd, req, this.has('bad') ? 8 : b));
    this.rec.out = Array.from({ length: show }, (_, i) => v.getUint32(i * 4, true));
    this.end();
  }

  /**
   * dev_rw off= [len=4] [value=]: pread (or, with value, pwrite) of len bytes at an offset of the
   * device fd; prints the bytes as "value" (local op). `ret` is the byte count.
   */
  op_dev_rw(): void {
    const value = this.argu('value', 0n);
    const len = Math.min(Number(BigInt.asUintN(32, this.argu('len', 4n))), 8);
    const off = Number(this.argu('off', 0n));
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.begin('dev_rw');
    const r = this.has('value')
      ? this.proc.pwrite(this.dfd, b.subarray(0, len), off)
      : this.proc.pread(this.dfd, b.subarray(0, len), off);
    this.res(r);
    const got = new DataView(b.buffer).getBigUint64(0, true);
    this.rec.value = `0x${(len < 8 ? got & ((1n << BigInt(8 * len)) - 1n) : got).toString(16)}`;
    this.end();
  }

  /**
   * dirty flags=1|2|4 [iova size bitmap_size=8 pgsize=4096]: VFIO_IOMMU_DIRTY_PAGES, the bitmap in a
   * page of its own; prints its first 8 bytes as "bits" (local op).
   */
  op_dirty(): void {
    const c = this.idx('c', MAXC);
    const flags = this.u32('flags', 1n);
    const b = new Uint8Array(48);
    const v = new DataView(b.buffer);
    if (this.dirtyBits === 0) this.dirtyBits = this.proc.mmap(4096);
    this.proc.mm.fillUser(this.dirtyBits, 4096, 0);
    v.setUint32(0, flags === 4 ? 48 : 8, true);
    v.setUint32(4, flags, true);
    v.setBigUint64(8, this.argu('iova', 0n), true);
    v.setBigUint64(16, this.argu('size', 0n), true);
    v.setBigUint64(24, this.argu('pgsize', 4096n), true);
    v.setBigUint64(32, this.argu('bitmap_size', 8n), true);
    v.setBigUint64(40, BigInt(this.dirtyBits), true);
    this.begin('dirty');
    this.res(this.proc.ioctl(this.cfd[c], VFIO_IOMMU_DIRTY_PAGES, b));
    const bits = new Uint8Array(8);
    this.proc.mm.readUser(this.dirtyBits, bits, 0, 8);
    this.rec.bits = hex16(new DataView(bits.buffer).getBigUint64(0, true));
    this.end();
  }

  /** efd_read fd=N: a non-blocking read(2) of eventfd N; prints its count, 0 on EAGAIN (local op). */
  op_efd_read(): void {
    const fd = Number(BigInt.asIntN(32, this.argu('fd', 0n)));
    const b = new Uint8Array(8);
    this.begin('efd_read');
    const r = this.proc.read(fd, b);
    this.res(r);
    this.rec.count = r === 8 ? Number(new DataView(b.buffer).getBigUint64(0, true)) : 0;
    this.end();
  }

  /**
   * fd_rw fd=container|group|device|iommufd|veventq|N [how=pread|pwrite|read|write|lseek] [off=0]
   * [len=8] [value=] [whence=0]: one file syscall on a probe fd; reads print their bytes as "data"
   * (local op).
   */
  op_fd_rw(): void {
    const how = this.arg('how') ?? 'pread';
    const fd = this.namedFd(this.arg('fd'));
    const b = new Uint8Array(64);
    new DataView(b.buffer).setBigUint64(0, this.argu('value', 0n), true);
    const buf = b.subarray(0, Math.min(Number(BigInt.asUintN(32, this.argu('len', 8n))), 64));
    const off = Number(BigInt.asIntN(64, this.argu('off', 0n)));
    this.begin('fd_rw');
    const r =
      how === 'read'
        ? this.proc.read(fd, buf)
        : how === 'write'
          ? this.proc.write(fd, buf)
          : how === 'pwrite'
            ? this.proc.pwrite(fd, buf, off)
            : how === 'lseek'
              ? this.proc.lseek(fd, off, Number(this.argu('whence', 0n)))
              : this.proc.pread(fd, buf, off);
    this.res(r);
    if (how === 'read' || how === 'pread') {
      this.rec.data = Array.from(buf.subarray(0, Math.max(r, 0)), (x) =>
        x.toString(16).padStart(2, '0'),
      ).join('');
    }
    this.end();
  }

  private namedFd(name: string | undefined): number {
    if (name === 'container') return this.cfd[0];
    if (name === 'group') return this.gfd[0];
    if (name === 'device') return this.dfd;
    if (name === 'iommufd') return this.ifd;
    if (name === 'veventq') return this.veventqFd;
    return name === undefined ? -1 : Number(name) || 0;
  }

  /**
   * dev_mmap off= [len=4096] [private=1] [prot=3]: mmap(2) of the device fd at a region offset; on
   * success, a readable mapping's first 32-bit word as "word", then munmap (local op).
   */
  op_dev_mmap(): void {
    const len = Number(this.argu('len', 4096n));
    const prot = Number(this.argu('prot', 3n));
    this.begin('dev_mmap');
    const va = this.proc.mmap(len, {
      fd: this.dfd,
      offset: Number(this.argu('off', 0n)),
      prot,
      private: this.has('private'),
    });
    this.res(Math.min(va, 0));
    if (va >= 0) {
      if (prot & 1) {
        const w = this.proc.readMemory(va, 4) as Uint8Array;
        this.rec.word = `0x${new DataView(w.buffer).getUint32(0, true).toString(16)}`;
      }
      this.proc.munmap(va, len);
    }
    this.end();
  }

  /** fill_fds: opens /dev/null until EMFILE and keeps them; prints how many opened (local op). */
  op_fill_fds(): void {
    let n = 0;
    this.begin('fill_fds');
    let fd = this.proc.open('/dev/null');
    for (; fd >= 0; fd = this.proc.open('/dev/null')) n++;
    this.res(0);
    this.rec.opened = n;
    this.end();
  }

  op_device_close(): void {
    this.begin('device_close');
    this.res(this.proc.close(this.dfd));
    this.dfd = -1;
    this.end();
  }

  private barRd32(reg: number): number {
    const b = new Uint8Array(4);
    if (this.proc.pread(this.dfd, b, this.bar0Off + reg) !== 4) return 0xffff_ffff;
    return new DataView(b.buffer).getUint32(0, true);
  }

  private barWr32(reg: number, v: number): number {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    return this.proc.pwrite(this.dfd, b, this.bar0Off + reg) === 4 ? 0 : -1;
  }

  op_edu_dma(): void {
    const iova = this.argu('iova', 0n);
    const size = this.argu('size', 0x1000n);
    const dir = Number(BigInt.asUintN(32, this.argu('dir', 0n)));
    const eoff = Number(BigInt.asUintN(32, this.argu('edu_off', 0n)));
    this.begin('edu_dma');
    if (this.dfd < 0 || size === 0n || BigInt(eoff) + size > 0x1000n) {
      this.res(-22);
      this.end();
      return;
    }
    const t0 = performance.now();
    const id = this.barRd32(0x0);
    const lo = Number(iova & 0xffff_ffffn);
    let r = 0;
    if (dir === 0) {
      r |= this.barWr32(0x80, lo);
      r |= this.barWr32(0x88, 0x40000 + eoff);
    } else {
      r |= this.barWr32(0x80, 0x40000 + eoff);
      r |= this.barWr32(0x88, lo);
    }
    r |= this.barWr32(0x90, Number(size & 0xffff_ffffn));
    r |= this.barWr32(0x98, 1 | (dir ? 2 : 0));
    let cmd = 1;
    if (r === 0) cmd = this.barRd32(0x98);
    if (r) this.res(-5);
    else this.res(cmd & 1 ? -110 : 0);
    this.rec.edu_id = `0x${id.toString(16)}`;
    this.rec.cmd = `0x${cmd.toString(16)}`;
    this.rec.ms = Number((performance.now() - t0).toFixed(1));
    this.end();
  }

  // ---- buffer ops ----
  op_fill(): void {
    const off = this.argu('off', 0n);
    const size = this.argu('size', 0x1000n);
    const seed = this.argu('seed', 1n);
    this.ensureBuf(MIB64);
    this.begin('fill');
    if (this.buf === 0 || off + size > BigInt(this.buflen)) {
      this.res(-22);
      this.end();
      return;
    }
    this.proc.writeMemory(this.buf + Number(off), fillPattern(Number(seed & 0xffn), Number(size)));
    this.res(0);
    this.end();
  }

  op_zero(): void {
    const off = this.argu('off', 0n);
    const size = this.argu('size', 0x1000n);
    this.ensureBuf(MIB64);
    this.begin('zero');
    if (this.buf === 0 || off + size > BigInt(this.buflen)) {
      this.res(-22);
      this.end();
      return;
    }
    this.proc.mm.fillUser(this.buf + Number(off), Number(size), 0);
    this.res(0);
    this.end();
  }

  op_cmp_buf(): void {
    const a = this.argu('off', 0n);
    const b = this.argu('off2', 0n);
    const size = this.argu('size', 0x1000n);
    this.begin('cmp_buf');
    if (this.buf === 0 || a + size > BigInt(this.buflen) || b + size > BigInt(this.buflen)) {
      this.res(-22);
      this.end();
      return;
    }
    const x = this.proc.readMemory(this.buf + Number(a), Number(size)) as Uint8Array;
    const y = this.proc.readMemory(this.buf + Number(b), Number(size)) as Uint8Array;
    let d = -1;
    for (let i = 0; i < x.length; i++)
      if (x[i] !== y[i]) {
        d = i;
        break;
      }
    this.rec.ret = d < 0 ? 0 : -1;
    this.rec.errno = null;
    this.rec.first_diff = d;
    if (d >= 0) {
      this.rec.a = x[d];
      this.rec.b = y[d];
    }
    this.end();
  }
  // ---- iommufd ops (iommufd_ops.inc, probe built WITH_IOMMUFD) ----

  private u32(k: string, def: bigint): number {
    return Number(BigInt.asUintN(32, this.argu(k, def)));
  }

  /** The scratch page, zeroed over `len` bytes: the probe's stack arrays passed by pointer. */
  private scratchArea(len: number): number {
    if (this.scratch === 0) this.scratch = this.proc.mmap(4096);
    this.proc.mm.fillUser(this.scratch, len, 0);
    return this.scratch;
  }

  op_open_iommufd(): void {
    const path = this.arg('path') ?? '/dev/iommu';
    this.begin('open_iommufd');
    const fd = this.proc.open(path);
    if (fd >= 0) {
      if (this.ifd >= 0) this.proc.close(this.ifd);
      this.ifd = fd;
    }
    this.res(Math.min(fd, 0));
    this.end();
  }

  op_open_cdev(): void {
    let path = this.arg('path');
    if (path === undefined) {
      const name = this.options.device ?? this.host.devices[0].name;
      const dev = this.host.devices.find((d) => d.name === name);
      path = `/dev/vfio/devices/${(dev && this.host.cdevName(dev)) ?? ''}`;
    }
    this.begin('open_cdev');
    const fd = this.proc.open(path);
    if (fd >= 0) {
      if (this.dfd >= 0) this.proc.close(this.dfd);
      this.dfd = fd;
    }
    this.res(Math.min(fd, 0));
    this.rec.path = path;
    this.end();
  }

  /** dev_regions: device info, BAR0 and config region info, bus master on (as device_open). */
  private devRegions(): void {
    const di = new Uint8Array(DEVICE_INFO_SIZE);
    const dv = new DataView(di.buffer);
    dv.setUint32(0, DEVICE_INFO_SIZE, true);
    if (this.proc.ioctl(this.dfd, VFIO_DEVICE_GET_INFO, di) === 0) {
      this.rec.dev_flags = dv.getUint32(4, true);
      this.rec.num_regions = dv.getUint32(8, true);
      this.rec.num_irqs = dv.getUint32(12, true);
    }
    const bar0 = this.regionInfo(VFIO_PCI_BAR0_REGION_INDEX);
    if (bar0) {
      this.bar0Off = bar0.offset;
      this.rec.bar0 = { size: hex(bar0.size), flags: bar0.flags };
    }
    const cfg = this.regionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
    if (cfg) this.cfgOff = cfg.offset;
    if (this.argu('master', 1n) !== 0n) {
      const cmd = new Uint8Array(2);
      if (this.proc.pread(this.dfd, cmd, this.cfgOff + 4) === 2) {
        cmd[0] |= 0x6;
        const w = this.proc.pwrite(this.dfd, cmd, this.cfgOff + 4);
        let v = 0xffff;
        if (this.proc.pread(this.dfd, cmd, this.cfgOff + 4) === 2) v = cmd[0] | (cmd[1] << 8);
        this.rec.pci_command = `0x${v.toString(16)}`;
        this.rec.cmd_write = w < 0 ? -1 : w;
      }
    }
  }

  op_bind_iommufd(): void {
    const b = vfioDeviceBindIommufd.encode({
      argsz: this.u32('argsz', 24n),
      flags: this.u32('flags', 0n),
      iommufd: this.has('fd') ? Number(BigInt.asIntN(32, this.argu('fd', 0n))) : this.ifd,
    });
    this.begin('bind_iommufd');
    const r = this.proc.ioctl(this.dfd, VFIO_DEVICE_BIND_IOMMUFD, b);
    this.res(r);
    if (r === 0) {
      this.devId = vfioDeviceBindIommufd.decode(b).out_devid;
      this.rec.out_devid = this.devId;
      this.devRegions();
    }
    this.end();
  }

  op_get_hw_info(): void {
    const data = this.scratchArea(64);
    const h = iommuHwInfo.encode({
      dev_id: this.u32('dev_id', BigInt(this.devId)),
      data_len: this.u32('data_len', 40n),
      data_uptr: BigInt(data),
    });
    this.begin('get_hw_info');
    const r = this.proc.ioctl(this.ifd, IOMMU_GET_HW_INFO, h);
    this.res(r);
    if (r === 0) {
      const o = iommuHwInfo.decode(h);
      this.rec.out_data_type = o.out_data_type;
      this.rec.data_len = o.data_len;
      this.rec.out_capabilities = hex(o.out_capabilities);
      this.rec.out_max_pasid_log2 = o.out_max_pasid_log2;
      const a = new DataView((this.proc.readMemory(data, 40) as Uint8Array).buffer);
      this.rec.flags = a.getUint32(0, true);
      this.rec.idr = [0, 1, 2, 3, 4, 5].map(
        (i) =>
          `0x${a
            .getUint32(8 + 4 * i, true)
            .toString(16)
            .padStart(8, '0')}`,
      );
      this.rec.iidr = `0x${a.getUint32(32, true).toString(16)}`;
      this.rec.aidr = `0x${a.getUint32(36, true).toString(16)}`;
    }
    this.end();
  }

  op_ioas_alloc(): void {
    const a = this.idx('a', NSLOT);
    const x = iommuIoasAlloc.encode({});
    this.begin('ioas_alloc');
    const r = this.proc.ioctl(this.ifd, IOMMU_IOAS_ALLOC, x);
    this.res(r);
    if (r === 0) {
      this.ioasId[a] = iommuIoasAlloc.decode(x).out_ioas_id;
      this.rec.out_ioas_id = this.ioasId[a];
    }
    this.end();
  }

  op_ioas_map(): void {
    const a = this.idx('a', NSLOT);
    this.ensureBuf(MIB64);
    const va = this.has('vaddr')
      ? this.argu('vaddr', 0n)
      : BigInt.asUintN(64, BigInt(this.buf) + this.argu('off', 0n));
    const m = iommuIoasMap.encode({
      flags: this.u32('flags', 7n),
      ioas_id: this.u32('ioas_id', BigInt(this.ioasId[a])),
      user_va: va,
      length: this.argu('size', 0x1000n),
      iova: this.argu('iova', 0n),
    });
    this.begin('ioas_map');
    this.res(this.proc.ioctl(this.ifd, IOMMU_IOAS_MAP, m));
    this.rec.out_iova = hex(iommuIoasMap.decode(m).iova);
    this.end();
  }

  op_ioas_unmap(): void {
    const a = this.idx('a', NSLOT);
    const u = iommuIoasUnmap.encode({
      ioas_id: this.u32('ioas_id', BigInt(this.ioasId[a])),
      iova: this.argu('iova', 0n),
      length: this.argu('size', 0x1000n),
    });
    this.begin('ioas_unmap');
    this.res(this.proc.ioctl(this.ifd, IOMMU_IOAS_UNMAP, u));
    this.rec.out_length = hex(iommuIoasUnmap.decode(u).length);
    this.end();
  }

  op_hwpt_alloc(): void {
    const h = this.idx('h', NSLOT);
    const p = this.idx('pt', NSLOT);
    const on = this.arg('on') ?? 'ioas';
    const pt = on === 'viommu' ? this.viommuId[p] : on === 'hwpt' ? this.hwptId[p] : this.ioasId[p];
    const ste0 = this.has('ste0')
      ? this.argu('ste0', 0n)
      : (this.argu('v', 1n) & 1n) |
        ((this.argu('cfg', 5n) & 7n) << 1n) |
        ((this.argu('s1fmt', 0n) & 3n) << 4n) |
        (this.argu('cd_ipa', 0n) & 0x000f_ffff_ffff_ffc0n) |
        BigInt.asUintN(64, (this.argu('s1cdmax', 0n) & 31n) << 59n);
    const ste1 = this.argu('ste1', 0xd4n);
    const dt = this.u32('data_type', 0n);
    const data = this.scratchArea(16);
    const sb = new Uint8Array(16);
    const sv = new DataView(sb.buffer);
    sv.setBigUint64(0, ste0, true);
    sv.setBigUint64(8, ste1, true);
    this.proc.writeMemory(data, sb);
    const x = iommuHwptAlloc.encode({
      flags: this.u32('flags', 0n),
      dev_id: this.u32('dev_id', BigInt(this.devId)),
      pt_id: this.u32('pt_id', BigInt(pt)),
      data_type: dt,
      data_len: dt ? this.u32('data_len', 16n) : 0,
      data_uptr: dt ? BigInt(data) : 0n,
    });
    this.begin('hwpt_alloc');
    const r = this.proc.ioctl(this.ifd, IOMMU_HWPT_ALLOC, x);
    this.res(r);
    const o = iommuHwptAlloc.decode(x);
    this.rec.pt_id = o.pt_id;
    if (dt) {
      this.rec.ste0 = hex(ste0);
      this.rec.ste1 = hex(ste1);
    }
    if (r === 0) {
      this.hwptId[h] = o.out_hwpt_id;
      this.rec.out_hwpt_id = o.out_hwpt_id;
    }
    this.end();
  }

  op_viommu_alloc(): void {
    const v = this.idx('v', NSLOT);
    const hs = this.idx('hwpt', NSLOT);
    const x = iommuViommuAlloc.encode({
      flags: this.u32('flags', 0n),
      type: this.u32('type', 1n),
      dev_id: this.u32('dev_id', BigInt(this.devId)),
      hwpt_id: this.u32('hwpt_id', BigInt(this.hwptId[hs])),
    });
    this.begin('viommu_alloc');
    const r = this.proc.ioctl(this.ifd, IOMMU_VIOMMU_ALLOC, x);
    this.res(r);
    if (r === 0) {
      this.viommuId[v] = iommuViommuAlloc.decode(x).out_viommu_id;
      this.rec.out_viommu_id = this.viommuId[v];
    }
    this.end();
  }

  op_vdevice_alloc(): void {
    const v = this.idx('v', NSLOT);
    const d = this.idx('d', NSLOT);
    const x = iommuVdeviceAlloc.encode({
      viommu_id: this.u32('viommu_id', BigInt(this.viommuId[v])),
      dev_id: this.u32('dev_id', BigInt(this.devId)),
      virt_id: this.argu('virt_id', 0n),
    });
    this.begin('vdevice_alloc');
    const r = this.proc.ioctl(this.ifd, IOMMU_VDEVICE_ALLOC, x);
    this.res(r);
    if (r === 0) {
      this.vdevId[d] = iommuVdeviceAlloc.decode(x).out_vdevice_id;
      this.rec.out_vdevice_id = this.vdevId[d];
    }
    this.end();
  }

  op_attach_pt(): void {
    const pt = this.has('pt_id')
      ? this.u32('pt_id', 0n)
      : this.has('ioas')
        ? this.ioasId[this.idx('ioas', NSLOT)]
        : this.hwptId[this.idx('hwpt', NSLOT)];
    const x = vfioDeviceAttachIommufdPt.encode({ pt_id: pt });
    this.begin('attach_pt');
    this.res(this.proc.ioctl(this.dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, x));
    this.rec.pt_id = pt;
    this.rec.out_pt_id = vfioDeviceAttachIommufdPt.decode(x).pt_id;
    this.end();
  }

  op_detach_pt(): void {
    const x = vfioDeviceDetachIommufdPt.encode({});
    this.begin('detach_pt');
    this.res(this.proc.ioctl(this.dfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, x));
    this.end();
  }

  /**
   * raw req= [w0..w7=] [bad=1 | arg=N]: an ioctl on the iommufd with a 256-byte argument whose first
   * words are w0..w7 (the rest zero), an unmapped pointer (bad), or a plain value (arg); prints the
   * first six words after the call (the oracle's own op, for dispatch and compat answers).
   */
  op_raw(): void {
    const b = new Uint8Array(256);
    const v = new DataView(b.buffer);
    for (let i = 0; i < 8; i++) if (this.has(`w${i}`)) v.setUint32(i * 4, this.u32(`w${i}`, 0n), true);
    const req = this.u32('req', 0n);
    const arg = this.has('bad') ? 8 : this.has('arg') ? Number(this.argu('arg', 0n)) : b;
    this.begin('raw');
    this.res(this.proc.ioctl(this.ifd, req, arg));
    this.rec.out = [0, 1, 2, 3, 4, 5].map((i) => v.getUint32(i * 4, true));
    this.end();
  }

  op_destroy(): void {
    const id = this.has('id')
      ? this.u32('id', 0n)
      : this.has('hwpt')
        ? this.hwptId[this.idx('hwpt', NSLOT)]
        : this.has('viommu')
          ? this.viommuId[this.idx('viommu', NSLOT)]
          : this.has('vdevice')
            ? this.vdevId[this.idx('vdevice', NSLOT)]
            : this.has('veventq')
              ? this.veventqId
              : this.ioasId[this.idx('ioas', NSLOT)];
    const x = iommuDestroy.encode({ id });
    this.begin('destroy');
    this.res(this.proc.ioctl(this.ifd, IOMMU_DESTROY, x));
    this.rec.id = id;
    this.end();
  }

  op_invalidate(): void {
    const cmds: [bigint, bigint][] = [];
    let bad = false;
    for (const k of ['cmd', 'cmd2', 'cmd3', 'cmd4']) {
      const name = this.arg(k);
      if (name === undefined) continue;
      const c = buildCmd(name, (key, def) => this.argu(key, def));
      if (c === null) bad = true;
      cmds.push(c ?? [0n, 0n]);
    }
    const id = this.has('hwpt') ? this.hwptId[this.idx('hwpt', NSLOT)] : this.viommuId[this.idx('v', NSLOT)];
    // uint64_t cmds[5][2], zeroed: what follows the commands is zero too.
    const data = this.scratchArea(80);
    const cb = new Uint8Array(80);
    const cv = new DataView(cb.buffer);
    cmds.forEach(([w0, w1], i) => {
      cv.setBigUint64(16 * i, w0, true);
      cv.setBigUint64(16 * i + 8, w1, true);
    });
    this.proc.writeMemory(data, cb);
    const x = iommuHwptInvalidate.encode({
      hwpt_id: this.u32('hwpt_id', BigInt(id)),
      data_uptr: BigInt(data),
      data_type: this.u32('data_type', 1n),
      entry_len: this.u32('entry_len', 16n),
      entry_num: this.u32('entry_num', BigInt(cmds.length)),
    });
    this.begin('invalidate');
    if (bad) {
      this.res(-EINVAL);
      this.rec.probe_error = 'unknown cmd name';
      this.end();
      return;
    }
    this.res(this.proc.ioctl(this.ifd, IOMMU_HWPT_INVALIDATE, x));
    const o = iommuHwptInvalidate.decode(x);
    this.rec.hwpt_id = o.hwpt_id;
    this.rec.out_entry_num = o.entry_num;
    this.rec.cmds = cmds.map(([w0, w1]) => [hex16(w0), hex16(w1)]);
    this.end();
  }

  op_veventq_alloc(): void {
    const v = this.idx('v', NSLOT);
    const x = iommuVeventqAlloc.encode({
      flags: this.u32('flags', 0n),
      viommu_id: this.u32('viommu_id', BigInt(this.viommuId[v])),
      type: this.u32('type', 1n),
      veventq_depth: this.u32('depth', 64n),
    });
    this.begin('veventq_alloc');
    const r = this.proc.ioctl(this.ifd, IOMMU_VEVENTQ_ALLOC, x);
    this.res(r);
    if (r === 0) {
      const o = iommuVeventqAlloc.decode(x);
      if (this.veventqFd >= 0) this.proc.close(this.veventqFd);
      this.veventqId = o.out_veventq_id;
      this.veventqFd = o.out_veventq_fd | 0;
      this.rec.out_veventq_id = o.out_veventq_id;
      this.rec.out_veventq_fd = o.out_veventq_fd | 0;
    }
    this.end();
  }

  /** One read() of the vEVENTQ fd; the model's events are queued when the DMA ends (no poll wait). */
  op_veventq_read(): void {
    let size = Number(
      BigInt.asUintN(64, this.argu('size', 65536n)) > 1n << 20n ? 1n << 20n : this.argu('size', 65536n),
    );
    if (size < 0) size = 0;
    const max = Number(BigInt.asIntN(32, this.argu('max', 8n)));
    const rb = new Uint8Array(size);
    this.begin('veventq_read');
    const n = this.proc.read(this.veventqFd, rb);
    this.res(n);
    Object.assign(this.rec, formatVeventqRead(rb, n, max));
    this.end();
  }

  op_veventq_close(): void {
    this.begin('veventq_close');
    const r = this.proc.close(this.veventqFd);
    this.veventqFd = -1;
    this.res(r);
    this.end();
  }

  op_cd_write(): void {
    this.ensureBuf(MIB64);
    const off = this.argu('off', 0n);
    const ttb = this.has('ttb') ? this.argu('ttb', 0n) : BigInt.asUintN(64, this.s1IpaBase + this.s1Root);
    const g = (k: string, def: bigint, mask: bigint, shift: bigint): bigint =>
      (this.argu(k, def) & mask) << shift;
    const w = [
      BigInt.asUintN(
        64,
        g('t0sz', 16n, 63n, 0n) |
          g('tg0', 0n, 3n, 6n) |
          g('irgn', 1n, 3n, 8n) |
          g('orgn', 1n, 3n, 10n) |
          g('sh', 3n, 3n, 12n) |
          g('epd0', 0n, 1n, 14n) |
          g('epd1', 1n, 1n, 30n) |
          g('v', 1n, 1n, 31n) |
          g('ips', 4n, 7n, 32n) |
          g('affd', 0n, 1n, 35n) |
          g('aa64', 1n, 1n, 41n) |
          g('hd', 0n, 1n, 42n) |
          g('ha', 0n, 1n, 43n) |
          g('s', 0n, 1n, 44n) |
          g('r', 1n, 1n, 45n) |
          g('a', 1n, 1n, 46n) |
          g('aset', 1n, 1n, 47n) |
          g('asid', 1n, 0xffffn, 48n),
      ),
      ttb & 0x000f_ffff_ffff_fff0n,
      0n,
      this.argu('mair', 0xf404ff44n),
    ];
    for (let i = 0; i < 4; i++) if (this.has(`raw${i}`)) w[i] = this.argu(`raw${i}`, 0n);
    this.begin('cd_write');
    if (this.buf === 0 || off + 64n > BigInt(this.buflen) || off & 63n) {
      this.res(-EINVAL);
      this.end();
      return;
    }
    const b = new Uint8Array(64);
    const v = new DataView(b.buffer);
    for (let i = 0; i < 4; i++) v.setBigUint64(8 * i, w[i], true);
    this.proc.writeMemory(this.buf + Number(off), b);
    this.res(0);
    this.rec.cd = w.map(hex16);
    this.rec.cd_ipa = hex(this.s1IpaBase + off);
    this.end();
  }

  op_s1_init(): void {
    this.ensureBuf(MIB64);
    this.s1Root = this.argu('root', 0x101000n);
    this.s1Pool = this.argu('pool', BigInt.asUintN(64, this.s1Root + 0x1000n));
    this.s1PoolEnd = this.argu('pool_end', BigInt.asUintN(64, this.s1Pool + 0x40000n));
    this.s1IpaBase = this.argu('ipa_base', 0n);
    this.begin('s1_init');
    if (
      this.buf === 0 ||
      this.s1PoolEnd > BigInt(this.buflen) ||
      this.s1Root & 0xfffn ||
      this.s1Pool & 0xfffn
    ) {
      this.res(-EINVAL);
      this.end();
      return;
    }
    this.proc.mm.fillUser(this.buf + Number(this.s1Root), 0x1000, 0);
    this.res(0);
    this.rec.root_ipa = hex(this.s1IpaBase + this.s1Root);
    this.end();
  }

  /** A 64-bit word of the buffer (0 where nothing is mapped: the C probe would have crashed there). */
  private bufq(off: bigint): bigint {
    const b = this.proc.readMemory(this.buf + Number(off), 8);
    return typeof b === 'number' ? 0n : new DataView(b.buffer).getBigUint64(0, true);
  }

  private setBufq(off: bigint, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.proc.writeMemory(this.buf + Number(off), b);
  }

  private static s1Idx(va: bigint, lvl: number): number {
    return Number((va >> BigInt(39 - 9 * lvl)) & 511n);
  }

  /** s1_table: the buffer offset of va's table at `lvl`, creating tables from the pool; ~0 if none. */
  private s1Table(va: bigint, lvl: number, create: boolean, trace: ProbeRecord[] | null): bigint {
    let t = this.s1Root;
    for (let l = 0; l < lvl; l++) {
      const at = t + BigInt(8 * ProbeProcess.s1Idx(va, l));
      let d = this.bufq(at);
      if ((d & 3n) !== 3n) {
        if (!create || this.s1Pool + 0x1000n > this.s1PoolEnd) return ALL_ONES;
        this.proc.mm.fillUser(this.buf + Number(this.s1Pool), 0x1000, 0);
        d = BigInt.asUintN(64, this.s1IpaBase + this.s1Pool) | 3n;
        this.setBufq(at, d);
        this.s1Pool += 0x1000n;
      }
      const next = d & 0x0000_ffff_ffff_f000n;
      trace?.push({ level: l, table_off: hex(t), index: ProbeProcess.s1Idx(va, l), desc: hex(d) });
      if (next < this.s1IpaBase || next - this.s1IpaBase + 0x1000n > BigInt(this.buflen)) return ALL_ONES;
      t = next - this.s1IpaBase;
    }
    return t;
  }

  /** s1_leaf: a 4K leaf as io-pgtable writes IOMMU_READ | WRITE | CACHE (ro=1: AP[2]), or desc=. */
  private s1Leaf(ipa: bigint): bigint {
    if (this.has('desc')) return this.argu('desc', 0n);
    return (
      (ipa & 0x0000_ffff_ffff_f000n) |
      3n |
      ((this.argu('attr', 1n) & 7n) << 2n) |
      (1n << 6n) |
      (this.argu('ro', 0n) !== 0n ? 1n << 7n : 0n) |
      (3n << 8n) |
      (this.argu('af', 1n) !== 0n ? 1n << 10n : 0n) |
      (this.argu('ng', 1n) !== 0n ? 1n << 11n : 0n)
    );
  }

  op_s1_map(): void {
    const va = this.argu('va', 0n);
    const ipa = this.argu('ipa', 0n);
    const size = this.argu('size', 0x1000n);
    const trace: ProbeRecord[] = [];
    this.begin('s1_map');
    if (this.buf === 0 || this.s1Root === ALL_ONES) {
      this.res(-EINVAL);
      this.end();
      return;
    }
    let first = 0n;
    let l3 = ALL_ONES;
    for (let x = 0n; x < size; x += 0x1000n) {
      const a = BigInt.asUintN(64, va + x);
      l3 = this.s1Table(a, 3, true, x === 0n ? trace : null);
      if (l3 === ALL_ONES) {
        this.res(-ENOSPC);
        this.rec.failed_at = hex(a);
        this.end();
        return;
      }
      const d = this.s1Leaf(BigInt.asUintN(64, ipa + x));
      this.setBufq(l3 + BigInt(8 * ProbeProcess.s1Idx(a, 3)), d);
      if (x === 0n) first = d;
    }
    this.res(0);
    this.rec.walk = trace;
    this.rec.l3_off = hex(l3);
    this.rec.leaf = hex(first);
    this.end();
  }

  op_s1_set(): void {
    const va = this.argu('va', 0n);
    const lvl = Number(BigInt.asIntN(32, this.argu('level', 3n)));
    this.begin('s1_set');
    if (this.buf === 0 || this.s1Root === ALL_ONES || lvl < 0 || lvl > 3) {
      this.res(-EINVAL);
      this.end();
      return;
    }
    const t = this.s1Table(va, lvl, false, null);
    if (t === ALL_ONES) {
      this.res(-ENOENT);
      this.end();
      return;
    }
    const at = t + BigInt(8 * ProbeProcess.s1Idx(va, lvl));
    const old = this.bufq(at);
    const nw = this.has('invalid')
      ? 0n
      : this.has('desc')
        ? this.argu('desc', 0n)
        : lvl === 3
          ? this.s1Leaf(this.argu('ipa', 0n))
          : (this.argu('ipa', 0n) & 0x0000_ffff_ffff_f000n) | 3n;
    this.setBufq(at, nw);
    this.res(0);
    this.rec.table_off = hex(t);
    this.rec.index = ProbeProcess.s1Idx(va, lvl);
    this.rec.old = hex(old);
    this.rec.new = hex(nw);
    this.end();
  }

  op_dump(): void {
    const off = this.argu('off', 0n);
    const n = this.argu('n', 4n);
    this.begin('dump');
    if (this.buf === 0 || off + 8n * n > BigInt(this.buflen) || n > 64n) {
      this.res(-EINVAL);
      this.end();
      return;
    }
    this.res(0);
    const words: string[] = [];
    for (let i = 0n; i < n; i++) words.push(hex16(this.bufq(off + 8n * i)));
    this.rec.words = words;
    this.end();
  }

  op_write_file(): void {
    const path = this.arg('path') ?? '';
    const value = new TextEncoder().encode(this.arg('value') ?? '');
    this.begin('write_file');
    const fd = this.proc.open(path);
    let r = fd;
    if (fd >= 0) {
      r = this.proc.pwrite(fd, value, 0);
      this.proc.close(fd);
    }
    this.res(Math.min(r, 0));
    this.end();
  }

  op_read_file(): void {
    const path = this.arg('path') ?? '';
    const b = new Uint8Array(511);
    this.begin('read_file');
    const fd = this.proc.open(path);
    let r = fd;
    if (fd >= 0) {
      r = this.proc.pread(fd, b, 0);
      this.proc.close(fd);
    }
    this.res(Math.min(r, 0));
    const text = r > 0 ? new TextDecoder().decode(b.subarray(0, r)) : '';
    this.rec.value = text.split('\n')[0].split('\0')[0];
    this.end();
  }
}
