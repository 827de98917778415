/**
 * /dev/null: reads see end of file, writes are swallowed whole, ioctls are ENOTTY (no ioctl op).
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
}
