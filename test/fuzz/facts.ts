/**
 * What the shadow model knows about kernels and hosts, written from the references and the
 * recordings, not from src/: /work/shared/reference/vfio-type1.md (cited as §n),
 * reference/seed-era.md (SE §n, the 3.19 profile) and kernel-answers/README.md "Answers worth
 * knowing" (KA), plus the recordings under test/kernel-answers and test/oracle/answers (R), and
 * answers to this project's local probe ops under test/oracle/local-answers (O, file named).
 * Deliberately a separate table from src/uapi/profile.ts: a wrong flag there must show up here.
 * The kernel names and host options are the model's own (not facts), so they come from src/.
 */

import type { HostOptions } from '../../src/host/host.ts';
import type { KernelVersion } from '../../src/uapi/profile.ts';

// Errno numbers are ABI (asm-generic/errno-base.h, errno.h), not behaviour, yet kept apart from
// src/uapi/errno.ts on purpose: the recordings compare errno *names*, which src/ derives from its
// own numbers, so a wrong number there passes every recording; the shadow's -errno comparison
// against these is what catches it.
export const EPERM = 1;
export const ENOENT = 2;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const EMFILE = 24;
export const ENOTTY = 25;
export const ENOSPC = 28;
export const ESPIPE = 29;
export const ERANGE = 34;
export const EOVERFLOW = 75;
export const EBADFD = 77;

/**
 * RLIMIT_NOFILE's default soft limit: the 1025th descriptor is EMFILE (O: y3-emfile-device-fd,
 * fill_fds opened 1018 beside six descriptors; y4-emfile-open, 1020 beside stdio).
 */
export const NOFILE = 1024;

export interface KernelFacts {
  /** GET_INFO capability chain (5.4+, §3.7); 3.19 answers 16 bytes, flags 0 (SE §3.4). */
  infoCaps: boolean;
  /** Capabilities 8-byte aligned (6.6, §3.7, R: 116 on 6.1, 120 on 6.12/6.18). */
  capsAlign8: boolean;
  /** UNMAP_ALL / UPDATE_VADDR extensions and flags (5.12, §1, §3.8, §3.9). */
  allVaddr: boolean;
  /** UNMAP GET_DIRTY_BITMAP and VFIO_IOMMU_DIRTY_PAGES (5.8, §3.10). */
  dirty: boolean;
  /** dma_entry_limit / ENOSPC (5.1, §4). */
  entryLimit: boolean;
  /** Valid IOVA list (5.4, §3.8 step 9, §5). */
  iovaList: boolean;
  /** Errno of a wrapping MAP/UNMAP range (§3.8: EINVAL <= 6.17, EOVERFLOW 6.18). */
  wrapErrno: number;
  /** 6.18: size 0 and overflow are checked before the flags (§3.8). */
  overflowFirst: boolean;
  /** UNMAP checks a wrapping range at all: 3.19 has no such check, behaviour UNVERIFIED (SE §3.2). */
  unmapWrapKnown: boolean;
  /** SET_CONTAINER fd < 0 (§3.5: EINVAL <= 6.0, EBADF 6.1+; SE §2.4). */
  negFd: number;
  /** SET_CONTAINER resolves the fd before testing the group's container (6.1+, §3.5; SE §2.4 the other way). */
  fdFirst: boolean;
  /** SET_CONTAINER with a non-container fd (§3.5: EINVAL <= 6.1, EBADFD 6.2+; R). */
  notContainer: number;
  /** Type 6 exists (CHECK(6) = 1, §3.2; removed in 6.13: CHECK 0, SET ENODEV, §6). */
  nesting: boolean;
  /** arm-smmu-v3 refuses nesting on a finalised domain: 6.11+ allocates finalised (§6: 6.12 EPERM). */
  smmuNestingEperm: boolean;
  /**
   * A new process's RLIMIT_MEMLOCK: 8 MiB from 5.16 (R: x18-memlock-default seq 0, cur = max = 0x800000 on
   * 6.1/6.12/6.18; seq 8-9, an 8 MiB map fits and one page more is ENOMEM); 64 KiB until 5.15 (MLOCK_LIMIT,
   * from source: no recording).
   */
  defaultMemlock: bigint;
  /**
   * Read-only long-term pins of untouched anonymous memory pin the shared zero page, not charged (§4;
   * R x2-zero-page: uncharged on 6.1, charged on 6.12 and 6.18; 3.19 as 6.1, not recorded).
   */
  zeroPage: boolean;
  /** Searches cannot see a mapping that ends at 2^64 (R 6.12-virtio x5-overflow; fixed 6.18-rc4, §3.8). */
  endOfSpaceBug: boolean;
  /** The no-IOMMU driver and its parameter exist (4.5, SE §2.1). */
  noiommu: boolean;
  /**
   * Words a bool module parameter takes, by first characters (O: y1-sysfs-params, replayed in
   * test/host/sysfs-params.test.ts): y/n/1/0 in 3.19's strtobool (its source; not recorded); on/off
   * and true/false on 6.1 and 6.12; enable/disable too on 6.18.
   */
  boolWords: RegExp;
  /**
   * GET_DEVICE_FD tests the container first and takes the descriptor after the open (3.19: its
   * vfio_group_get_device_fd, not recorded); 6.x looks the name up first (R x14-device-edges; the
   * EMFILE between them: O fill_fds, test/vfio/device.test.ts).
   */
  deviceFdContainerFirst: boolean;
  /**
   * The vfio-pci device fd over the edu (O: y6-device-api, every seq on 6.1/6.12/6.18 intel, virtio and
   * smmuv3); null on 3.19, which was never asked.
   */
  device: DeviceFacts | null;
  /**
   * An eventfd write of other than 8 bytes is EINVAL (O y11-eventfd-syscalls seq 12: 6.12, 6.18; 6.1
   * takes 8 of 16); null on 3.19, never asked.
   */
  eventfdWriteExact: boolean | null;
}

