/**
 * SMMUv3 register offsets and fields (IHI 0070 §6.2-6.3), the ID-register presets the model can
 * claim, and the feature set decoded from them.
 *
 * ID register values are configuration (gem5/FVP style): a preset names a set of values, and the
 * defaults claim nothing about real silicon. `qemu-virt` is what a real 6.18 kernel read back from
 * QEMU 10's `virt` SMMU with both stages (IOMMU_GET_HW_INFO, kernel-answers/6.18-iommufd).
 */
import { PA_SIZE_BITS } from '../pgtable/index.ts';
import type { TlbPolicy } from './tlb.ts';

/** Page 0 (and page 1 at +0x10000 for the event queue indexes). */
/** A 64-bit register written as two 32-bit halves, low word first (as Linux's lo_hi_writeq). */
export function writeReg64(
  regs: { writeReg32(off: number, value: number): void },
  off: number,
  v: number,
): void {
  const hi = Math.floor(v / 4294967296);
  regs.writeReg32(off, v - hi * 4294967296);
  regs.writeReg32(off + 4, hi);
}

export const REG = {
  IDR0: 0x00,
  IDR1: 0x04,
  IDR2: 0x08,
  IDR3: 0x0c,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  AGBPA: 0x48,
  IRQ_CTRL: 0x50,
  IRQ_CTRLACK: 0x54,
  GERROR: 0x60,
  GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68,
  GERROR_IRQ_CFG1: 0x70,
  GERROR_IRQ_CFG2: 0x74,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0,
  EVENTQ_IRQ_CFG0: 0xb0,
  EVENTQ_IRQ_CFG1: 0xb8,
  EVENTQ_IRQ_CFG2: 0xbc,
  EVENTQ_PROD: 0x100a8,
  EVENTQ_CONS: 0x100ac,
} as const;

export const CR0_SMMUEN = 1 << 0;
export const CR0_PRIQEN = 1 << 1;
export const CR0_EVENTQEN = 1 << 2;
export const CR0_CMDQEN = 1 << 3;
export const CR0_ATSCHK = 1 << 4;

export const CR2_E2H = 1 << 0;
export const CR2_RECINVSID = 1 << 1;
export const CR2_PTM = 1 << 2;

export const GBPA_UPDATE = 1 << 31;
export const GBPA_ABORT = 1 << 20;

export const IRQ_CTRL_GERROR_IRQEN = 1 << 0;
export const IRQ_CTRL_PRIQ_IRQEN = 1 << 1;
export const IRQ_CTRL_EVENTQ_IRQEN = 1 << 2;

export const GERROR_CMDQ_ERR = 1 << 0;
export const GERROR_EVENTQ_ABT_ERR = 1 << 2;
export const GERROR_PRIQ_ABT_ERR = 1 << 3;
export const GERROR_MSI_CMDQ_ABT_ERR = 1 << 4;
export const GERROR_MSI_EVENTQ_ABT_ERR = 1 << 5;
export const GERROR_MSI_PRIQ_ABT_ERR = 1 << 6;
export const GERROR_MSI_GERROR_ABT_ERR = 1 << 7;
export const GERROR_SFM_ERR = 1 << 8;

/** STRTAB_BASE_CFG.FMT */
export const STRTAB_FMT_LINEAR = 0;
export const STRTAB_FMT_2LVL = 1;

/** CMDQ_CONS.ERR [30:24] codes (IHI 0070 §7.1). */
export const CERROR_NONE = 0;
export const CERROR_ILL = 1;
export const CERROR_ABT = 2;
export const CERROR_ATC_INV_SYNC = 3;

/** EVENTQ_PROD.OVFLG / EVENTQ_CONS.OVACKFLG. */
export const EVENTQ_OVFLG = 1 << 31;

export interface SmmuIdRegisters {
  idr0: number;
  idr1: number;
  idr2: number;
  idr3: number;
  idr4: number;
  idr5: number;
  iidr: number;
  aidr: number;
}

export interface CachePreset {
  /** Entries; Infinity for no limit. */
  entries: number;
  /** What happens when full. */
  policy: TlbPolicy;
}

export interface SmmuPreset extends SmmuIdRegisters {
  name: string;
  description: string;
  tlb: CachePreset;
  configCache: CachePreset;
  /** Where the SMMU departs from the architecture to behave like an implementation (default: none). */
  quirks?: SmmuQuirks;
}

/**
 * Deviations from the architecture a compatibility preset can switch on. The model follows IHI 0070;
 * each quirk reproduces one observed behaviour of an implementation (docs/smmu.md, "Where QEMU 10
 * differs"), so that recordings made on it can be replayed.
 */
