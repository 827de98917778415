/**
 * QEMU's `edu` educational PCI device (hw/misc/edu.c, docs/specs/edu.rst), as vfio-pci presents it:
 * vendor 0x1234, device 0x11e8, revision 0x10; BAR0 is 1 MiB of registers; a 4 KiB DMA buffer that
 * the DMA engine addresses at 0x40000. DMA goes through the host IOMMU with the device's requester
 * ID; its outcome is the IOMMU's business: the device reports nothing and finishes the command
 * either way (QEMU's behaviour). Registers (32-bit unless noted):
 * 0x00 identification 0x010000ed, 0x04 liveness (reads back the inverse of the last write, 0 before any),
 * 0x08 factorial, 0x20 status,
 * 0x24 interrupt status, 0x60 raise, 0x64 acknowledge, 0x80/0x88/0x90 DMA source/destination/count
 * (64-bit), 0x98 DMA command (bit 0 run, bit 1 edu -> RAM, bit 2 interrupt when done).
 */

import type { Device } from '../iommu/group.ts';
import { type DmaResult, pciDma } from './dma.ts';
import { PCI_CAP_ID_MSI, PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_INTERRUPT_PIN, PciFunction } from './pci.ts';

export const EDU_ID = 0x010000ed;
export const EDU_DMA_START = 0x40000;
export const EDU_DMA_SIZE = 0x1000;
/** BAR0 offsets of the DMA registers (docs/specs/edu.rst), 64-bit. */
export const EDU_DMA_SRC = 0x80;
export const EDU_DMA_DST = 0x88;
export const EDU_DMA_COUNT = 0x90;
export const EDU_DMA_CMD = 0x98;
/** DMA command bits: run, direction edu -> RAM, interrupt when done. */
export const EDU_DMA_RUN = 1;
export const EDU_DMA_TO_RAM = 2;
const DMA_IRQ = 4;
const STATUS_COMPUTING = 1;
const STATUS_IRQFACT = 0x80;
const FACT_IRQ = 0x1;
const DMA_IRQ_BIT = 0x100;

export class EduDevice extends PciFunction {
  readonly buffer = new Uint8Array(EDU_DMA_SIZE);
  /** Devices' DMA address mask: 28 bits by default (the edu's dma_mask property). */
  readonly dmaMask = 2 ** 28 - 1;
  /** What a read of 0x04 returns: the inverse of the last value written (QEMU's addr4), 0 at first. */
  private liveness = 0;
  private fact = 0;
  private status = 0;
  private irqStatus = 0;
  private dmaSrc = 0;
  private dmaDst = 0;
  private dmaCount = 0;
  private dmaCmd = 0;
  /** What the last DMA did (for tests and the CLI): null before any. */
  lastDma: (DmaResult & { dir: 0 | 1; addr: number; len: number }) | null = null;

