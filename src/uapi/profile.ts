/**
 * Kernel profiles: what each modelled kernel version does differently at the user ABI.
 * Pure data, one switch per behaviour, each with the version it changed in
 * (reference/vfio-type1.md §8 change log; reference/seed-era.md §6 for 3.19).
 */

import { EBADF, EBADFD, EINVAL, EOVERFLOW } from './errno.ts';

export type KernelVersion = '3.19' | '6.1' | '6.12' | '6.18';
export const KERNEL_VERSIONS: readonly KernelVersion[] = ['3.19', '6.1', '6.12', '6.18'];

export interface KernelProfile {
  version: KernelVersion;
  /** GET_INFO capability chain (5.4+). 3.19 answers 16 bytes, flags 0, argsz never rewritten. */
  infoCaps: boolean;
  /** GET_INFO sets VFIO_IOMMU_INFO_PGSIZES (not in the 3.19-era copies: seed-era.md §2.2). */
  infoFlagPgsizes: boolean;
  /** Capabilities rounded up to 8 bytes (6.6: "vfio: align capability structures"). */
  capsAlign8: boolean;
  /** MAP_DMA flag VADDR, UNMAP_DMA flags ALL and VADDR, extensions 9/10 (5.12+). */
  unmapAllVaddr: boolean;
  /** UNMAP_DMA GET_DIRTY_BITMAP and VFIO_IOMMU_DIRTY_PAGES (5.8+). */
  dirtyTracking: boolean;
  /** dma_entry_limit module parameter and ENOSPC (5.1+). */
  dmaEntryLimit: boolean;
  /** Valid-IOVA list from apertures and reserved regions; MAP outside it is EINVAL (5.4+). */
  iovaList: boolean;
  /** Errno for a wrapping iova+size or vaddr+size: EINVAL until 6.17, EOVERFLOW from 6.18-rc4. */
  overflowErrno: number;
  /** 6.18 checks size 0 and overflow before the flags (vfio-type1.md §3.8). */
  overflowFirst: boolean;
  /** SET_CONTAINER with fd < 0: an explicit EINVAL before 6.1, fdget's EBADF from 6.1. */
  setContainerNegativeFd: number;
  /**
   * SET_CONTAINER resolves the fd (EBADF) before testing whether the group is already in a
   * container (6.1+); 3.19 tests fd < 0 and the group first (seed-era.md §2.4).
   */
  setContainerFdFirst: boolean;
  /** SET_CONTAINER with a non-container fd: EINVAL until 6.1, EBADFD from 6.2 (iommufd tried). */
  setContainerNotContainer: number;
  /** How type 6 asks for nesting: DOMAIN_ATTR_NESTING (3.19-5.12), iommu_enable_nesting (5.13-6.12), gone (6.13+). */
  nesting: 'set-attr' | 'enable-nesting' | 'removed';
  /** Paging domains are allocated for a device and finalised at once (6.11+: iommu_paging_domain_alloc). */
  pagingDomainFinalisedAtAlloc: boolean;
  /**
   * GET_DEVICE_FD tests the container before the name and takes the descriptor after the open (3.x-4.x
   * vfio_group_get_device_fd); 6.x looks the name up first and takes the descriptor before the open
   * (test/oracle/answers/*-intel/x14-device-edges.jsonl seq 2; test/vfio/device.test.ts).
   */
  deviceFdContainerFirst: boolean;
  /** vfio claims DMA ownership of the group at SET_CONTAINER (5.19+). */
  dmaOwnership: boolean;
  /**
   * Domains enforce cache coherency (iommu_domain enforce_cache_coherency) and every mapping carries
   * IOMMU_CACHE (5.19+); before, a domain's prot held IOMMU_CACHE only where the IOMMU was coherent.
   */
  coherencyEnforced: boolean;
  /** An intel-iommu mapping asked write-only comes out readable (before 6.18: oracle i1-dma-v2 seq 22-24). */
  writeOnlyReadable: boolean;
  /** RLIMIT_MEMLOCK a new process gets: 64 KiB until 5.15, 8 MiB from 5.16 (oracle x18-memlock-default). */
  defaultMemlock: bigint;
  /**
   * A read-only long-term pin of never-touched anonymous memory pins the shared zero page, which
   * vfio treats as reserved: not charged to locked_vm (oracle: 6.1 intel x2-zero-page, VmLck 0 after
   * a 16 KiB read-only map). 6.12 and 6.18 fault in real pages and charge them.
   */
  longtermPinsZeroPage: boolean;
  /**
   * vfio's tree searches use end-exclusive u64 arithmetic, so a mapping that ends at 2^64 is
   * invisible to them (UNMAP finds nothing, overlaps go unseen) until the 6.18-rc4 rework
   * (oracle: 6.12 virtio x5-overflow, the last page maps but unmaps 0 bytes).
   */
  endOfSpaceBug: boolean;
  /** The VFIO device cdev and iommufd exist (6.6+ uAPI; only kernels built with IOMMUFD have /dev/iommu). */
  cdevIommufd: boolean;
  /** The no-IOMMU driver and its parameter vfio.enable_unsafe_noiommu_mode (4.5, seed-era.md §2.1). */
  noiommu: boolean;
  /**
   * What a bool module parameter reads (kstrtobool, its first characters): 3.19's strtobool y/Y/1,
   * n/N/0; 'onoff' adds on/off and t/T/f/F (6.1, 6.12: oracle x86 params); 'endis' adds e/E, d/D
   * ("enable"/"disable": 6.18).
   */
  boolParam: 'yn' | 'onoff' | 'endis';
  /**
   * VFIO_DEVICE_IOEVENTFD: absent before 4.17 (ENOTTY; from source, no recording), then 1-8 bytes;
   * 6.18 refuses 8 (oracle y6-device-api seq 65: EINVAL where 6.1 and 6.12 go on to ENODEV).
   */
  ioeventfd: 'none' | 'qword' | 'no-qword';
  /**
   * The REQ and ERR triggers (vfio_pci_set_ctx_trigger_single) refuse an eventfd number below -1
   * (oracle y6-device-api seq 103: EINVAL on 6.12 and 6.18; 6.1 ignores it, as INTx and MSI do on all).
   */
  ctxTriggerBadFdEinval: boolean;
  /**
   * vfio-pci reads and writes an aligned 8 bytes of a BAR in one access; before (6.1) it makes them
   * two 4-byte accesses (oracle y7-edu-registers seq 11, 13: the edu's 0x84 answers the upper half).
   */
  barQwordAccess: boolean;
  /**
   * An eventfd write must be exactly 8 bytes (6.12+); before, it takes the first 8 of a longer one
   * and returns 8 (oracle y11-eventfd-syscalls seq 12).
   */
  eventfdWriteExact: boolean;
}

