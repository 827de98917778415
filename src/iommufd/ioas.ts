/**
 * IOAS ioctls (drivers/iommu/iommufd/ioas.c, vfio_compat.c; 6.18): ALLOC, IOVA_RANGES, ALLOW_IOVAS,
 * MAP, MAP_FILE, COPY, UNMAP, OPTION, VFIO_IOAS and CHANGE_PROCESS, each checking in the kernel's
 * order. The IOVA is the IPA for a nest parent's stage 2.
 */

import { CAP_SYS_RESOURCE } from '../mm/task.ts';
import { userPointer } from '../mm/uaccess.ts';
import {
  EBADF,
  EBUSY,
  EFAULT,
  EINVAL,
  EMSGSIZE,
  ENODEV,
  ENOENT,
  EOPNOTSUPP,
  EOVERFLOW,
  EPERM,
} from '../uapi/errno.ts';
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IOMMU_OPTION_RLIMIT_MODE,
  IOMMU_VFIO_IOAS_CLEAR,
  IOMMU_VFIO_IOAS_GET,
  IOMMU_VFIO_IOAS_SET,
  iommuIoasAlloc,
  iommuIoasAllowIovas,
  iommuIoasChangeProcess,
  iommuIoasCopy,
  iommuIoasIovaRanges,
  iommuIoasMap,
  iommuIoasMapFile,
  iommuIoasUnmap,
  iommuIovaRange,
  iommuOption,
  iommuVfioIoas,
} from '../uapi/iommufd.ts';
import { ioasProt, ULONG_MAX } from './io-pagetable.ts';
import { respond, respondAndFinalize, type Ucmd } from './main.ts';
import { Ioas } from './objects.ts';

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
const RW = IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/**
 * The checks MAP, MAP_FILE and COPY open with, in their order: unknown flags or a reserved field
 * EOPNOTSUPP, an IOVA or length of ULONG_MAX EOVERFLOW, neither R nor W EINVAL.
 */
function checkMapArgs(flags: number, reserved: number, ...u64: bigint[]): number {
  if (flags & ~MAP_FLAGS || reserved !== 0) return -EOPNOTSUPP;
  if (u64.some((x) => x >= ULONG_MAX)) return -EOVERFLOW;
  return flags & RW ? 0 : -EINVAL;
}

/** IOMMU_IOAS_ALLOC: flags EOPNOTSUPP. */
export function iommufdIoasAlloc(u: Ucmd): number {
  const c = iommuIoasAlloc.decode(u.cmd);
  if (c.flags !== 0) return -EOPNOTSUPP;
  const ioas = u.ctx.alloc(new Ioas());
  if (typeof ioas === 'number') return ioas;
  u.view.setUint32(8, ioas.id, true);
  return respondAndFinalize(u, ioas, iommuIoasAlloc.size);
}

function getIoas(u: Ucmd, id: number): Ioas | undefined {
  return u.ctx.get(id, 'ioas') as Ioas | undefined;
}

/** IOMMU_IOAS_IOVA_RANGES: the holes of the reserved ranges; EMSGSIZE (after writing back) when more than asked. */
export function iommufdIoasIovaRanges(u: Ucmd): number {
  const c = iommuIoasIovaRanges.decode(u.cmd);
  if (c.__reserved !== 0) return -EOPNOTSUPP;
  const ioas = getIoas(u, c.ioas_id);
  if (ioas === undefined) return -ENOENT;
  const max = c.num_iovas;
  const ranges = userPointer(u.current.mm, c.allowed_iovas);
  const holes = ioas.iopt.holes();
  for (let i = 0; i < holes.length && i < max; i++) {
    const e = iommuIovaRange.encode({ start: holes[i].start, last: holes[i].last });
    if (ranges.copyTo(e, i * 16) < 0) return -EFAULT;
  }
  u.view.setUint32(8, holes.length, true);
  u.view.setBigUint64(24, ioas.iopt.iovaAlignment, true);
  const r = respond(u, iommuIoasIovaRanges.size);
  if (r < 0) return r;
  return holes.length > max ? -EMSGSIZE : 0;
}

