/**
 * An unmodified QEMU against the model: qemu-system-x86_64 (TCG) with `-device vfio-pci,host=` the
 * model's edu, through libvfio-nest-preload.so and `vfio-nest serve`. QEMU finds the group through
 * sysfs (readlink of .../iommu_group), opens the container and group, maps guest RAM, opens the device
 * and reads its regions, IRQs and config space; its monitor then shows the edu (1234:11e8) on the
 * guest's PCI bus. Then a Linux guest (a kernel image: $VFIO_NEST_GUEST_KERNEL, else the oracle's
 * 6.1 build beside this project) has the edu copy a page of its RAM out and back by DMA. Last, the
 * oracle's own guest (its 6.1 kernel and initramfs, vfio in the guest over QEMU's intel-iommu) runs
 * i1-dma-v2 and x14-device-edges on the edu the model provides, and answers as the recordings made
 * with QEMU's own edu. And QEMU 10 (aarch64) takes the edu through /dev/iommu and the device cdev.
 * Skipped where gcc, QEMU, a static busybox or the oracle's build is missing (its machine has them).
 */

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { comparable, loadRecording } from '../helpers/recordings.ts';
import { newcArchive } from './initramfs.ts';
import { buildPreload, haveGcc, ROOT, startServe, tempDir } from './native.ts';

const QEMU = 'qemu-system-x86_64';
const haveQemu = (): boolean => spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;

interface QemuRun {
  code: number | null;
  /** What QEMU printed (monitor, serial stdio, errors). */
  out: string;
  /** The server's trace of every call it answered. */
  log: string;
}

/**
 * Starts `vfio-nest serve` for `config`, runs `bin` with `args` under the interposer (as root, the
 * modelled kernel's default RLIMIT_MEMLOCK), writes `commands` to its stdin (the monitor when it is
 * on stdio), and stops the server when QEMU has exited.
 */
async function qemuOnModel(
  dir: string,
  preload: string,
  config: string,
  args: string[],
  commands = '',
  bin = QEMU,
): Promise<QemuRun> {
  const serve = await startServe(join(dir, `${config}-${Date.now()}.sock`), ['--config', config, '--trace']);
  try {
    const env = {
      LD_PRELOAD: preload,
      VFIO_NEST_SOCKET: serve.socket,
      VFIO_NEST_ROOT: '1',
      VFIO_NEST_MEMLOCK: 'host',
    };
    const p = spawn(bin, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stdin.end(commands);
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => p.once('close', resolve));
    clearTimeout(timer);
    return { code, out, log: serve.log };
  } finally {
    await serve.stop();
  }
}

/** q35 under TCG, no default devices, no display: the x86 machine every test starts from. */
const Q35 = ['-machine', 'q35', '-accel', 'tcg', '-m', '128', '-nodefaults', '-display', 'none'];

/** The oracle's x86 build (../shared/oracle built beside this project): its 6.1 kernel and initramfs. */
const ORACLE_X86 = process.env.VFIO_NEST_ORACLE_X86 ?? join(ROOT, '../oracle/x86/build');
const GUEST_KERNEL = process.env.VFIO_NEST_GUEST_KERNEL ?? join(ORACLE_X86, 'vmlinux-6.1.0-56-amd64');
const ORACLE_INITRAMFS = join(ORACLE_X86, 'initramfs-6.1.0-56-amd64.cpio');
/** uio and uio_pci_generic of that kernel: the guest takes the edu's INTx through them. */
const UIO_MODULES = ['uio', 'uio_pci_generic'].map((m) =>
  join(ORACLE_X86, `kx-linux-image-6.1.0-56-amd64/lib/modules/6.1.0-56-amd64/kernel/drivers/uio/${m}.ko`),
);
const BUSYBOX = '/bin/busybox';
/** A statically linked busybox: the guest has no libc of its own. */
const staticBusybox = (): boolean =>
  existsSync(BUSYBOX) &&
  spawnSync('sh', ['-c', `file -L ${BUSYBOX} | grep -q 'statically linked'`]).status === 0;

