/**
 * A minimal initramfs for the QEMU guest test: the `newc` cpio format the kernel unpacks (header
 * "070701", thirteen 8-digit hex fields, the name, each padded to 4 bytes), written from memory so
 * the test needs no cpio binary.
 */

export interface InitramfsEntry {
  path: string;
  /** File contents, a symlink target (link), or nothing for a directory. */
  data?: Uint8Array;
  link?: string;
  mode?: number;
}

export function newcArchive(entries: InitramfsEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const pad4 = (n: number): Uint8Array => new Uint8Array((4 - (n % 4)) % 4);
  const push = (ino: number, path: string, mode: number, body: Uint8Array): void => {
    const name = new TextEncoder().encode(`${path}\0`);
    const fields = [ino, mode, 0, 0, 1, 0, body.byteLength, 0, 0, 0, 0, name.byteLength, 0];
    const header = new TextEncoder().encode(
      `070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`,
    );
    parts.push(header, name, pad4(header.byteLength + name.byteLength), body, pad4(body.byteLength));
  };
  entries.forEach((e, i) => {
    if (e.link !== undefined) push(i + 1, e.path, 0o120777, new TextEncoder().encode(e.link));
    else if (e.data !== undefined) push(i + 1, e.path, 0o100000 | (e.mode ?? 0o755), e.data);
    else push(i + 1, e.path, 0o040755, new Uint8Array(0));
  });
  push(0, 'TRAILER!!!', 0, new Uint8Array(0));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
