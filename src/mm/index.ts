export * from './eventfd.ts';
export * from './file.ts';
export * from './mm.ts';
export * from './physmem.ts';
export * from './task.ts';
export * from './uaccess.ts';
