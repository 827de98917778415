/**
 * vfio-nest's binding extension (docs/nesting-uapi.md): its errors, in the documented order, and
 * that a host without the extension answers exactly as a kernel does (ENOTTY, CHECK_EXTENSION 0).
 */

import { describe, expect, it } from 'vitest';
import { Host, type HostOptions } from '../../src/host/host.ts';
import {
  openContainer,
  openGroup,
  type VfioContainerHandle,
  type VfioGroupHandle,
} from '../../src/host/vfio-api.ts';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { EFAULT, EINVAL, ENOTTY } from '../../src/uapi/errno.ts';
import {
  encodeSetPasidTable,
  IOMMU_PASID_CONFIG_BYPASS,
  IOMMU_PASID_CONFIG_TRANSLATE,
  type PasidTableConfig,
  VFIO_IOMMU_GET_FAULTS,
  VFIO_IOMMU_SET_PASID_TABLE,
  VFIO_NEST_BIND_EXTENSION,
} from '../../src/uapi/vfio-nest-ext.ts';

function container(opts: HostOptions, type = 6) {
  const host = new Host({ kernel: '6.1', iommu: 'smmuv3', ...opts });
  const p = host.spawn();
  const c = openContainer(p) as VfioContainerHandle;
  const g = openGroup(p, host.groups[0].id) as VfioGroupHandle;
  g.setContainer(c);
  expect(c.setIommu(type)).toBe(0);
  return { host, p, c };
}

const CFG: PasidTableConfig = {
  version: 1,
  basePtr: 0x4010_0000n,
  pasidBits: 0,
  format: 1,
  config: IOMMU_PASID_CONFIG_TRANSLATE,
  smmuv3: { version: 1, flags: 0, s1fmt: 0, s1dss: 0 },
};

function setPasid(
  p: ReturnType<typeof container>['p'],
  fd: number,
  over: Partial<PasidTableConfig> = {},
  flags = 1,
  argsz = 48,
) {
  return p.ioctl(
    fd,
    VFIO_IOMMU_SET_PASID_TABLE,
    encodeSetPasidTable({ argsz, flags, config: { ...CFG, ...over } }),
  );
}

describe('the stage-1 binding extension', () => {
  // vfio-type1.md §3.2 (an unknown extension is 0) and §1 (with type1 set, an unknown number is ENOTTY).
  it('is invisible without the extension: CHECK_EXTENSION 0, every ioctl ENOTTY (as a real kernel)', () => {
    const { p, c } = container({});
    expect(c.checkExtension(VFIO_NEST_BIND_EXTENSION)).toBe(0);
    expect(setPasid(p, c.fd)).toBe(-ENOTTY);
    expect(p.ioctl(c.fd, VFIO_IOMMU_GET_FAULTS, new Uint8Array(24))).toBe(-ENOTTY);
  });

  it('binds on a type-6 container: the STE becomes Config 7, and UNSET returns it to stage 2 (Config 6)', () => {
    const { host, p, c } = container({ nestBind: true });
    expect(c.checkExtension(VFIO_NEST_BIND_EXTENSION)).toBe(1);
    expect(setPasid(p, c.fd)).toBe(0);
    const sid = host.devices[0].rid;
    const ste = () =>
      host.smmu!.walkTrace(sid, -1, 0x1000).trace.reads.find((r) => r.kind === 'ste')!.words[0] & 0xf;
    expect(ste()).toBe(0xf);
    expect(setPasid(p, c.fd, { config: IOMMU_PASID_CONFIG_BYPASS })).toBe(0);
    expect(ste()).toBe(0xd);
    expect(setPasid(p, c.fd, {}, 2)).toBe(0);
    expect(ste()).toBe(0xd);
    expect((host.iommu as ArmSmmuV3).domainOf(sid)!.s1cfg).toBe(null);
  });

  it.each([
    ['argsz below the struct', {}, 1, 47],
    ['no flag', {}, 0, 48],
    ['SET and UNSET', {}, 3, 48],
    ['version 2', { version: 2 }, 1, 48],
    ['format 2 (not SMMUv3)', { format: 2 }, 1, 48],
    ['config 4', { config: 4 }, 1, 48],
    ['more CDs than SubstreamIDs (QEMU: SSIDSIZE 0)', { pasidBits: 1 }, 1, 48],
    ['a CD table not 64-byte aligned', { basePtr: 0x4010_0008n }, 1, 48],
  ] as [string, Partial<PasidTableConfig>, number, number][])(
    '%s is EINVAL and changes nothing',
    (_n, over, flags, argsz) => {
      const { host, p, c } = container({ nestBind: true });
      expect(setPasid(p, c.fd, over, flags, argsz)).toBe(-EINVAL);
      expect((host.iommu as ArmSmmuV3).domainOf(host.devices[0].rid)!.s1cfg).toBe(null);
    },
  );

  it('a type-3 container and a domain that fell back to stage 1 cannot bind (EINVAL)', () => {
    const t3 = container({ nestBind: true }, 3);
    expect(setPasid(t3.p, t3.c.fd)).toBe(-EINVAL);
    const s1only = container({ nestBind: true, smmu: 's1' });
    expect(setPasid(s1only.p, s1only.c.fd)).toBe(-EINVAL);
  });

  it('a short buffer is EFAULT; GET_FAULTS checks argsz against the room asked for', () => {
    const { p, c } = container({ nestBind: true });
    expect(p.ioctl(c.fd, VFIO_IOMMU_SET_PASID_TABLE, new Uint8Array(8))).toBe(-EFAULT);
    const b = new Uint8Array(24 + 40);
    const v = new DataView(b.buffer);
    v.setUint32(0, 64, true);
    v.setUint32(8, 2, true); // room for 2 records in 64 bytes: no
    expect(p.ioctl(c.fd, VFIO_IOMMU_GET_FAULTS, b)).toBe(-EINVAL);
    v.setUint32(8, 1, true);
    expect(p.ioctl(c.fd, VFIO_IOMMU_GET_FAULTS, b)).toBe(0);
    expect(v.getUint32(8, true)).toBe(0);
  });
});
