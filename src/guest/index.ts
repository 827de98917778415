export { GuestAllocator, GuestRam } from './ram.ts';
export { GuestSmmuDriver, type GuestStream, type SmmuMmio } from './smmu-driver.ts';
