export { VfioContainer } from './container.ts';
export { VfioGroup, VfioGroupFile } from './group.ts';
export { defaultVfioParams, type VfioParams } from './params.ts';
export { Type1Iommu } from './type1.ts';
export type { VfioDma, VfioDomain } from './type1-state.ts';
export { type DeviceFileFactory, VfioCore } from './vfio.ts';