export interface DeviceFacts {
  /** PCI_HOT_RESET from a group-opened device with no group fds is EINVAL (O y6 seq 68: 6.12, 6.18). */
  hotResetNeedsFds: boolean;
  /** An 8-byte ioeventfd passes the size checks (O y6 seq 65: ENODEV on 6.1, 6.12; EINVAL on 6.18). */
  ioeventfdQword: boolean;
}

/** Each kernel as the one before it plus what changed (§8 change log). */
const F_6_1: KernelFacts = {
  infoCaps: true,
  capsAlign8: false,
  allVaddr: true,
  dirty: true,
  entryLimit: true,
  iovaList: true,
  wrapErrno: EINVAL,
  overflowFirst: false,
  unmapWrapKnown: true,
  negFd: EBADF,
  fdFirst: true,
  notContainer: EINVAL,
  nesting: true,
  smmuNestingEperm: false,
  defaultMemlock: 8n << 20n,
  zeroPage: true,
  endOfSpaceBug: true,
  noiommu: true,
  boolWords: /^([yYnN01tTfF]|[oO][nNfF])/,
  deviceFdContainerFirst: false,
  device: { hotResetNeedsFds: false, ioeventfdQword: true },
  eventfdWriteExact: false,
};
const F_6_12: KernelFacts = {
  ...F_6_1,
  capsAlign8: true,
  notContainer: EBADFD,
  smmuNestingEperm: true,
  zeroPage: false,
  device: { hotResetNeedsFds: true, ioeventfdQword: true },
  eventfdWriteExact: true,
};

export const KERNEL_FACTS: Record<KernelVersion, KernelFacts> = {
  '3.19': {
    ...F_6_1,
    infoCaps: false,
    allVaddr: false,
    dirty: false,
    entryLimit: false,
    iovaList: false,
    unmapWrapKnown: false,
    negFd: EINVAL,
    fdFirst: false,
    defaultMemlock: 64n << 10n,
    noiommu: false,
    boolWords: /^[yYnN01]/,
    deviceFdContainerFirst: true,
    device: null,
    eventfdWriteExact: null,
  },
  '6.1': F_6_1,
  '6.12': F_6_12,
  '6.18': {
    ...F_6_12,
    wrapErrno: EOVERFLOW,
    overflowFirst: true,
    nesting: false,
    endOfSpaceBug: false,
    boolWords: /^([yYnN01tTfFeEdD]|[oO][nNfF])/,
    device: { hotResetNeedsFds: true, ioeventfdQword: false },
  },
};

export const TWO_64 = 1n << 64n;
export const U64_MAX = TWO_64 - 1n;

export interface Range {
  start: bigint;
  /** Inclusive. */
  end: bigint;
}

/** A host of the fuzz matrix (host options the model takes). */
export type FuzzConfig = Required<Pick<HostOptions, 'kernel' | 'iommu' | 'params'>> &
  Pick<HostOptions, 'smmu'>;