  /**
   * `firmwareCommand`: the command register as the platform firmware left it. On x86 (SeaBIOS) it is
   * I/O | memory | SERR (0x103; oracle i1-dma-v2 on x86 reads 0x107 after setting bus master and
   * memory); on arm64 `virt` nothing enables the device before vfio-pci does (0x2, then 0x6).
   */
  constructor(
    readonly dev: Device,
    private readonly firmwareCommand = PCI_COMMAND_MEMORY,
  ) {
    super(0x1234, 0x11e8, 0x10, 0x00ff00);
    this.config[PCI_INTERRUPT_PIN] = 1;
    // MSI capability, one vector, 64-bit addresses (msi_init(pdev, 0, 1, true, false)).
    this.addCapability(0x40, [PCI_CAP_ID_MSI, 0, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    this.wmask[0x42] = 0x71; // MSI enable and multiple-message enable
    this.addBar(0, {
      size: 1 << 20,
      read: (off, len) => this.mmioRead(off, len),
      write: (off, len, v) => this.mmioWrite(off, len, v),
    });
    this.reset();
  }

  reset(): void {
    // pci_enable_device by vfio-pci leaves memory decoding on ("enabling device (0000 -> 0002)").
    const cmd = this.firmwareCommand | PCI_COMMAND_MEMORY;
    this.config[PCI_COMMAND] = cmd & 0xff;
    this.config[PCI_COMMAND + 1] = cmd >> 8;
    this.liveness = 0;
    this.fact = 0;
    this.status = 0;
    this.irqStatus = 0;
    this.setIntxLevel(false);
    this.dmaSrc = this.dmaDst = this.dmaCount = this.dmaCmd = 0;
  }

  private mmioRead(off: number, len: number): number {
    // QEMU's memory core refuses accesses below the edu's 4-byte minimum before the edu sees them (a
    // read gives 0: y7 seq 9); edu_mmio_read answers all ones to the other sizes it does not take.
    if (len < 4) return 0;
    if (!accessOk(off, len)) return 0xffff_ffff;
    switch (off) {
      case 0x00:
        return EDU_ID;
      case 0x04:
        return this.liveness;
      case 0x08:
        return this.fact;
      case 0x20:
        return this.status;
      case 0x24:
        return this.irqStatus;
      case EDU_DMA_SRC:
        return this.dmaSrc;
      case EDU_DMA_DST:
        return this.dmaDst;
      case EDU_DMA_COUNT:
        return this.dmaCount;
      case EDU_DMA_CMD:
        return this.dmaCmd;
      default:
        return 0xffff_ffff;
    }
  }

  private mmioWrite(off: number, len: number, value: number): void {
    if (!accessOk(off, len)) return;
    switch (off) {
      case 0x04:
        this.liveness = ~value >>> 0;
        break;
      case 0x08:
        if (this.status & STATUS_COMPUTING) break;
        this.fact = factorial(value >>> 0);
        if (this.status & STATUS_IRQFACT) this.raise(FACT_IRQ);
        break;
      case 0x20:
        this.status = (this.status & STATUS_COMPUTING) | (value & STATUS_IRQFACT);
        break;
      case 0x60:
        this.raise(value >>> 0);
        break;
      case 0x64:
        // edu_lower_irq: INTx goes down once nothing is pending (with MSI on there is none to lower).
        this.irqStatus &= ~value >>> 0;
        if (this.irqStatus === 0 && !this.msiEnabled) this.setIntxLevel(false);
        break;
      case EDU_DMA_SRC:
        if (!(this.dmaCmd & EDU_DMA_RUN)) this.dmaSrc = value;
        break;
      case EDU_DMA_DST:
        if (!(this.dmaCmd & EDU_DMA_RUN)) this.dmaDst = value;
        break;
      case EDU_DMA_COUNT:
        if (!(this.dmaCmd & EDU_DMA_RUN)) this.dmaCount = value;
        break;
      case EDU_DMA_CMD:
        // A write without RUN is ignored; with RUN it replaces the whole command (dma_rw).
        if (!(value & EDU_DMA_RUN) || this.dmaCmd & EDU_DMA_RUN) break;
        this.dmaCmd = value >>> 0;
        this.runDma();
        break;
    }
  }

  /** The DMA engine (edu_dma_timer): runs to completion; the IOMMU's verdict is not looked at. */
  private runDma(): void {
    const toRam = (this.dmaCmd & EDU_DMA_TO_RAM) !== 0;
    const bufAddr = toRam ? this.dmaSrc : this.dmaDst;
    const cnt = this.dmaCount;
    // QEMU's edu_check_range aborts the whole emulator on a buffer range outside [0x40000, 0x41000);
    // the model refuses the command instead and finishes it without touching anything.
    if (bufAddr < EDU_DMA_START || bufAddr + cnt > EDU_DMA_START + EDU_DMA_SIZE) {
      this.dmaCmd &= ~EDU_DMA_RUN;
      return;
    }
    const off = bufAddr - EDU_DMA_START;
    const ram = (toRam ? this.dmaDst : this.dmaSrc) & this.dmaMask;
    const r = pciDma(this.dev, this.busMaster, ram, this.buffer, off, cnt, toRam);
    this.lastDma = { ...r, dir: toRam ? 1 : 0, addr: ram, len: cnt };
    this.dmaCmd &= ~EDU_DMA_RUN;
    if (this.dmaCmd & DMA_IRQ) this.raise(DMA_IRQ_BIT);
  }

  /**
   * edu_raise_irq: with MSI on, an MSI (a write, lost without bus mastering); else INTx up (its status
   * bit) while anything is pending.
   */
  private raise(bits: number): void {
    this.irqStatus |= bits;
    if (this.irqStatus === 0) return;
    if (this.msiEnabled) {
      if (this.busMaster) this.onInterrupt?.(this.irqStatus);
      return;
    }
    this.setIntxLevel(true);
    this.onInterrupt?.(this.irqStatus);
  }
}

/** edu_mmio_read/write take 4-byte accesses, and 8-byte ones from the DMA registers (0x80) up. */
function accessOk(off: number, len: number): boolean {
  return len === 4 || (len === 8 && off >= EDU_DMA_SRC);
}

function factorial(n: number): number {
  let r = 1;
  for (let i = 2; i <= n; i++) r = (r * i) >>> 0;
  return r;
}
