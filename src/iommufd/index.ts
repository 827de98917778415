/**
 * iommufd: /dev/iommu and its objects (IOAS, HWPT paging / nest parent / nested, vIOMMU, vDEVICE,
 * vEVENTQ, fault queue), the ioctls on them, and what the VFIO device cdev calls to bind a device and
 * attach it to a page table. Beside vfio/, sharing mm/'s pinning; docs/iommufd.md.
 */

export { IommufdCore, type IommufdParams } from './core.ts';
export { IommufdCtx } from './ctx.ts';
export { IommufdFile } from './main.ts';
export {
  HwptNested,
  HwptPaging,
  Ioas,
  IommufdDevice,
  Vdevice,
  Veventq,
  VeventqFile,
  Viommu,
} from './objects.ts';
