export { Vmm, VmmError, type VmmOptions } from './vmm.ts';
export { VirtualSmmu, type VirtualSmmuBackend } from './vsmmu.ts';