const base: KernelProfile = {
  version: '6.12',
  infoCaps: true,
  infoFlagPgsizes: true,
  capsAlign8: true,
  unmapAllVaddr: true,
  dirtyTracking: true,
  dmaEntryLimit: true,
  iovaList: true,
  overflowErrno: EINVAL,
  overflowFirst: false,
  setContainerNegativeFd: EBADF,
  setContainerFdFirst: true,
  setContainerNotContainer: EBADFD,
  nesting: 'enable-nesting',
  pagingDomainFinalisedAtAlloc: true,
  dmaOwnership: true,
  deviceFdContainerFirst: false,
  coherencyEnforced: true,
  writeOnlyReadable: true,
  defaultMemlock: 8n << 20n,
  longtermPinsZeroPage: false,
  endOfSpaceBug: true,
  cdevIommufd: true,
  noiommu: true,
  boolParam: 'onoff',
  ioeventfd: 'qword',
  ctxTriggerBadFdEinval: true,
  barQwordAccess: true,
  eventfdWriteExact: true,
};

export const PROFILES: Record<KernelVersion, KernelProfile> = {
  '3.19': {
    ...base,
    version: '3.19',
    infoCaps: false,
    infoFlagPgsizes: false,
    capsAlign8: false,
    unmapAllVaddr: false,
    dirtyTracking: false,
    dmaEntryLimit: false,
    iovaList: false,
    setContainerNegativeFd: EINVAL,
    setContainerFdFirst: false,
    setContainerNotContainer: EINVAL,
    nesting: 'set-attr',
    pagingDomainFinalisedAtAlloc: false,
    dmaOwnership: false,
    deviceFdContainerFirst: true,
    coherencyEnforced: false,
    defaultMemlock: 64n << 10n,
    longtermPinsZeroPage: true,
    cdevIommufd: false,
    noiommu: false,
    boolParam: 'yn',
    ioeventfd: 'none',
    ctxTriggerBadFdEinval: false,
    barQwordAccess: false,
    eventfdWriteExact: false,
  },
  '6.1': {
    ...base,
    version: '6.1',
    capsAlign8: false,
    setContainerNotContainer: EINVAL,
    pagingDomainFinalisedAtAlloc: false,
    longtermPinsZeroPage: true,
    cdevIommufd: false,
    ctxTriggerBadFdEinval: false,
    barQwordAccess: false,
    eventfdWriteExact: false,
  },
  '6.12': { ...base },
  '6.18': {
    ...base,
    version: '6.18',
    overflowErrno: EOVERFLOW,
    overflowFirst: true,
    endOfSpaceBug: false,
    writeOnlyReadable: false,
    boolParam: 'endis',
    nesting: 'removed',
    ioeventfd: 'no-qword',
  },
};

export function kernelProfile(version: string): KernelProfile | undefined {
  return (PROFILES as Record<string, KernelProfile>)[version];
}
