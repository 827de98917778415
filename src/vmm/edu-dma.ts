/**
 * The guest's edu driver as both VMMs run it: bus mastering on, and DMA programmed through BAR0 (QEMU's edu: source at 0x80,
 * destination at 0x88, count at 0x90, command at 0x98 with bit 1 = to RAM; the edu's buffer at 0x40000)
 * with pwrite on the device fd's BAR0 region, as a VMM without an mmap of BAR0 does.
 */

import {
  EDU_DMA_CMD,
  EDU_DMA_COUNT,
  EDU_DMA_DST,
  EDU_DMA_RUN,
  EDU_DMA_SRC,
  EDU_DMA_START,
  EDU_DMA_TO_RAM,
} from '../device/edu.ts';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../device/pci.ts';
import type { Process } from '../host/process.ts';
import { regionOffset, VFIO_PCI_CONFIG_REGION_INDEX } from '../uapi/vfio-device.ts';

export class EduDma {
  private readonly word = new Uint8Array(4);

  constructor(
    private readonly proc: Process,
    private readonly deviceFd: number,
  ) {}

  /** Memory space and bus mastering on, through the virtualised config space (PCI_COMMAND). */
  enableBusMaster(): void {
    const cmd = new Uint8Array(2);
    this.proc.pread(this.deviceFd, cmd, regionOffset(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND);
    cmd[0] |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    this.proc.pwrite(this.deviceFd, cmd, regionOffset(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND);
  }

  private bar(off: number, value: number): void {
    new DataView(this.word.buffer).setUint32(0, value >>> 0, true);
    this.proc.pwrite(this.deviceFd, this.word, regionOffset(0) + off);
  }

  /** One DMA at I/O virtual address `iova`: dir 0 reads RAM into the edu's buffer at `eduOff`, dir 1 writes it out. */
  start(iova: number, len: number, dir: 0 | 1, eduOff = 0): void {
    this.bar(EDU_DMA_SRC, dir === 0 ? iova : EDU_DMA_START + eduOff);
    this.bar(EDU_DMA_DST, dir === 0 ? EDU_DMA_START + eduOff : iova);
    this.bar(EDU_DMA_COUNT, len);
    this.bar(EDU_DMA_CMD, EDU_DMA_RUN | (dir ? EDU_DMA_TO_RAM : 0));
  }
}
