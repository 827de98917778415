/**
 * An unmodified QEMU against the model: qemu-system-x86_64 (TCG) with `-device vfio-pci,host=` the
 * model's edu, through libvfio-nest-preload.so and `vfio-nest serve`. QEMU finds the group through
 * sysfs (readlink of .../iommu_group), opens the container and group, maps guest RAM, opens the device
 * and reads its regions, IRQs and config space; its monitor then shows the edu (1234:11e8) on the
 * guest's PCI bus. Skipped where gcc or QEMU is not installed (the oracle's machine has QEMU 7.2).
 */

import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPreload, haveGcc, ROOT, startServe, tempDir } from './native.ts';

const QEMU = 'qemu-system-x86_64';
const haveQemu = (): boolean => spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;

/** Runs QEMU paused (-S) with its monitor on stdin/stdout, sends `commands`, returns what it printed. */
function qemu(
  env: Record<string, string>,
  args: string[],
  commands: string,
): Promise<{ code: number | null; out: string }> {
  const p = spawn(QEMU, args, {
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
  return new Promise((resolve) =>
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    }),
  );
}

describe.skipIf(!haveGcc() || !haveQemu())('an unmodified QEMU through the interposer', () => {
  let preload = '';
  let dir = '';
  beforeAll(() => {
    dir = tempDir();
    preload = buildPreload(dir);
  });

  it('realizes vfio-pci on the model edu: the guest sees 1234:11e8, guest RAM is mapped for DMA', async () => {
    const serve = await startServe(join(dir, 'qemu.sock'), ['--config', '6.12-intel', '--trace']);
    let r: Awaited<ReturnType<typeof qemu>>;
    try {
      r = await qemu(
        {
          LD_PRELOAD: preload,
          VFIO_NEST_SOCKET: serve.socket,
          VFIO_NEST_ROOT: '1',
          VFIO_NEST_MEMLOCK: 'host',
        },
        [
          ...['-machine', 'q35', '-accel', 'tcg', '-m', '128', '-nodefaults', '-display', 'none'],
          ...['-device', 'vfio-pci,host=0000:00:01.0', '-S', '-monitor', 'stdio'],
        ],
        'info pci\nquit\n',
      );
    } finally {
      await serve.stop();
    }
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/PCI device 1234:11e8/);
    // QEMU's own verdicts on what the model answered: BAR0 cannot be mmapped through the interposer
    // (it falls back to pread/pwrite), and the edu has no reset (HOT_RESET_INFO ENODEV, y6 seq 50).
    expect(r.out).toMatch(/Failed to mmap 0000:00:01.0 BAR 0/);
    expect(r.out).toMatch(/Cannot reset device 0000:00:01.0, no available reset mechanism/);
    const log = serve.log;
    expect(log).toContain('readlink("/sys/bus/pci/devices/0000:00:01.0/iommu_group") = 30');
    expect(log).toMatch(/ioctl\(\d+, VFIO_SET_IOMMU\) = 0/);
    expect(log).toMatch(/ioctl\(\d+, VFIO_IOMMU_MAP_DMA\) = 0/);
    expect(log).toMatch(/ioctl\(\d+, VFIO_GROUP_GET_DEVICE_FD\) = \d+/);
    expect(log).toMatch(/pread\(\d+, 256, 0x70000000000\) = 256/); // the whole config space
  }, 90_000);
});
