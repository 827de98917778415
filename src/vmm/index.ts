export { IommufdHandle, readVeventq, type Vevent, VfioCdevHandle } from './iommufd-api.ts';
export { IommufdVmm, type IommufdVmmOptions } from './iommufd-vmm.ts';
export { Vmm, VmmError, type VmmOptions } from './vmm.ts';
export type { GuestOptions, VmmBase } from './vmm-base.ts';
export { VirtualSmmu, type VirtualSmmuBackend } from './vsmmu.ts';
