/**
 * ioctl request numbers, computed as asm-generic/ioctl.h computes them (x86-64 and arm64):
 * nr in bits 7:0, type in 15:8, size in 29:16, direction in 31:30 (NONE 0, WRITE 1, READ 2).
 */

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

function IOC(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}

export function IO(type: number, nr: number): number {
  return IOC(IOC_NONE, type, nr, 0);
}

export function IOR(type: number, nr: number, size: number): number {
  return IOC(IOC_READ, type, nr, size);
}

export function IOW(type: number, nr: number, size: number): number {
  return IOC(IOC_WRITE, type, nr, size);
}

export function IOWR(type: number, nr: number, size: number): number {
  return IOC(IOC_READ | IOC_WRITE, type, nr, size);
}
