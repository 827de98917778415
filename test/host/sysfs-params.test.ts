/**
 * Module parameters written and read through /sys/module/vfio_iommu_type1/parameters, as root. The
 * expectations are what real kernels answered (test/oracle/local-answers/{6.1,6.12,6.18}-intel/
 * y1-sysfs-params.jsonl: q35 + intel-iommu, the probe's write_file/read_file built into the x86 probe;
 * test/recordings.test.ts replays that file itself). Each row: the value written, then ret/errno and the value read back after it.
 *   bool allow_unsafe_interrupts: yes/true/on/Yx -> Y; no/false/off/0 -> N; o, 2, x -> EINVAL;
 *     enable/disable -> EINVAL on 6.1 and 6.12, Y/N on 6.18; an empty write -> 0, nothing changes.
 *   uint dma_entry_limit (65535): 010 -> 8, 0x10 -> 16, +5 -> 5, 0X1f -> 31, 4294967295 kept,
 *     -1 / 12abc / 0x / 09 -> EINVAL, 4294967296 -> ERANGE, an empty write -> 0, 0 kept.
 * 3.19 (not in the oracle) parses bools with strtobool: y/Y/1 and n/N/0 only.
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import {
  openContainer,
  openGroup,
  type VfioContainerHandle,
  type VfioGroupHandle,
} from '../../src/host/vfio-api.ts';
import { EINVAL, ENOSPC, ERANGE } from '../../src/uapi/errno.ts';
import type { KernelVersion } from '../../src/uapi/profile.ts';

const DIR = '/sys/module/vfio_iommu_type1/parameters';

function rig(kernel: KernelVersion) {
  const p = new Host({ kernel }).spawn();
  const write = (name: string, value: string): number => {
    const fd = p.open(`${DIR}/${name}`);
    if (fd < 0) return fd;
    const r = p.pwrite(fd, new TextEncoder().encode(value), 0);
    p.close(fd);
    return Math.min(r, 0);
  };
  const read = (name: string): string => {
    const fd = p.open(`${DIR}/${name}`);
    const b = new Uint8Array(64);
    const r = p.pread(fd, b, 0);
    p.close(fd);
    return new TextDecoder().decode(b.subarray(0, Math.max(r, 0))).trim();
  };
  return { write, read };
}

type Row = [value: string, ret: number, after: string];

/**
 * On a fresh `kernel` host, `name` reads `initial`; then each row's value is written (ret/errno) and
 * the parameter read back.
 */
function expectRows(kernel: KernelVersion, name: string, initial: string, rows: readonly Row[]): void {
  const { write, read } = rig(kernel);
  expect([kernel, read(name)]).toEqual([kernel, initial]);
  for (const [value, ret, after] of rows) {
    expect([kernel, value, write(name, value)]).toEqual([kernel, value, ret]);
    expect([kernel, value, read(name)]).toEqual([kernel, value, after]);
  }
}

const ORACLE_KERNELS: readonly KernelVersion[] = ['6.1', '6.12', '6.18'];

describe('bool module parameters parse as kstrtobool (oracle x86 6.1, 6.12, 6.18)', () => {
  const rows: Row[] = [
    ['yes', 0, 'Y'],
    ['no', 0, 'N'],
    ['true', 0, 'Y'],
    ['false', 0, 'N'],
    ['on', 0, 'Y'],
    ['off', 0, 'N'],
    ['o', -EINVAL, 'N'],
    ['2', -EINVAL, 'N'],
    ['x', -EINVAL, 'N'],
    ['Yx', 0, 'Y'],
    ['0', 0, 'N'],
    ['', 0, 'N'],
  ];
  for (const kernel of ORACLE_KERNELS)
    it(`${kernel}: each value written, then read back`, () =>
      expectRows(kernel, 'allow_unsafe_interrupts', 'N', rows));

  it('"enable" and "disable": EINVAL on 6.1 and 6.12, Y and N on 6.18', () => {
    for (const kernel of ORACLE_KERNELS)
      expectRows(kernel, 'allow_unsafe_interrupts', 'N', [
        ['enable', kernel === '6.18' ? 0 : -EINVAL, kernel === '6.18' ? 'Y' : 'N'],
        ['disable', kernel === '6.18' ? 0 : -EINVAL, 'N'],
      ]);
  });

  it('3.19: strtobool reads y/Y/1 and n/N/0 only', () =>
    expectRows('3.19', 'allow_unsafe_interrupts', 'N', [
      ['yes', 0, 'Y'],
      ['off', -EINVAL, 'Y'],
      ['true', -EINVAL, 'Y'],
    ]));
});

