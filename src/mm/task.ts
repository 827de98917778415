/**
 * A task's credentials and resource limits: what capable() and RLIMIT_MEMLOCK checks read.
 */

import { EINVAL, EPERM } from '../uapi/errno.ts';

export const CAP_DAC_OVERRIDE = 1;
export const CAP_SETGID = 6;
export const CAP_SETUID = 7;
export const CAP_IPC_LOCK = 14;
export const CAP_SYS_RAWIO = 17;
export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;
/** CAP_CHECKPOINT_RESTORE: the last capability in 5.9..6.18, so root's CapEff is 000001ffffffffff. */
export const CAP_LAST_CAP = 40;
export const CAP_FULL_SET = 2 ** (CAP_LAST_CAP + 1) - 1;
/** 2^-cap for every capability number (0..63). */
const CAP_BIT_INV: readonly number[] = Array.from({ length: 64 }, (_, k) => 2 ** -k);

/** RLIM_INFINITY: ~0 as an unsigned 64-bit value. */
export const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

export interface Rlimit {
  cur: bigint;
  max: bigint;
}

export interface Credentials {
  uid: number;
  gid: number;
  /** Effective capability set as a bit mask (bits 0..40). */
  capEff: number;
}

export class Task {
  uid: number;
  euid: number;
  gid: number;
  groups: number[];
  capEff: number;
  memlock: Rlimit;

  constructor(creds: Partial<Credentials> = {}, memlock: Rlimit = { cur: 8n << 20n, max: 8n << 20n }) {
    this.uid = creds.uid ?? 0;
    this.euid = this.uid;
    this.gid = creds.gid ?? this.uid;
    this.groups = [];
    this.capEff = creds.capEff ?? (this.uid === 0 ? CAP_FULL_SET : 0);
    this.memlock = { ...memlock };
  }

  capable(cap: number): boolean {
    // Bit `cap` of a mask below 2^53: `& 1` of the exact quotient (no Math.pow or fmod per check).
    return (Math.floor(this.capEff * CAP_BIT_INV[cap]) & 1) === 1;
  }

  /** CapEff as /proc/self/status prints it: 16 hex digits. */
  get capEffHex(): string {
    return this.capEff.toString(16).padStart(16, '0');
  }

  /** setrlimit(RLIMIT_MEMLOCK): cur > max is EINVAL; raising max needs CAP_SYS_RESOURCE (EPERM). */
  setrlimitMemlock(cur: bigint, max: bigint): number {
    if (cur > max) return -EINVAL;
    if (max > this.memlock.max && !this.capable(CAP_SYS_RESOURCE)) return -EPERM;
    this.memlock = { cur, max };
    return 0;
  }

  setgroups(groups: number[]): number {
    if (!this.capable(CAP_SETGID)) return -EPERM;
    this.groups = [...groups];
    return 0;
  }

  setgid(gid: number): number {
    if (!this.capable(CAP_SETGID) && gid !== this.gid) return -EPERM;
    this.gid = gid;
    return 0;
  }

  /**
   * setuid: with CAP_SETUID all user ids change; leaving uid 0 for a non-zero uid clears the
   * permitted and effective capabilities (no SECBIT_KEEP_CAPS), as capabilities(7) describes.
   */
  setuid(uid: number): number {
    if (!this.capable(CAP_SETUID)) {
      if (uid !== this.uid) return -EPERM;
      this.euid = uid;
      return 0;
    }
    const wasRoot = this.uid === 0 || this.euid === 0;
    this.uid = uid;
    this.euid = uid;
    if (wasRoot && uid !== 0) this.capEff = 0;
    return 0;
  }

  /** Replaces the effective capability set (capset), e.g. to grant only CAP_IPC_LOCK. */
  setCapabilities(capEff: number): void {
    this.capEff = capEff;
  }
}
