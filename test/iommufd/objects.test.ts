/**
 * iommufd through the typed API on a 6.18 SMMUv3 host built with IOMMUFD: the host option, ioctl
 * dispatch, accounting modes, atomicity of failed calls, automatic HWPTs, invalidation batches. Rules
 * the oracle answered are quoted with their recording (test/oracle/answers/6.18-iommufd); the others
 * cite the 6.18.15 source they come from.
 */

import { describe, expect, it } from 'vitest';
import { Host, HostConfigError } from '../../src/host/host.ts';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { CAP_FULL_SET, CAP_IPC_LOCK } from '../../src/mm/task.ts';
import { encodeCommand } from '../../src/smmu/index.ts';
import {
  E2BIG,
  EBUSY,
  EFAULT,
  EINVAL,
  EIO,
  ENODEV,
  ENOENT,
  ENOMEM,
  ENOTTY,
  EPERM,
  ESPIPE,
} from '../../src/uapi/errno.ts';
import { IO, IOW } from '../../src/uapi/ioctl.ts';
import { IOMMU_IOAS_ALLOC, IOMMU_OPTION, iommuIoasAlloc, iommuOption } from '../../src/uapi/iommufd.ts';
import { VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_SET_IOMMU } from '../../src/uapi/vfio.ts';
import { IommufdHandle, readVeventq, VfioCdevHandle } from '../../src/vmm/iommufd-api.ts';
import { physicalSte } from '../helpers/host-smmu.ts';

const PARAMS = { 'arm_smmu_v3.nest_ignore_coherency': '1' };

function setup(options: { spawn?: Parameters<Host['spawn']>[0] } = {}) {
  const host = new Host({ kernel: '6.18', iommu: 'smmuv3', iommufd: true, params: PARAMS });
  const proc = host.spawn(options.spawn);
  const ifd = IommufdHandle.open(proc) as IommufdHandle;
  const cdev = VfioCdevHandle.open(proc, '/dev/vfio/devices/vfio0') as VfioCdevHandle;
  const { ret, devId } = cdev.bind(ifd);
  expect(ret).toBe(0);
  const buf = proc.mmap(4 << 20);
  return { host, proc, ifd, cdev, devId, buf, drv: host.iommu as ArmSmmuV3 };
}

describe('the host option', () => {
  it('iommufd is 6.18 only, and not on intel-iommu', () => {
    expect(() => new Host({ kernel: '6.12', iommu: 'smmuv3', iommufd: true })).toThrow(HostConfigError);
    expect(() => new Host({ kernel: '6.18', iommu: 'intel', iommufd: true })).toThrow(HostConfigError);
  });

  // kernel-answers/README.md and nested-iommu.md §11: Debian's kernels have iommufd off.
  it('default off: a plain 6.18 SMMUv3 host (Debian, IOMMUFD=n) has no /dev/iommu, no cdev, no test switch', () => {
    const proc = new Host({ kernel: '6.18', iommu: 'smmuv3' }).spawn();
    expect(proc.open('/dev/iommu')).toBe(-ENOENT);
    expect(proc.open('/dev/vfio/devices/vfio0')).toBe(-ENOENT);
    expect(proc.open('/sys/module/arm_smmu_v3/parameters/nest_ignore_coherency')).toBe(-ENOENT);
  });

  it('on: the test switch reads N (a-nested-happy seq 0) and /dev/iommu needs root', () => {
    const host = new Host({ kernel: '6.18', iommu: 'smmuv3', iommufd: true });
    const root = host.spawn();
    const fd = root.open('/sys/module/arm_smmu_v3/parameters/nest_ignore_coherency');
    const b = new Uint8Array(8);
    expect(root.pread(fd, b, 0)).toBe(2);
    expect(new TextDecoder().decode(b.subarray(0, 2))).toBe('N\n');
    const user = host.spawn({ uid: 1000 });
    expect(user.open('/dev/iommu')).toBe(-13); // EACCES: crw-rw---- root root
  });
});

