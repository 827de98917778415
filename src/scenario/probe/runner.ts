/**
 * Runs probe files against a modelled host with the exact meaning of probe/vfioprobe.c: the same
 * slots (4 containers, 4 groups), the same lazily mapped 64 MiB buffer, fd 0 as a non-VFIO file,
 * and the same JSON lines, field for field and in the same order. Each file runs in a fresh
 * process on the same host, as the oracle runs one probe process per file in one boot.
 */

import type { Host } from '../../host/host.ts';
import type { Process } from '../../host/process.ts';
import { errnoName } from '../../uapi/errno.ts';
import {
  decodeDmaUnmap,
  encodeDmaMap,
  encodeDmaUnmap,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
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
}

const MAXC = 4;
const MAXG = 4;
const MIB64 = 64n << 20n;

const hex = (v: bigint | number): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;

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
  private buflen = 0;
  private seq = 0;
  private args: [string, string][] = [];
  private rec: ProbeRecord = {};

  constructor(
    readonly host: Host,
    readonly scenario: string | null,
    readonly options: ProbeOptions,
    proc?: Process,
  ) {
    this.proc = proc ?? host.spawn();
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
    if (spec.iommufd && !this.options.iommufd) {
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
        this.proc.pread(this.dfd, cmd, this.cfgOff + 4);
        this.rec.pci_command = `0x${(cmd[0] | (cmd[1] << 8)).toString(16)}`;
        this.rec.cmd_write = w < 0 ? -1 : w;
      }
    }
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
    const n = Number(size);
    const bytes = new Uint8Array(n);
    const s = Number(seed & 0xffn);
    for (let i = 0; i < n; i++) bytes[i] = (i * 7 + s) & 0xff;
    this.proc.writeMemory(this.buf + Number(off), bytes);
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
}
