/**
 * /dev/null: reads see end of file, writes are swallowed whole, seeks land at 0, ioctls are ENOTTY
 * (no ioctl op).
 * The oracle's local `fill_fds` op opens it until the descriptor table is full.
 */

import type { Current, KernelFile } from '../mm/file.ts';

export class DevNullFile implements KernelFile {
  readonly kind = 'null';

  read(): number {
    return 0;
  }

  write(_current: Current, src: Uint8Array): number {
    return src.byteLength;
  }

  /** null_lseek (drivers/char/mem.c; from source, not recorded): any seek lands at 0. */
  llseek(): number {
    return 0;
  }
}