export interface SmmuQuirks {
  /**
   * An event's IPA field holds the whole IPA, bits [11:0] included (QEMU writes the address it
   * translated into the last doubleword), also for the stage-1 CLASS TT report below. The
   * architecture: IPA[55:12], bits [11:0] RES0, stage-2 faults only.
   */
  eventIpaFullAddress: boolean;
  /**
   * A stage-2 fault on the next-level table address of a stage-1 table descriptor (not on TTB0/1) is
   * reported as a stage-1 fault: S2 = 0, CLASS = TT, the table's IPA, recorded under CD.R, and so
   * delivered to the guest (QEMU 10; oracle 6.18-iommufd x11-iommufd-events). The architecture: S2 = 1.
   */
  s1TableFaultAsStage1: boolean;
  /**
   * Stage-2 faults on the CD fetch and on TTB0/1 record RnW = 1 and the structure's base IPA: QEMU
   * translates those addresses as reads while decoding the configuration (oracle: b-s1-faults, x11).
   * The architecture: the faulting transaction's RnW.
   */
  configFetchRnwRead: boolean;
}

/** The architecture exactly: no quirk. */
export const NO_QUIRKS: SmmuQuirks = {
  eventIpaFullAddress: false,
  s1TableFaultAsStage1: false,
  configFetchRnwRead: false,
};

/** QEMU 10's SMMUv3 as the 6.18-iommufd recordings saw it (docs/smmu.md, reference §11). */
export const QEMU_QUIRKS: SmmuQuirks = {
  eventIpaFullAddress: true,
  s1TableFaultAsStage1: true,
  configFetchRnwRead: true,
};

/** QEMU-like caches: a 256-entry IOTLB flushed whole when full, an unbounded config cache (reference §6.2-6.3). */
export const QEMU_LIKE_TLB: CachePreset = { entries: 256, policy: 'flush-all' };
export const QEMU_LIKE_CONFIG: CachePreset = { entries: Number.POSITIVE_INFINITY, policy: 'flush-all' };

// IDR0 of QEMU 10 `virt` (both stages), bit by bit (IHI 0070 §6.3.1):
//   [0] S2P=1 [1] S1P=1 [3:2] TTF=0b10 AArch64 [4] COHACC=1 [12] ASID16=1 [18] VMID16=1
//   [22:21] TTENDIAN=0b10 little-endian [25:24] STALL_MODEL=0b01 no stall [26] TERM_MODEL=1 abort only
//   [28:27] ST_LEVEL=0b01 two-level stream tables. No MSI, ATS, PRI, Hyp, CD2L, HTTU.
const QEMU_IDR0 = 0x0d44101b;
// IDR1: [5:0] SIDSIZE=16 [10:6] SSIDSIZE=0 [20:16] EVENTQS=19 [25:21] CMDQS=19.
const QEMU_IDR1 = 0x02730010;
// IDR3: [2] HAD [4] XNX (stage 2 present) [10] RIL [12:11] BBML=2.
const QEMU_IDR3 = 0x00001414;
// IDR5: [2:0] OAS=0b100 44 bits [4] GRAN4K [5] GRAN16K [6] GRAN64K.
const QEMU_IDR5 = 0x00000074;

const QEMU_VIRT: SmmuPreset = {
  name: 'qemu-virt',
  description:
    'QEMU 10 virt SMMUv3.1, stages 1 and 2 (ID words read back by Linux 6.18 via IOMMU_GET_HW_INFO)',
  idr0: QEMU_IDR0,
  idr1: QEMU_IDR1,
  idr2: 0,
  idr3: QEMU_IDR3,
  idr4: 0,
  idr5: QEMU_IDR5,
  iidr: 0,
  aidr: 1,
  tlb: QEMU_LIKE_TLB,
  configCache: QEMU_LIKE_CONFIG,
};

export const SMMU_PRESETS: Readonly<Record<string, SmmuPreset>> = {
  'qemu-virt': QEMU_VIRT,
  qemu: {
    ...QEMU_VIRT,
    name: 'qemu',
    description:
      "qemu-virt's ID registers with QEMU 10's deviations from the architecture (QEMU_QUIRKS): what " +
      'the 6.18-iommufd recordings were made on',
    quirks: QEMU_QUIRKS,
  },
  'qemu-virt-s1': {
    ...QEMU_VIRT,
    name: 'qemu-virt-s1',
    description: 'qemu-virt with stage 1 only (S2P = 0, no XNX), as QEMU `arm-smmuv3.stage=1`',
    idr0: QEMU_IDR0 & ~1,
    idr3: QEMU_IDR3 & ~(1 << 4),
  },
  s2: {
    ...QEMU_VIRT,
    name: 's2',
    description: 'qemu-virt with stage 2 only (S1P = 0), as QEMU `arm-smmuv3.stage=2`',
    idr0: QEMU_IDR0 & ~2,
  },
  full: {
    name: 'full',
    description:
      'Everything the model implements: both stages, Hyp, MSI, 2-level CD tables, 20-bit SubstreamIDs, ' +
      'STE attribute overrides, OAS 48 bits, SMMUv3.2. Claims nothing about real silicon.',
    // S2P S1P TTF=AArch64 COHACC Hyp ASID16 MSI VMID16 CD2L TTENDIAN=LE STALL_MODEL=no-stall TERM_MODEL ST_LEVEL=2-level
    idr0:
      (1 << 0) |
      (1 << 1) |
      (2 << 2) |
      (1 << 4) |
      (1 << 9) |
      (1 << 12) |
      (1 << 13) |
      (1 << 18) |
      (1 << 19) |
      (2 << 21) |
      (1 << 24) |
      (1 << 26) |
      (1 << 27),
    // SIDSIZE=16 SSIDSIZE=20 EVENTQS=19 CMDQS=19 ATTR_PERMS_OVR
    idr1: 16 | (20 << 6) | (19 << 16) | (19 << 21) | (1 << 26),
    idr2: 0,
    // HAD XNX RIL BBML=2
    idr3: (1 << 2) | (1 << 4) | (1 << 10) | (2 << 11),
    idr4: 0,
    // OAS=48 bits GRAN4K GRAN16K GRAN64K
    idr5: 5 | (1 << 4) | (1 << 5) | (1 << 6),
    iidr: 0,
    aidr: 2,
    tlb: QEMU_LIKE_TLB,
    configCache: QEMU_LIKE_CONFIG,
  },
};

