/**
 * examples/c/type1-dma.c against `vfio-nest serve`: the device copies bytes into the program's own
 * buffer; the kernel's errno reaches the program where the model refuses (virtio-iommu without
 * allow_unsafe_interrupts: SET_IOMMU is EPERM).
 */

import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildC, buildPreload, haveGcc, runClient, startServe, tempDir } from './native.ts';

if (!haveGcc()) {
  describe('examples/c/type1-dma.c', () => {
    it.skip('skipped: gcc is not installed (the example and the interposer are C programs)', () => {});
  });
} else {
  describe('examples/c/type1-dma.c', () => {
    let dir = '';
    let preload = '';
    let example = '';

    beforeAll(() => {
      dir = tempDir();
      preload = buildPreload(dir);
      example = buildC(dir, 'examples/c/type1-dma.c', 'type1-dma');
    });

    it.concurrent('maps its buffer with type-1 v2 and finds the bytes the edu copied there', async () => {
      const serve = await startServe(join(dir, 'intel.sock'), ['--config', '6.12-intel', '--trace']);
      try {
        const r = await runClient(example, [], { LD_PRELOAD: preload, VFIO_NEST_SOCKET: serve.socket });
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^IOMMU page sizes 0x40201000$/m);
        expect(r.stdout).toMatch(/^edu id 0x010000ed$/m);
        expect(r.stdout).toMatch(/^interrupt: the eventfd counted 1$/m);
        expect(r.stdout).toMatch(/^ok: 2048 bytes copied by the device into our destination buffer/m);
        expect(r.stdout).toMatch(/^VmLck:\s+8 kB$/m); // two pages pinned, charged to the model's locked_vm
        // The trace names each call; the maps asked the program about its memory.
        expect(serve.log).toMatch(/ioctl\(\d+, VFIO_IOMMU_MAP_DMA\) = 0 \(\d+ callbacks?\)/);
        expect(serve.log).toMatch(/ioctl\(\d+, VFIO_GROUP_GET_DEVICE_FD\) = \d+ \(1 callback\)/);
        expect(serve.log).toMatch(/pwrite\(\d+, 4, 0x98\) = 4 \(\d+ callbacks?\)/); // the DMA doorbell
        expect(serve.log).toMatch(/ioctl\(\d+, VFIO_DEVICE_SET_IRQS\) = 0 \(1 callback\)/); // our eventfd
      } finally {
        await serve.stop();
      }
    });

    it.concurrent("gets the kernel's errno where the model refuses", async () => {
      const serve = await startServe(join(dir, 'virtio.sock'), ['--config', '6.12-virtio-no-unsafe-irq']);
      try {
        const r = await runClient(example, [], {
          LD_PRELOAD: preload,
          VFIO_NEST_SOCKET: serve.socket,
          VFIO_DEVICE: '0000:00:02.0',
        });
        expect(r.code).toBe(2);
        expect(r.stderr).toBe('type1-dma: VFIO_SET_IOMMU: Operation not permitted\n');
      } finally {
        await serve.stop();
      }
    });
  });
}
