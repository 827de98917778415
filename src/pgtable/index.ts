/**
 * pgtable: VMSAv8-64 (LPAE) translation tables over a memory interface.
 *
 * Driver side (`IoPgtable`, Linux io-pgtable-arm), hardware side (`walk`, one walker for every use),
 * geometry and descriptor formats for 4KB/16KB/64KB granules and both stages. Imports nothing from
 * the rest of the project.
 */
export * from './descriptors.ts';
export * from './geometry.ts';
export * from './io-pgtable.ts';
export * from './table-heap.ts';
export * from './types.ts';
export * from './walk.ts';
export * from './walk-nested.ts';
