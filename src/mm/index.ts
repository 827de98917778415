export * from './mm.ts';
export * from './physmem.ts';
export * from './task.ts';
export * from './file.ts';
export * from './uaccess.ts';
export * from './eventfd.ts';
