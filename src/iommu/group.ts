/**
 * struct device (as the IOMMU core sees it) and struct iommu_group: which IOMMU a device sits
 * behind, its requester/stream ID, the group it shares isolation with, the group's current
 * domain and who owns its DMA.
 */

import type { IommuDomain } from './domain.ts';
import type { IommuDriver } from './driver.ts';

/** Translates one access of a device; implemented by the IOMMU hardware model. */
export interface IommuHw {
  /**
   * Resolves `iova` for `dev` (read or write); returns the physical address or -1 after the
   * hardware recorded the fault its way (event queue, fault registers, or nothing).
   * `len` is the access size, for hardware that records it.
   */
  translate(dev: Device, iova: number, write: boolean, len: number): number;
  /** Bytes from `iova` to the end of the page that translated last (the next translation point). */
  readonly lastPageRemaining: number;
  /** Host physical memory reachable by DMA. */
  readonly mem: {
    readBytes(pa: number, dst: Uint8Array, off: number, len: number): void;
    writeBytes(pa: number, src: Uint8Array, off: number, len: number): void;
  };
}

export class Device {
  /** The kernel driver bound to it ('vfio-pci' for an assigned device). */
  boundDriver: string | null;
  group!: IommuGroup;

  constructor(
    /** PCI name, e.g. '0000:00:01.0'. */
    readonly name: string,
    /** Requester ID / StreamID (bus << 8 | devfn). */
    readonly rid: number,
    readonly iommu: IommuDriver,
    readonly hw: IommuHw,
    boundDriver: string | null = 'vfio-pci',
  ) {
    this.boundDriver = boundDriver;
  }
}

export class IommuGroup {
  readonly devices: Device[] = [];
  /** The domain the group is attached to; null means the kernel's default domain. */
  domain: IommuDomain | null = null;
  /** Who claimed DMA ownership (5.19+ iommu_group_claim_dma_owner), and how many times. */
  owner: unknown = null;
  ownerCount = 0;

  constructor(readonly id: number) {}

  add(dev: Device): void {
    dev.group = this;
    this.devices.push(dev);
  }
}
