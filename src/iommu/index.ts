export * from './core.ts';
export * from './domain.ts';
export type { IommuDriver } from './driver.ts';
export * from './group.ts';
export { IntelIommu, type IntelIommuOptions, X86_MSI_WINDOW } from './intel.ts';
export { type Range, RangeTree } from './range-tree.ts';
export * from './types.ts';
export { VirtioIommu } from './virtio.ts';
export { VtdPageTable } from './vtd-pgtable.ts';