/** The features the model acts on, decoded from the ID registers. */
export interface SmmuFeatures {
  s1p: boolean;
  s2p: boolean;
  ttfAArch32: boolean;
  ttfAArch64: boolean;
  httu: number;
  hyp: boolean;
  ats: boolean;
  asid16: boolean;
  msi: boolean;
  sev: boolean;
  pri: boolean;
  vmw: boolean;
  vmid16: boolean;
  cd2l: boolean;
  /** 0b10 little-endian only, 0b11 big-endian only, 0b00 both. */
  ttendian: number;
  /** 0b00 stall and terminate, 0b01 terminate only, 0b10 stall forced. */
  stallModel: number;
  termModel: boolean;
  /** 0 linear only, 1 two-level supported. */
  stLevel: number;
  sidSize: number;
  ssidSize: number;
  cmdqs: number;
  eventqs: number;
  attrPermsOvr: boolean;
  had: boolean;
  xnx: boolean;
  ril: boolean;
  stt: boolean;
  fwb: boolean;
  mpam: boolean;
  dpt: boolean;
  e0pd: boolean;
  ds: boolean;
  vax: number;
  /** Granules supported, as log2 sizes. */
  granules: number[];
  oasBits: number;
  /** IAS = max(40 if AArch32 tables, OAS if AArch64) (IHI 0070 §3.4). */
  iasBits: number;
  /** AIDR: SMMUv3.minor. */
  minor: number;
}

export function decodeFeatures(id: SmmuIdRegisters): SmmuFeatures {
  const { idr0, idr1, idr3, idr5 } = id;
  const bit = (v: number, b: number) => ((v >>> b) & 1) === 1;
  const granules: number[] = [];
  if (bit(idr5, 4)) granules.push(12);
  if (bit(idr5, 5)) granules.push(14);
  if (bit(idr5, 6)) granules.push(16);
  const oasBits = PA_SIZE_BITS[idr5 & 7];
  const ttf = (idr0 >>> 2) & 3;
  return {
    s2p: bit(idr0, 0),
    s1p: bit(idr0, 1),
    ttfAArch32: (ttf & 1) === 1,
    ttfAArch64: (ttf & 2) === 2,
    httu: (idr0 >>> 6) & 3,
    hyp: bit(idr0, 9),
    ats: bit(idr0, 10),
    asid16: bit(idr0, 12),
    msi: bit(idr0, 13),
    sev: bit(idr0, 14),
    pri: bit(idr0, 16),
    vmw: bit(idr0, 17),
    vmid16: bit(idr0, 18),
    cd2l: bit(idr0, 19),
    ttendian: (idr0 >>> 21) & 3,
    stallModel: (idr0 >>> 24) & 3,
    termModel: bit(idr0, 26),
    stLevel: (idr0 >>> 27) & 3,
    sidSize: idr1 & 0x3f,
    ssidSize: (idr1 >>> 6) & 0x1f,
    eventqs: (idr1 >>> 16) & 0x1f,
    cmdqs: (idr1 >>> 21) & 0x1f,
    attrPermsOvr: bit(idr1, 26),
    had: bit(idr3, 2),
    xnx: bit(idr3, 4),
    fwb: bit(idr3, 8),
    stt: bit(idr3, 9),
    ril: bit(idr3, 10),
    mpam: bit(idr3, 7),
    e0pd: bit(idr3, 13),
    dpt: bit(idr3, 15),
    ds: bit(idr5, 7),
    vax: (idr5 >>> 10) & 3,
    granules,
    oasBits,
    iasBits: Math.max((ttf & 1) === 1 ? 40 : 0, (ttf & 2) === 2 ? oasBits : 0),
    minor: id.aidr & 0xf,
  };
}
