/**
 * The guest's edu driver as both VMMs run it: bus mastering on, and DMA programmed through BAR0 (QEMU's edu: source at 0x80,
 * destination at 0x88, count at 0x90, command at 0x98 with bit 1 = to RAM; the edu's buffer at 0x40000)
 * with pwrite on the device fd's BAR0 region, as a VMM without an mmap of BAR0 does.
 */

import type { Process } from '../host/process.ts';
import { regionOffset, VFIO_PCI_CONFIG_REGION_INDEX } from '../uapi/vfio-device.ts';

const EDU_BUFFER = 0x40000;

export class EduDma {
  private readonly word = new Uint8Array(4);

  constructor(
    private readonly proc: Process,
    private readonly deviceFd: number,
  ) {}

  /** Memory space and bus mastering on, through the virtualised config space (PCI_COMMAND). */
  enableBusMaster(): void {
    const cmd = new Uint8Array(2);
    this.proc.pread(this.deviceFd, cmd, regionOffset(VFIO_PCI_CONFIG_REGION_INDEX) + 4);
    cmd[0] |= 0x6;
    this.proc.pwrite(this.deviceFd, cmd, regionOffset(VFIO_PCI_CONFIG_REGION_INDEX) + 4);
  }

  private bar(off: number, value: number): void {
    new DataView(this.word.buffer).setUint32(0, value >>> 0, true);
    this.proc.pwrite(this.deviceFd, this.word, regionOffset(0) + off);
  }

  /** One DMA at I/O virtual address `iova`: dir 0 reads RAM into the edu's buffer at `eduOff`, dir 1 writes it out. */
  start(iova: number, len: number, dir: 0 | 1, eduOff = 0): void {
    this.bar(0x80, dir === 0 ? iova : EDU_BUFFER + eduOff);
    this.bar(0x88, dir === 0 ? EDU_BUFFER + eduOff : iova);
    this.bar(0x90, len);
    this.bar(0x98, 1 | (dir ? 2 : 0));
  }
}
