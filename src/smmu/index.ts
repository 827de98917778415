/**
 * smmu: the Arm SMMUv3 hardware model, programmed through its registers as a driver would.
 *
 * Stream table, context descriptors, stage 1, stage 2 and nested walks (through `pgtable`), TLB and
 * configuration cache with the architecture's tagging and invalidation, command and event queues in
 * memory. Imports only `pgtable/` and `mm/physmem.ts`.
 */
export * from './cd.ts';
export * from './commands.ts';
export * from './config-cache.ts';
export * from './device.ts';
export * from './events.ts';
export * from './explain.ts';
export * from './fields.ts';
export * from './queues.ts';
export * from './registers.ts';
export * from './ste.ts';
export * from './tlb.ts';
export * from './translate.ts';