/** IOMMU_IOAS_ALLOW_IOVAS: ranges must be start < last and disjoint (EINVAL); none may meet a reserved range. */
export function iommufdIoasAllowIovas(u: Ucmd): number {
  const c = iommuIoasAllowIovas.decode(u.cmd);
  if (c.__reserved !== 0) return -EOPNOTSUPP;
  const ioas = getIoas(u, c.ioas_id);
  if (ioas === undefined) return -ENOENT;
  const ptr = userPointer(u.current.mm, c.allowed_iovas);
  const ranges: { start: bigint; last: bigint }[] = [];
  for (let i = 0; i < c.num_iovas; i++) {
    const b = ptr.copyFrom(16, i * 16);
    if (typeof b === 'number') return -EFAULT;
    const r = iommuIovaRange.decode(b);
    if (r.start >= r.last) return -EINVAL;
    if (ranges.some((x) => x.start <= r.last && x.last >= r.start)) return -EINVAL;
    ranges.push(r);
  }
  return ioas.iopt.setAllowed(ranges);
}

/**
 * IOMMU_IOAS_MAP: unknown flags or reserved EOPNOTSUPP; IOVA or length of ULONG_MAX EOVERFLOW; neither
 * R nor W EINVAL; the IOAS (ENOENT); then iopt_map_user_pages (oracle x7-iommufd-pin seq 37-42).
 */
export function iommufdIoasMap(u: Ucmd): number {
  const c = iommuIoasMap.decode(u.cmd);
  const bad = checkMapArgs(c.flags, c.__reserved, c.iova, c.length);
  if (bad < 0) return bad;
  const ioas = getIoas(u, c.ioas_id);
  if (ioas === undefined) return -ENOENT;
  const iova = ioas.iopt.mapUserPages(
    u.current,
    u.ctx.core,
    u.ctx.accountMode,
    c.iova,
    c.user_va,
    c.length,
    ioasProt(c.flags),
    (c.flags & IOMMU_IOAS_MAP_FIXED_IOVA) !== 0,
  );
  if (typeof iova === 'number') return iova;
  u.view.setBigUint64(32, iova, true);
  return respond(u, iommuIoasMap.size);
}

/**
 * IOMMU_IOAS_MAP_FILE: the checks of IOAS_MAP, then the fd (EBADF). Files the model has are no memfd
 * or hugetlbfs: mapping them is not modelled (EOPNOTSUPP; docs/iommufd.md).
 */
export function iommufdIoasMapFile(u: Ucmd): number {
  const c = iommuIoasMapFile.decode(u.cmd);
  const bad = checkMapArgs(c.flags, 0, c.iova, c.length);
  if (bad < 0) return bad;
  if (getIoas(u, c.ioas_id) === undefined) return -ENOENT;
  if (c.fd < 0 || u.current.fdget(c.fd) === undefined) return -EBADF;
  return -EOPNOTSUPP;
}

/**
 * IOMMU_IOAS_COPY: the checks up to the source IOAS; sharing pages between IOASes is not modelled
 * (EOPNOTSUPP; docs/iommufd.md).
 */
export function iommufdIoasCopy(u: Ucmd): number {
  const c = iommuIoasCopy.decode(u.cmd);
  const bad = checkMapArgs(c.flags, 0, c.length, c.src_iova, c.dst_iova);
  if (bad < 0) return bad;
  if (getIoas(u, c.src_ioas_id) === undefined) return -ENOENT;
  return -EOPNOTSUPP;
}

/**
 * IOMMU_IOAS_UNMAP: iova 0 and length ~0 unmap everything; otherwise whole mappings inside the range
 * (a mapping sticking out ENOENT, after those before it went; nothing there ENOENT). out_length: bytes.
 */
export function iommufdIoasUnmap(u: Ucmd): number {
  const c = iommuIoasUnmap.decode(u.cmd);
  const ioas = getIoas(u, c.ioas_id);
  if (ioas === undefined) return -ENOENT;
  let res: { ret: number; unmapped: bigint };
  if (c.iova === 0n && c.length === ULONG_MAX) {
    res = ioas.iopt.unmapAll();
    if (res.ret < 0) return res.ret;
  } else {
    if (c.iova >= ULONG_MAX || c.length >= ULONG_MAX) return -EOVERFLOW;
    res = ioas.iopt.unmapIova(c.iova, c.length);
    if (res.ret < 0) return res.ret;
    if (res.unmapped === 0n) return -ENOENT;
  }
  u.view.setBigUint64(16, res.unmapped, true);
  return respond(u, iommuIoasUnmap.size);
}