// Oracle x16-iommufd-dispatch (6.18 iommufd): size 8 EINVAL, a non-zero tail E2BIG, EFAULT, numbers
// outside the table ENOTTY (seq 1-7); API version 0, CHECK_EXTENSION(3) 1 and (6) 0, SET_IOMMU(3) ENODEV
// and (6) EINVAL (seq 16-21); RLIMIT_MODE EBUSY once an object exists, EPERM without CAP_SYS_RESOURCE.
describe('ioctl dispatch on /dev/iommu (main.c iommufd_fops_ioctl)', () => {
  const { proc, ifd } = setup();
  it('size below the minimum: EINVAL; a longer struct: zero tail fine, non-zero tail E2BIG', () => {
    expect(proc.ioctl(ifd.fd, IOMMU_IOAS_ALLOC, iommuIoasAlloc.encode({ size: 8 }, 12))).toBe(-EINVAL);
    const long = new Uint8Array(16);
    new DataView(long.buffer).setUint32(0, 16, true);
    expect(proc.ioctl(ifd.fd, IOMMU_IOAS_ALLOC, long)).toBe(0);
    long[15] = 1;
    expect(proc.ioctl(ifd.fd, IOMMU_IOAS_ALLOC, long)).toBe(-E2BIG);
  });

  it('a number in the table with other direction bits: ENOTTY; a bad pointer: EFAULT', () => {
    expect(proc.ioctl(ifd.fd, IOW(0x3b, 0x81, 12), iommuIoasAlloc.encode({}))).toBe(-ENOTTY);
    expect(proc.ioctl(ifd.fd, IOMMU_IOAS_ALLOC, 0)).toBe(-EFAULT);
    expect(proc.ioctl(ifd.fd, IO(0x3b, 0x95), 0)).toBe(-ENOTTY);
  });

  it('the VFIO container ioctls iommufd answers itself (vfio_compat.c)', () => {
    // vfio-type1.md §7: the selftests' iommufd_compat mode needs API version 0 and CHECK_EXTENSION(3) > 0.
    expect(proc.ioctl(ifd.fd, VFIO_GET_API_VERSION)).toBe(0);
    expect(proc.ioctl(ifd.fd, VFIO_CHECK_EXTENSION, 3)).toBe(1);
    expect(proc.ioctl(ifd.fd, VFIO_CHECK_EXTENSION, 6)).toBe(0); // reference §7.0: "iommufd's VFIO-compat returns 0"
    expect(proc.ioctl(ifd.fd, VFIO_SET_IOMMU, 3)).toBe(-ENODEV); // no compatibility IOAS
    expect(proc.ioctl(ifd.fd, VFIO_SET_IOMMU, 6)).toBe(-EINVAL);
  });
});

