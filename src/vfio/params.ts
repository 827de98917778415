/**
 * Module parameters of vfio_iommu_type1 (and vfio), as /sys/module/.../parameters shows them.
 * They are read live: dma_entry_limit is sampled at SET_IOMMU, allow_unsafe_interrupts at attach.
 */
export interface VfioParams {
  /** vfio_iommu_type1.dma_entry_limit (default U16_MAX), mode 0644. */
  dmaEntryLimit: number;
  /** vfio_iommu_type1.allow_unsafe_interrupts: attach without MSI isolation. */
  allowUnsafeInterrupts: boolean;
  /** vfio_iommu_type1.disable_hugepages: pin and map one page at a time. */
  disableHugepages: boolean;
  /** vfio.enable_unsafe_noiommu_mode: the no-IOMMU driver answers CHECK_EXTENSION(8). */
  enableUnsafeNoiommuMode: boolean;
  /**
   * vfio-nest's stage-1 binding extension (docs/nesting-uapi.md). Not a kernel parameter: off, the
   * model is the kernel exactly (the extension's ioctls are ENOTTY).
   */
  nestBind: boolean;
}

export function defaultVfioParams(): VfioParams {
  return {
    dmaEntryLimit: 65535,
    allowUnsafeInterrupts: false,
    disableHugepages: false,
    enableUnsafeNoiommuMode: false,
    nestBind: false,
  };
}