/**
 * IOMMU_OPTION: RLIMIT_MODE (object 0; SET needs CAP_SYS_RESOURCE and an empty context: 0 = the user's
 * locked_vm, 1 = the mm's) and HUGE_PAGES (per IOAS).
 */
export function iommufdOption(u: Ucmd): number {
  const c = iommuOption.decode(u.cmd);
  if (c.__reserved !== 0) return -EOPNOTSUPP;
  let rc: number;
  switch (c.option_id) {
    case IOMMU_OPTION_RLIMIT_MODE:
      rc = rlimitMode(u, c.op, c.object_id, c.val64);
      break;
    case IOMMU_OPTION_HUGE_PAGES: {
      const ioas = getIoas(u, c.object_id);
      if (ioas === undefined) return -ENOENT;
      if (c.op === IOMMU_OPTION_OP_GET) {
        u.view.setBigUint64(16, ioas.iopt.disableLargePages ? 0n : 1n, true);
        rc = 0;
      } else if (c.op === IOMMU_OPTION_OP_SET) {
        if (c.val64 === 0n) rc = ioas.iopt.disableLarge();
        else if (c.val64 === 1n) {
          ioas.iopt.enableLarge();
          rc = 0;
        } else rc = -EINVAL;
      } else rc = -EOPNOTSUPP;
      break;
    }
    default:
      return -EOPNOTSUPP;
  }
  if (rc < 0) return rc;
  // Only val64 is copied back.
  return u.arg.copyTo(u.cmd.subarray(16, 24), 16) < 0 ? -EFAULT : 0;
}

function rlimitMode(u: Ucmd, op: number, objectId: number, val: bigint): number {
  if (objectId !== 0) return -EOPNOTSUPP;
  if (op === IOMMU_OPTION_OP_GET) {
    u.view.setBigUint64(16, u.ctx.accountMode === 'mm' ? 1n : 0n, true);
    return 0;
  }
  if (op !== IOMMU_OPTION_OP_SET) return -EOPNOTSUPP;
  if (!u.current.task.capable(CAP_SYS_RESOURCE)) return -EPERM;
  if (u.ctx.entries.size > 0) return -EBUSY;
  if (val === 0n) u.ctx.accountMode = 'user';
  else if (val === 1n) u.ctx.accountMode = 'mm';
  else return -EINVAL;
  return 0;
}

/** IOMMU_VFIO_IOAS: GET (ENODEV without one), SET (an IOAS, ENOENT), CLEAR the compatibility IOAS. */
export function iommufdVfioIoas(u: Ucmd): number {
  const c = iommuVfioIoas.decode(u.cmd);
  if (c.__reserved !== 0) return -EOPNOTSUPP;
  const ctx = u.ctx;
  switch (c.op) {
    case IOMMU_VFIO_IOAS_GET: {
      const ioas = ctx.compatIoas();
      if (ioas === null) return -ENODEV;
      u.view.setUint32(4, ioas.id, true);
      return respond(u, iommuVfioIoas.size);
    }
    case IOMMU_VFIO_IOAS_SET: {
      const ioas = getIoas(u, c.ioas_id);
      if (ioas === undefined) return -ENOENT;
      ctx.vfioIoas = ioas;
      return 0;
    }
    case IOMMU_VFIO_IOAS_CLEAR:
      ctx.vfioIoas = null;
      return 0;
    default:
      return -EOPNOTSUPP;
  }
}

/**
 * IOMMU_IOAS_CHANGE_PROCESS: only file-backed mappings can move to another process; a user-memory
 * mapping in any IOAS is EINVAL (with none, nothing to move).
 */
export function iommufdIoasChangeProcess(u: Ucmd): number {
  const c = iommuIoasChangeProcess.decode(u.cmd);
  if (c.__reserved !== 0) return -EOPNOTSUPP;
  for (const o of u.ctx.entries.values())
    if (typeof o !== 'string' && o.type === 'ioas' && (o as Ioas).iopt.areas.length > 0) return -EINVAL;
  return 0;
}