describe.skipIf(!haveGcc() || !haveQemu())('an unmodified QEMU through the interposer', () => {
  let preload = '';
  let dir = '';
  beforeAll(() => {
    dir = tempDir();
    preload = buildPreload(dir);
  });

  it('realizes vfio-pci on the model edu: the guest sees 1234:11e8, guest RAM is mapped for DMA', async () => {
    const r = await qemuOnModel(
      dir,
      preload,
      '6.12-intel',
      [...Q35, '-device', 'vfio-pci,host=0000:00:01.0', '-S', '-monitor', 'stdio'],
      'info pci\nquit\n',
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/PCI device 1234:11e8/);
    // QEMU's own verdicts on what the model answered: BAR0 cannot be mmapped through the interposer
    // (it falls back to pread/pwrite), and the edu has no reset (HOT_RESET_INFO ENODEV, y6 seq 50).
    expect(r.out).toMatch(/Failed to mmap 0000:00:01.0 BAR 0/);
    expect(r.out).toMatch(/Cannot reset device 0000:00:01.0, no available reset mechanism/);
    expect(r.log).toContain('readlink("/sys/bus/pci/devices/0000:00:01.0/iommu_group") = 30');
    expect(r.log).toMatch(/ioctl\(\d+, VFIO_SET_IOMMU\) = 0/);
    expect(r.log).toMatch(/ioctl\(\d+, VFIO_IOMMU_MAP_DMA\) = 0/);
    expect(r.log).toMatch(/ioctl\(\d+, VFIO_GROUP_GET_DEVICE_FD\) = \d+/);
    expect(r.log).toMatch(/pread\(\d+, 256, 0x70000000000\) = 256/); // the whole config space
  }, 90_000);

  it.skipIf(!existsSync(GUEST_KERNEL) || !staticBusybox())(
    'a Linux guest has the edu copy a page of its RAM out and back by DMA, through the model, and takes its INTx',
    async () => {
      const prog = join(dir, 'guest-edu');
      execFileSync('gcc', ['-O2', '-static', '-o', prog, join(ROOT, 'test/server/guest-edu.c')], {
        stdio: 'pipe',
      });
      const init = [
        '#!/bin/sh',
        'export PATH=/bin',
        'mount -t proc proc /proc',
        'mount -t sysfs sys /sys',
        'mount -t devtmpfs dev /dev',
        'insmod /lib/uio.ko && insmod /lib/uio_pci_generic.ko && echo "1234 11e8" > /sys/bus/pci/drivers/uio_pci_generic/new_id',
        '/bin/guest-edu',
        'echo "GUEST: exit $?"',
        'poweroff -f',
      ].join('\n');
      const initrd = join(dir, 'guest.cpio');
      writeFileSync(
        initrd,
        newcArchive([
          ...['bin', 'proc', 'sys', 'dev', 'lib'].map((path) => ({ path })),
          { path: 'bin/busybox', data: readFileSync(BUSYBOX) },
          ...['sh', 'mount', 'poweroff', 'insmod', 'echo'].map((a) => ({
            path: `bin/${a}`,
            link: 'busybox',
          })),
          ...UIO_MODULES.filter(existsSync).map((m) => ({
            path: `lib/${m.split('/').pop()}`,
            data: readFileSync(m),
          })),
          { path: 'bin/guest-edu', data: readFileSync(prog) },
          { path: 'init', data: new TextEncoder().encode(`${init}\n`) },
        ]),
      );
      const r = await qemuOnModel(dir, preload, '6.12-intel', [
        ...Q35,
        ...[
          '-no-reboot',
          '-kernel',
          GUEST_KERNEL,
          '-initrd',
          initrd,
          '-append',
          'console=ttyS0 quiet panic=-1',
        ],
        ...['-serial', 'stdio', '-monitor', 'none', '-device', 'vfio-pci,host=0000:00:01.0'],
      ]);
      expect(r.out).toMatch(/GUEST: edu at 0000:00:01\.0 id 0x010000ed/);
      expect(r.out).toMatch(/GUEST: DMA round trip ok: 4096 bytes/);
      expect(r.out).toMatch(/GUEST: exit 0/);
      // The doorbell writes reached the model, and each DMA read or wrote QEMU's memory (a callback).
      expect(r.log).toMatch(/pwrite\(\d+, 4, 0x98\) = 4 \(\d+ callbacks?\)/);
      // The edu's interrupt, raised in the model, reached the guest's uio_pci_generic as INTx (its
      // handler checks the function's Interrupt Status bit, which the edu sets while it asserts INTx).
      if (UIO_MODULES.every(existsSync)) expect(r.out).toMatch(/GUEST: interrupt 1, edu status 0x1/);
    },
    120_000,
  );

  it.skipIf(!existsSync(GUEST_KERNEL) || !existsSync(ORACLE_INITRAMFS))(
    "the oracle's guest (vfio over QEMU's intel-iommu) answers i1-dma-v2 and x14 on the model's edu as on QEMU's own",
    async () => {
      // The oracle's init binds the edu to vfio-pci in the guest and runs /scenarios/* with its probe,
      // whose JSON lines go to the second serial port. QEMU shadows the guest's IOMMU mappings into
      // the model's container (caching-mode), so every edu DMA of the scenario crosses both IOMMUs.
      const files = [
        ['i1-dma-v2', join(ROOT, 'test/kernel-answers/scenarios/i1-dma-v2.txt')],
        ['x14-device-edges', join(ROOT, 'test/oracle/probes/x14-device-edges.txt')],
      ];
      const scenarios = newcArchive([
        { path: 'scenarios' },
        ...files.map(([name, path], i) => ({
          path: `scenarios/0${i + 1}-${name}.txt`,
          data: readFileSync(path),
          mode: 0o644,
        })),
      ]);
      const initrd = join(dir, 'oracle.cpio');
      writeFileSync(initrd, Buffer.concat([readFileSync(ORACLE_INITRAMFS), scenarios]));
      const out = join(dir, 'oracle.out');
      await qemuOnModel(dir, preload, '6.12-intel', [
        ...[
          '-machine',
          'q35,kernel-irqchip=split',
          '-accel',
          'tcg',
          '-cpu',
          'max',
          '-smp',
          '2',
          '-m',
          '512M',
        ],
        ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
        ...['-device', 'intel-iommu,intremap=on,caching-mode=on', '-device', 'vfio-pci,host=0000:00:01.0'],
        ...['-kernel', GUEST_KERNEL, '-initrd', initrd],
        ...[
          '-append',
          'console=ttyS0 intel_iommu=on iommu=on quiet loglevel=1 panic=-1 mitigations=off nokaslr',
        ],
        ...['-serial', 'null', '-serial', `file:${out}`, '-monitor', 'none'],
      ]);
      const lines = readFileSync(out, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{"seq"'))
        .map((l) => JSON.parse(l.replace(/\r$/, '')) as Record<string, unknown>);
      for (const [i, [name]] of files.entries()) {
        const got = lines.filter((l) => l.scenario === `0${i + 1}-${name}.txt`).map(comparable);
        const rec = loadRecording(join(ROOT, 'test/oracle/answers'), '6.1-intel', `${name}.jsonl`);
        const want = rec.lines[0].map(comparable);
        expect(got.length, name).toBe(want.length);
        for (let k = 0; k < want.length; k++) expect(got[k], `${name} seq ${k}`).toEqual(want[k]);
      }
    },
    180_000,
  );
});

/** QEMU 10 for aarch64 (its iommufd backend): $VFIO_NEST_QEMU_AARCH64, else the oracle's copy beside us. */
const QEMU_AARCH64 =
  process.env.VFIO_NEST_QEMU_AARCH64 ??
  join(ROOT, '../oracle/arm64/build/qemu10/x/usr/bin/qemu-system-aarch64');

describe.skipIf(!haveGcc() || !existsSync(QEMU_AARCH64))(
  'QEMU 10 through /dev/iommu and the device cdev',
  () => {
    it('realizes vfio-pci with the iommufd backend on a 6.18 SMMUv3 host: bind, IOAS, guest RAM mapped', async () => {
      const dir = tempDir();
      const r = await qemuOnModel(
        dir,
        buildPreload(dir),
        '6.18-iommufd',
        [
          ...['-machine', 'virt,gic-version=3', '-accel', 'tcg', '-cpu', 'max', '-m', '128', '-nodefaults'],
          ...[
            '-display',
            'none',
            '-object',
            'iommufd,id=fd0',
            '-device',
            'vfio-pci,host=0000:00:01.0,iommufd=fd0',
          ],
          ...['-S', '-monitor', 'stdio'],
        ],
        'info pci\nquit\n',
        QEMU_AARCH64,
      );
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/PCI device 1234:11e8/);
      // It found the cdev through sysfs (the listing, then "dev" as oracle x19-cdev-sysfs answers) and bound it.
      expect(r.log).toContain('listdir("/sys/bus/pci/devices/0000:00:01.0/vfio-dev") = 1');
      expect(r.log).toContain('open("/dev/vfio/devices/vfio0")');
      expect(r.log).toMatch(/ioctl\(\d+, VFIO_DEVICE_BIND_IOMMUFD\) = 0/);
      expect(r.log).toMatch(/ioctl\(\d+, IOMMU_IOAS_ALLOC\) = 0/);
      expect(r.log).toMatch(/ioctl\(\d+, VFIO_DEVICE_ATTACH_IOMMUFD_PT\) = 0/);
      expect(r.log).toMatch(/ioctl\(\d+, IOMMU_IOAS_MAP\) = 0/);
    }, 90_000);
  },
);
