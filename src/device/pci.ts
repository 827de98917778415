/**
 * A conventional PCI function: a 256-byte type-0 configuration header with per-byte write masks
 * (PCI Local Bus 3.0 §6), memory BARs with their sizes, and a capability list. Devices extend it
 * with their BAR handlers; vfio-pci presents it to user space.
 */

export const PCI_VENDOR_ID = 0x00;
export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
export const PCI_STATUS = 0x06;
export const PCI_STATUS_INTERRUPT = 0x08;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_CAP_ID_MSI = 0x05;

export interface PciBar {
  /** Size in bytes (a power of two); 0 = not implemented. */
  size: number;
  /** MMIO read of `len` (1, 2, 4 or 8) bytes at `offset`. */
  read(offset: number, len: number): number;
  /** MMIO write. */
  write(offset: number, len: number, value: number): void;
}

export abstract class PciFunction {
  readonly config = new Uint8Array(256);
  /** Bits software may change, per config byte. */
  protected readonly wmask = new Uint8Array(256);
  readonly bars: (PciBar | null)[] = [null, null, null, null, null, null];
  /** The interrupt line, wired by whoever owns the function (vfio-pci). */
  onInterrupt: ((status: number) => void) | null = null;
  /**
   * MSI is on (msi_enabled): the host kernel programmed the capability when vfio-pci enabled MSI for
   * the user, whose view of the capability is vfio-pci's virtual copy. The function then signals by MSI,
   * a memory write that needs bus mastering, instead of INTx (y6 seq 193-201).
   */
  msiEnabled = false;

  constructor(vendor: number, device: number, revision: number, classCode: number) {
    const v = new DataView(this.config.buffer);
    v.setUint16(PCI_VENDOR_ID, vendor, true);
    v.setUint16(0x02, device, true);
    this.config[0x08] = revision;
    this.config[0x09] = classCode & 0xff;
    this.config[0x0a] = (classCode >> 8) & 0xff;
    this.config[0x0b] = (classCode >> 16) & 0xff;
    // COMMAND: I/O, memory, bus master, parity, SERR, INTx disable are writable.
    new DataView(this.wmask.buffer).setUint16(PCI_COMMAND, 0x0547, true);
    this.wmask[0x0c] = 0xff; // cache line size
    this.wmask[0x0d] = 0xff; // latency timer
    this.wmask[0x3c] = 0xff; // interrupt line
  }

  /** Declares BAR n as a 32-bit non-prefetchable memory BAR. */
  protected addBar(n: number, bar: PciBar): void {
    this.bars[n] = bar;
    const mask = ~(bar.size - 1) >>> 0;
    new DataView(this.wmask.buffer).setUint32(PCI_BASE_ADDRESS_0 + 4 * n, mask & 0xffff_fff0, true);
  }

  /** Adds a capability at `offset` to the list. */
  protected addCapability(offset: number, bytes: number[]): void {
    const prev = this.config[PCI_CAPABILITY_LIST];
    this.config.set(bytes, offset);
    this.config[offset + 1] = prev;
    this.config[PCI_CAPABILITY_LIST] = offset;
    this.config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
  }

  get command(): number {
    return this.config[PCI_COMMAND] | (this.config[PCI_COMMAND + 1] << 8);
  }

  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }

  readConfig(offset: number, len: number): number {
    let v = 0;
    for (let i = len - 1; i >= 0; i--) v = v * 256 + (this.config[offset + i] ?? 0xff);
    return v;
  }

  writeConfig(offset: number, len: number, value: number): void {
    for (let i = 0; i < len && offset + i < 256; i++) {
      const m = this.wmask[offset + i];
      const byte = Math.floor(value / 256 ** i) & 0xff;
      this.config[offset + i] = (this.config[offset + i] & ~m) | (byte & m);
    }
  }

  /**
   * The function's INTx level as PCI_STATUS shows it (Interrupt Status, set while the function asserts
   * INTx; pci_set_irq). Handlers of shared INTx read it (pci_check_and_mask_intx: uio_pci_generic,
   * vfio-pci's own PCI 2.3 masking) and ignore an interrupt without it. Read through vfio-pci while the
   * edu asserts INTx: 0x18 (y6 seq 185), 0x10 after its acknowledge (seq 190).
   */
  protected setIntxLevel(asserted: boolean): void {
    if (asserted) this.config[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
    else this.config[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
  }

  /** Back to power-on state (a function reset). */
  abstract reset(): void;
}