describe('uint module parameters parse as kstrtouint base 0 (oracle x86 6.1, 6.12, 6.18)', () => {
  const rows: Row[] = [
    ['010', 0, '8'],
    ['0x10', 0, '16'],
    ['+5', 0, '5'],
    ['-1', -EINVAL, '5'],
    ['4294967295', 0, '4294967295'],
    ['4294967296', -ERANGE, '4294967295'],
    ['12abc', -EINVAL, '4294967295'],
    ['0x', -EINVAL, '4294967295'],
    ['09', -EINVAL, '4294967295'],
    ['0X1f', 0, '31'],
    ['', 0, '31'],
    ['0', 0, '0'],
  ];
  for (const kernel of ORACLE_KERNELS)
    it(`${kernel}: dma_entry_limit, each value written, then read back`, () =>
      expectRows(kernel, 'dma_entry_limit', '65535', rows));

  it('one trailing newline is taken (echo 7 > file), anything else after the digits is EINVAL', () =>
    expectRows('6.12', 'dma_entry_limit', '65535', [
      ['7\n', 0, '7'],
      ['7\n\n', -EINVAL, '7'],
      [' 7', -EINVAL, '7'],
    ]));
});

/**
 * What a parameter change reaches (test/oracle/local-answers/6.12-intel/y2-param-reach.jsonl seq 4-32,
 * the same on 6.1 and 6.18): dma_entry_limit is read when a container's IOMMU is set — a container set up at 65535 maps a
 * fourth mapping after the limit went to 2 (dma_avail 65531), the next container gets 2 (its third
 * MAP_DMA is ENOSPC) — and disable_hugepages leaves GET_INFO's iova_pgsizes (0x40201000) alone.
 */
describe('a parameter reaches the containers set up after it', () => {
  it('dma_entry_limit at SET_IOMMU time; disable_hugepages does not change iova_pgsizes', () => {
    const host = new Host({ kernel: '6.12', iommu: 'intel' });
    const p = host.spawn();
    const setUp = () => {
      const c = openContainer(p) as VfioContainerHandle;
      const g = openGroup(p, host.groups[0].id) as VfioGroupHandle;
      expect([g.setContainer(c), c.setIommu(3)]).toEqual([0, 0]);
      return { c, g };
    };
    const avail = (c: VfioContainerHandle) => {
      const cap = c.getInfo().info?.caps.find((x) => x.id === 3);
      return cap !== undefined && 'avail' in cap ? cap.avail : undefined;
    };
    const buf = p.mmap(0x10000);
    const a = setUp();
    host.setParam('vfio_iommu_type1.dma_entry_limit', '2');
    for (let i = 0; i < 4; i++)
      expect(a.c.mapDma({ vaddr: buf + i * 0x1000, iova: 0x100000 * (i + 1), size: 0x1000 })).toBe(0);
    expect(avail(a.c)).toBe(65531);
    expect([p.close(a.g.fd), p.close(a.c.fd)]).toEqual([0, 0]);
    const b = setUp();
    expect(avail(b.c)).toBe(2);
    expect(b.c.mapDma({ vaddr: buf, iova: 0x100000, size: 0x1000 })).toBe(0);
    expect(b.c.mapDma({ vaddr: buf + 0x1000, iova: 0x200000, size: 0x1000 })).toBe(0);
    expect(b.c.mapDma({ vaddr: buf + 0x2000, iova: 0x300000, size: 0x1000 })).toBe(-ENOSPC);
    expect([p.close(b.g.fd), p.close(b.c.fd)]).toEqual([0, 0]);
    host.setParam('vfio_iommu_type1.disable_hugepages', '1');
    const d = setUp();
    expect(d.c.getInfo().info?.iovaPgsizes).toBe(0x40201000n);
  });
});