describe('accounting', () => {
  it('VmPin, not VmLck, and only once a domain exists (x7-iommufd-pin seq 6, 13: 0 then 2048 kB)', () => {
    const { proc, ifd, devId, buf } = setup();
    const ioas = ifd.ioasAlloc().id;
    expect(ifd.ioasMap({ ioasId: ioas, userVa: buf, length: 2 << 20, iova: 0x4000_0000 }).ret).toBe(0);
    expect(proc.status()).toMatchObject({ VmLck_kB: 0, VmPin_kB: 0 });
    const hwpt = ifd.hwptAlloc({ devId, ptId: ioas, flags: 1 });
    expect(hwpt.ret).toBe(0);
    expect(proc.status()).toMatchObject({ VmLck_kB: 0, VmPin_kB: 2048 });
    expect(ifd.destroy(hwpt.id)).toBe(0);
    expect(proc.status()).toMatchObject({ VmLck_kB: 0, VmPin_kB: 0 });
    expect(proc.mm.pinnedPages).toBe(0);
  });

  it('without CAP_IPC_LOCK: the user locked_vm against RLIMIT_MEMLOCK (x8: 16 pages map, the 17th ENOMEM)', () => {
    const { host, proc, ifd, devId, buf } = setup({ spawn: { capEff: CAP_FULL_SET - 2 ** CAP_IPC_LOCK } });
    proc.setrlimitMemlock(0x1_0000n, 0x1_0000n);
    const ioas = ifd.ioasAlloc().id;
    expect(ifd.hwptAlloc({ devId, ptId: ioas, flags: 1 }).ret).toBe(0);
    expect(ifd.ioasMap({ ioasId: ioas, userVa: buf, length: 0x1_0000, iova: 0x4000_0000 }).ret).toBe(0);
    expect(ifd.ioasMap({ ioasId: ioas, userVa: buf + 0x1_0000, length: 0x1000, iova: 0x4001_0000 }).ret).toBe(
      -ENOMEM,
    );
    expect(host.iommufd!.lockedVm(0)).toBe(16);
    expect(proc.status()).toMatchObject({ VmLck_kB: 0, VmPin_kB: 64 });
    proc.exit();
    expect(host.iommufd!.lockedVm(0)).toBe(0);
  });

  it('IOMMU_OPTION RLIMIT_MODE 1 (needs an empty context) charges mm->locked_vm as VFIO does (ioas.c, pages.c)', () => {
    const host = new Host({ kernel: '6.18', iommu: 'smmuv3', iommufd: true });
    const proc = host.spawn({ capEff: CAP_FULL_SET - 2 ** CAP_IPC_LOCK });
    const ifd = IommufdHandle.open(proc) as IommufdHandle;
    const set = (val: bigint) =>
      proc.ioctl(ifd.fd, IOMMU_OPTION, iommuOption.encode({ option_id: 0, op: 0, val64: val }));
    expect(set(2n)).toBe(-EINVAL);
    expect(set(1n)).toBe(0);
    const cdev = VfioCdevHandle.open(proc, '/dev/vfio/devices/vfio0') as VfioCdevHandle;
    const { devId } = cdev.bind(ifd);
    expect(set(0n)).toBe(-EBUSY); // the device object is there now
    const buf = proc.mmap(1 << 20);
    const ioas = ifd.ioasAlloc().id;
    expect(ifd.hwptAlloc({ devId, ptId: ioas }).ret).toBe(0);
    expect(ifd.ioasMap({ ioasId: ioas, userVa: buf, length: 0x4000, iova: 0x10_0000 }).ret).toBe(0);
    expect(proc.status()).toMatchObject({ VmLck_kB: 16, VmPin_kB: 16 });
    // SET needs CAP_SYS_RESOURCE (24).
    const weak = host.spawn({ capEff: CAP_FULL_SET - 2 ** 24 });
    const w = IommufdHandle.open(weak) as IommufdHandle;
    expect(weak.ioctl(w.fd, IOMMU_OPTION, iommuOption.encode({ option_id: 0, op: 0, val64: 1n }))).toBe(
      -EPERM,
    );
  });
});

describe('failed calls change nothing', () => {
  it('a nest parent over an IOAS with an unmapped user VA: EFAULT, nothing pinned, the ID and VMID free again', () => {
    const { proc, ifd, devId, buf, drv } = setup();
    const ioas = ifd.ioasAlloc().id;
    expect(ifd.ioasMap({ ioasId: ioas, userVa: buf, length: 0x1000, iova: 0x2000 }).ret).toBe(0);
    expect(ifd.ioasMap({ ioasId: ioas, userVa: 0x1000, length: 0x1000, iova: 0x1000 }).ret).toBe(0);
    const vmid = drv.vmids.alloc();
    drv.vmids.free(vmid);
    expect(ifd.hwptAlloc({ devId, ptId: ioas, flags: 1 }).ret).toBe(-EFAULT); // x7 seq 10
    expect(proc.mm.pinnedPages).toBe(0);
    expect(proc.status().VmPin_kB).toBe(0);
    expect(drv.vmids.alloc()).toBe(vmid);
    expect(ifd.ioasUnmap({ ioasId: ioas, iova: 0x1000, length: 0x1000 }).ret).toBe(0);
    expect(ifd.hwptAlloc({ devId, ptId: ioas, flags: 1 })).toEqual({ ret: 0, id: ioas + 1 });
  });
});

