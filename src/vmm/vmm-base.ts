/**
 * What the two VMMs share (type 6 + the binding extension in vmm.ts, iommufd in iommufd-vmm.ts): the
 * VMM process (RLIMIT_MEMLOCK unlimited), guest RAM, the device's virtual StreamID, the vSTE a guest
 * CFGI_STE concerns, and the edu driven as the guest's driver would, after which what the host queued
 * for the guest (type 6: GET_FAULTS; iommufd: the vEVENTQ) is handed to it.
 */

import type { GuestRam } from '../guest/ram.ts';
import type { Host } from '../host/host.ts';
import type { Process } from '../host/process.ts';
import { RLIM_INFINITY } from '../mm/task.ts';
import { REG } from '../smmu/index.ts';
import { errnoName } from '../uapi/errno.ts';
import type { EduDma } from './edu-dma.ts';
import type { VirtualSmmu, VirtualSmmuBackend } from './vsmmu.ts';

/** A step of bring-up that failed: which call, and the errno the kernel returned. */
export class VmmError extends Error {
  constructor(
    readonly step: string,
    readonly errno: number,
  ) {
    super(`${step}: ${errnoName(errno)}`);
    this.name = 'VmmError';
  }
}

/** A bring-up call's result, or a VmmError for `step` when it returned -errno. */
export function check(step: string, r: number): number {
  if (r < 0) throw new VmmError(step, -r);
  return r;
}

export interface GuestOptions {
  /** Guest RAM size (default 64 MiB) and where it starts in guest-physical space (default 1 GiB, arm64 virt). */
  ramSize?: number;
  ipaBase?: number;
  /** Back guest RAM with 2 MiB (21) or 1 GiB (30) huge pages. */
  hugeLg2?: 21 | 30;
  /** The StreamID the guest sees for the device (default 0x10: guest 00:02.0). */
  vsid?: number;
}

export abstract class VmmBase implements VirtualSmmuBackend {
  readonly proc: Process;
  readonly vsid: number;
  abstract readonly ram: GuestRam;
  abstract readonly vsmmu: VirtualSmmu;
  protected abstract readonly edu: EduDma;
  /** The last error a call made for the guest returned (0 when it worked). */
  lastError = 0;

  constructor(
    readonly host: Host,
    options: GuestOptions,
  ) {
    this.vsid = options.vsid ?? 0x10;
    this.proc = host.spawn({ memlock: { cur: RLIM_INFINITY, max: RLIM_INFINITY } });
  }

  abstract steChanged(vsid: number): void;
  abstract invalidateTlb(inv: {
    asid: number | null;
    addr: number | null;
    pages: number;
    leaf: boolean;
  }): void;
  abstract invalidateCd(vsid: number, ssid: number | null): void;
  /** Hands the guest what the host queued for it (faults or events); returns how many reached it. */
  protected abstract forwardToGuest(): number;

  /** mmap of `size` bytes of guest RAM (huge pages when asked), to be mapped for DMA at its IPA. */
  protected mmapRam(size: number, hugeLg2: 21 | 30 | undefined): number {
    return check('mmap guest RAM', this.proc.mmap(size, hugeLg2 ? { hugeLg2 } : {}));
  }

  /**
   * The IPA of our device's vSTE in the guest's (linear) stream table when a CFGI_STE(_RANGE) of `vsid`
   * (-1: all) may cover it, else null. It may lie outside guest RAM.
   */
  protected vsteAt(vsid: number): number | null {
    if (vsid !== -1 && vsid !== this.vsid && !(vsid <= this.vsid && this.vsid < vsid + 256)) return null;
    const base = this.vsmmu.readReg32(REG.STRTAB_BASE) + this.vsmmu.readReg32(REG.STRTAB_BASE + 4) * 2 ** 32;
    return base - (base % 64) + this.vsid * 64;
  }

  // ---- the device, as the guest's driver programs it ----

  /**
   * One edu DMA at guest I/O virtual address `iova`: dir 0 reads RAM into the edu's buffer at
   * `eduOff`, dir 1 writes the buffer out. Then the faults meant for the guest go to it.
   */
  eduDma(iova: number, len: number, dir: 0 | 1, eduOff = 0): void {
    this.edu.start(iova, len, dir, eduOff);
    this.forwardToGuest();
  }

  /** Copies `len` bytes from guest IOVA `src` to `dst` through the edu, 4 KiB at a time. */
  copy(src: number, dst: number, len: number): void {
    for (let off = 0; off < len; off += 0x1000) {
      const n = Math.min(0x1000, len - off);
      this.eduDma(src + off, n, 0);
      this.eduDma(dst + off, n, 1);
    }
  }

  /** The VMM process exits: every fd closed (the device released, its context gone), guest RAM unpinned. */
  shutdown(): void {
    this.proc.exit();
  }
}
