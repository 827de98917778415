export * from './errno.ts';
export * from './ioctl.ts';
export * from './iommufd.ts';
export * from './names.ts';
export * from './profile.ts';
export * from './vfio.ts';
export * from './vfio-device.ts';
export * from './vfio-nest-ext.ts';
