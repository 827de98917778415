export { stateDigest } from './digest.ts';
export { Host, HostConfigError, type HostIommuKind, type HostOptions } from './host.ts';
export { Process, type ProcessOptions, type ProcStatus } from './process.ts';
export {
  type MapDmaRequest,
  openContainer,
  openGroup,
  type UnmapDmaRequest,
  VfioContainerHandle,
  VfioGroupHandle,
} from './vfio-api.ts';