export function configName(c: FuzzConfig): string {
  const p = Object.entries(c.params)
    .map(([k, v]) => `${k.split('.')[1]}=${v}`)
    .join(',');
  return `${c.kernel}-${c.iommu}${c.smmu && c.smmu !== 's1s2' ? `-${c.smmu}` : ''}${p ? ` (${p})` : ''}`;
}

/** The translation stage of an arm-smmu-v3 domain (§6; SE §4.5: no S1 -> S2, no S2 -> S1). */
export type Stage = 'S1' | 'S2';

/** What one host's IOMMU offers type-1 (§5 and the R rows there). */
export interface HostFacts {
  /** iova_pgsizes (R: intel 0x40201000, virtio 0xfffffffffffff000, SMMUv3 4K granule 0x40201000). */
  pgsizes: bigint;
  /** The reserved window cut out of the valid list (§5: x86 MSI window, arm SW-MSI window). */
  reserved: Range;
  /** Whether the group has isolated MSIs (§3.3 step 10: virtio-iommu has none, R). */
  isolatedMsi: boolean;
  /** The domain's aperture end for a domain of this stage (§5, §6). */
  apertureEnd(stage: Stage): bigint;
  /** The stage a type-1 domain gets (type 6 asks for nesting = stage 2 where the driver grants it). */
  stage(nesting: boolean): Stage;
  /**
   * SET_IOMMU(6)'s nesting request on this host: 0 when granted, else the errno (§6 table, SE §1).
   * Called only where type 6 exists.
   */
  nestingErrno(k: KernelFacts): number;
  /**
   * The IOMMU driver's errno for a MAP beyond what the domain translates, where no valid-IOVA list
   * stops it first (3.19): arm-smmu ERANGE (SE §3.1); intel-iommu's width check EFAULT
   * (intel_iommu_map: "iommu width is not sufficient for the mapped address", not in the references).
   */
  outOfRangeErrno: number;
  /**
   * DMA_CC_IOMMU (4) once SET_IOMMU succeeded; undefined where no source settles it. R: 0 on intel
   * and virtio (6.x); SE §4.3: 1 on arm-smmu in 3.19; 6.x arm-smmu-v3 on QEMU enforces no coherency.
   */
  dmaCc(kernel: KernelVersion): number | undefined;
}

export function hostFacts(c: FuzzConfig): HostFacts {
  switch (c.iommu) {
    case 'intel':
      return {
        pgsizes: 0x4020_1000n,
        reserved: { start: 0xfee0_0000n, end: 0xfeef_ffffn },
        isolatedMsi: true,
        apertureEnd: () => (1n << 39n) - 1n,
        stage: () => 'S1',
        nestingErrno: () => EINVAL,
        outOfRangeErrno: EFAULT,
        dmaCc: (kernel) => (kernel === '3.19' ? undefined : 0),
      };
    case 'virtio':
      return {
        pgsizes: 0xffff_ffff_ffff_f000n,
        reserved: { start: 0xfee0_0000n, end: 0xfeef_ffffn },
        isolatedMsi: false,
        apertureEnd: () => U64_MAX,
        stage: () => 'S1',
        nestingErrno: () => EINVAL,
        outOfRangeErrno: EINVAL,
        dmaCc: (kernel) => (kernel === '3.19' ? undefined : 0),
      };
    case 'smmuv3': {
      const st = c.smmu ?? 's1s2';
      return {
        pgsizes: 0x4020_1000n,
        reserved: { start: 0x800_0000n, end: 0x80f_ffffn },
        isolatedMsi: true,
        // Stage 1: 48-bit input (VA_BITS); stage 2: the SMMU's IAS, 44 on QEMU (§5 RA).
        apertureEnd: (stage) => (stage === 'S1' ? (1n << 48n) - 1n : (1n << 44n) - 1n),
        stage: (nesting) => (st === 's2' ? 'S2' : st === 's1' ? 'S1' : nesting ? 'S2' : 'S1'),
        nestingErrno: (k) => (k.smmuNestingEperm ? EPERM : 0),
        outOfRangeErrno: ERANGE,
        dmaCc: (kernel) => (kernel === '3.19' ? 1 : 0),
      };
    }
  }
}

/** The valid IOVA list after the one group attached (§3.3 steps 7-9): aperture minus the reserved window. */
export function validList(h: HostFacts, stage: Stage): Range[] {
  const end = h.apertureEnd(stage);
  const out: Range[] = [];
  if (h.reserved.start > 0n) out.push({ start: 0n, end: h.reserved.start - 1n });
  if (h.reserved.end < end) out.push({ start: h.reserved.end + 1n, end });
  return out;
}