describe('attachments', () => {
  it('an IOAS gets an automatic stage-1 HWPT (stage 1 preferred), destroyed with its last device (x9 seq 67-70)', () => {
    const { host, ifd, cdev } = setup();
    const ioas = ifd.ioasAlloc().id;
    const a = cdev.attach(ioas);
    expect(a.ret).toBe(0);
    expect(a.ptId).toBe(ioas + 1);
    expect(physicalSte(host).Config).toBe(5);
    expect(ifd.destroy(a.ptId)).toBe(-EBUSY);
    expect(cdev.detach()).toBe(0);
    expect(physicalSte(host).Config).toBe(0);
    expect(ifd.destroy(a.ptId)).toBe(-ENOENT);
  });

  it('closing the cdev detaches and unbinds: the group opens again (x12 seq 11-12)', () => {
    const { host, proc, cdev, ifd } = setup();
    const ioas = ifd.ioasAlloc().id;
    expect(cdev.attach(ioas).ret).toBe(0);
    expect(proc.open(`/dev/vfio/${host.groups[0].id}`)).toBe(-EBUSY);
    expect(cdev.close()).toBe(0);
    expect(physicalSte(host).Config).toBe(0);
    expect(proc.open(`/dev/vfio/${host.groups[0].id}`)).toBeGreaterThan(0);
  });
});

describe('the vIOMMU', () => {
  function nested() {
    const s = setup();
    const ioas = s.ifd.ioasAlloc().id;
    const parent = s.ifd.hwptAlloc({ devId: s.devId, ptId: ioas, flags: 1 }).id;
    const viommu = s.ifd.viommuAlloc({ devId: s.devId, hwptId: parent });
    expect(viommu.ret).toBe(0);
    expect(s.ifd.vdeviceAlloc({ viommuId: viommu.id, devId: s.devId, virtId: 0x42 }).ret).toBe(0);
    return { ...s, viommu: viommu.id };
  }

  // nested-iommu.md §7.4: batches of up to 63 with a sync, entry_num = how many completed, CFGI_STE is
  // EIO; recorded partial answers: x10-iommufd-invalidate seq 25-26 (out_entry_num 1 and 3, EIO).
  it('invalidations go in batches of 63 and a CMD_SYNC; the 70th refused: 69 handled, 6 never issued', () => {
    const { host, ifd, viommu } = nested();
    const nh = encodeCommand(0x10, {});
    const smmu = host.smmu!;
    let before = smmu.commandsConsumed;
    expect(ifd.invalidate(viommu, new Array(70).fill(nh))).toEqual({ ret: 0, done: 70 });
    expect(smmu.commandsConsumed - before).toBe(63 + 1 + 7 + 1);
    before = smmu.commandsConsumed;
    const cmds = new Array(69).fill(nh);
    cmds.push(encodeCommand(0x03, { sid: 0x42, leaf: 1 })); // CFGI_STE: EIO (x10 seq 19)
    expect(ifd.invalidate(viommu, cmds)).toEqual({ ret: -EIO, done: 69 });
    // arm_vsmmu_cache_invalidate issues a batch when it is full: the first 63 and a sync only.
    expect(smmu.commandsConsumed - before).toBe(64);
  });

  // x17-iommufd-veventq-life: IOMMU_DESTROY of an open vEVENTQ is EBUSY, after its close 0 (seq 11-14).
  // pread's ESPIPE on the nonseekable stream: y10-iommufd-fd-syscalls seq 28-29 (local answers).
  it('the vEVENTQ fd is a stream: pread is ESPIPE, read() gets the records', () => {
    const { proc, ifd, viommu } = nested();
    const q = ifd.veventqAlloc({ viommuId: viommu, depth: 4 });
    expect(q.ret).toBe(0);
    expect(proc.pread(q.fd, new Uint8Array(64), 0)).toBe(-ESPIPE);
    expect(readVeventq(proc, q.fd)).toEqual({ ret: 0, events: [] }); // x11 seq 21: nothing queued, 0
    expect(ifd.destroy(q.id)).toBe(-EBUSY);
    expect(proc.close(q.fd)).toBe(0);
    expect(ifd.destroy(q.id)).toBe(0);
  });
});
