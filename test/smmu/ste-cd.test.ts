/**
 * STE and CD formats field by field, the words Linux writes, and every ILLEGAL combination the
 * validity pseudocode of IHI 0070 §5.2.2 / §5.4.2 names for this SMMU, each seen as C_BAD_STE /
 * C_BAD_CD from a transaction.
 */
import { describe, expect, it } from 'vitest';
import { ACCESS_READ } from '../../src/pgtable/index.ts';
import {
  CD_FIELDS,
  type CdFields,
  decodeCd,
  decodeFeatures,
  decodeSte,
  EVT_C_BAD_CD,
  EVT_C_BAD_STE,
  encodeCd,
  encodeSte,
  hexWords64,
  SMMU_PRESETS,
  type SmmuIdRegisters,
  STE_FIELDS,
  type SteFields,
  steIllegal,
} from '../../src/smmu/index.ts';
import { KERNEL_ANSWERS, loadRecording } from '../helpers/recordings.ts';
import { linuxCd, plainSetup, writeCd } from './driver.ts';

/** The lines of the 6.18 iommufd nesting recording the words below are quoted from. */
const happy = loadRecording(KERNEL_ANSWERS, '6.18-iommufd', 'a-nested-happy.jsonl').lines.flat();

describe('field-by-field formats', () => {
  it('every STE field round-trips through its bits, addresses included', () => {
    const fields: Record<string, number> = {};
    STE_FIELDS.forEach(([name, , , width], i) => {
      fields[name] = (i * 7 + 1) % 2 ** width;
    });
    fields.S1ContextPtr = 0xab_cdef_1234_5640;
    fields.S2TTB = 0x12_3456_789a_bcd0;
    const decoded = decodeSte(encodeSte(fields as Partial<SteFields>));
    expect(decoded).toEqual(fields);
  });

  it('every CD field round-trips through its bits, addresses included', () => {
    const fields: Record<string, number> = {};
    CD_FIELDS.forEach(([name, , , width], i) => {
      fields[name] = width >= 32 ? 0x89abcdef + i : (i * 5 + 3) % 2 ** width;
    });
    fields.TTB0 = 0xfe_dcba_9876_5430;
    fields.TTB1 = 0x1_0000_0000_0010;
    expect(decodeCd(encodeCd(fields as Partial<CdFields>))).toEqual(fields);
  });

  it("Linux's stage-1 CD: the exact words a 6.18 kernel wrote (cd_write, 6.18-iommufd)", () => {
    // "cd": ["0x0001e204c0003510", "0x0000000040101000", "0x0000000000000000", "0x00000000f404ff44"]
    const cdWrite = happy.find((l) => l.op === 'cd_write')!;
    expect(hexWords64(encodeCd(linuxCd(0x40101000, 1))).slice(0, 4)).toEqual(cdWrite.cd);
    expect(hexWords64(encodeCd(linuxCd(0x40101000, 1)))).toEqual([
      '0x0001e204c0003510',
      '0x0000000040101000',
      '0x0000000000000000',
      '0x00000000f404ff44',
      '0x0000000000000000',
      '0x0000000000000000',
      '0x0000000000000000',
      '0x0000000000000000',
    ]);
  });

  it('the vSTE words of a nested HWPT (hwpt_alloc, 6.18-iommufd): ste0 0x4010000b, ste1 0xd4', () => {
    const w = encodeSte({ V: 1, Config: 5, S1ContextPtr: 0x40100000, S1CIR: 1, S1COR: 1, S1CSH: 3 });
    expect(hexWords64(w).slice(0, 2)).toEqual(['0x000000004010000b', '0x00000000000000d4']);
    // The allocation that succeeded (not picked by the value compared).
    const alloc = happy.find((l) => l.op === 'hwpt_alloc' && l.ret === 0 && l.ste0 !== undefined)!;
    expect(
      hexWords64(w)
        .slice(0, 2)
        .map((h) => `0x${BigInt(h).toString(16)}`),
    ).toEqual([alloc.ste0, alloc.ste1]);
    expect(decodeSte(w)).toMatchObject({ V: 1, Config: 5, S1ContextPtr: 0x40100000, S1DSS: 0 });
  });
});

const S2_OK: Partial<SteFields> = {
  V: 1,
  Config: 6,
  S2VMID: 1,
  S2T0SZ: 20,
  S2SL0: 2,
  S2TG: 0,
  S2PS: 4,
  S2AA64: 1,
  S2R: 1,
  S2TTB: 0x1000000,
};

const device = (preset: string, id: Partial<SmmuIdRegisters> = {}) => plainSetup({ preset, id });

describe('ILLEGAL STEs raise C_BAD_STE (IHI 0070 §5.2.2)', () => {
  const fullNoCd2l = { idr0: SMMU_PRESETS.full.idr0 & ~(1 << 19) };
  const noVmid16 = { idr0: SMMU_PRESETS['qemu-virt'].idr0 & ~(1 << 18) };
  const no16k = { idr5: 0x54 };
  const cases: [string, string, Partial<SmmuIdRegisters>, Partial<SteFields>, string][] = [
    ['V = 0', 'qemu-virt', {}, { ...S2_OK, V: 0 }, 'V == 0'],
    ['stage 1 without S1P', 's2', {}, { V: 1, Config: 5 }, 'Config enables stage 1, SMMU_IDR0.S1P == 0'],
    ['stage 2 without S2P', 'qemu-virt-s1', {}, S2_OK, 'Config enables stage 2, SMMU_IDR0.S2P == 0'],
    [
      'S1STALLD without the stall model',
      'qemu-virt',
      {},
      { V: 1, Config: 5, S1STALLD: 1 },
      'S1STALLD with STALL_MODEL != 0b00',
    ],
    ['S1CDMax > SSIDSIZE', 'full', {}, { V: 1, Config: 5, S1CDMax: 21 }, 'S1CDMax > SMMU_IDR1.SSIDSIZE'],
    [
      '2-level CD table without CD2L',
      'full',
      fullNoCd2l,
      { V: 1, Config: 5, S1CDMax: 4, S1Fmt: 1 },
      'two-level CD table without SMMU_IDR0.CD2L',
    ],
    [
      'S1ContextPtr beyond the OAS',
      'qemu-virt',
      {},
      { V: 1, Config: 5, S1ContextPtr: 2 ** 44 },
      'S1ContextPtr out of range',
    ],
    ['STRW reserved', 'full', {}, { V: 1, Config: 5, STRW: 1 }, 'STRW reserved'],
    ['S2S without the stall model', 'qemu-virt', {}, { ...S2_OK, S2S: 1 }, 'S2S with STALL_MODEL == 0b01'],
    ['S2AA64 = 0', 'qemu-virt', {}, { ...S2_OK, S2AA64: 0 }, 'S2AA64 == 0 (VMSAv8-32 stage 2 not supported)'],
    ['S2HA without HTTU', 'qemu-virt', {}, { ...S2_OK, S2HA: 1 }, 'S2HA/S2HD without HTTU'],
    ['S2TG reserved', 'qemu-virt', {}, { ...S2_OK, S2TG: 3 }, 'S2TG granule not supported'],
    [
      'S2TG 16KB not in IDR5',
      'qemu-virt',
      no16k,
      { ...S2_OK, S2TG: 2, S2SL0: 1, S2T0SZ: 25 },
      'S2TG granule not supported',
    ],
    [
      'S2TTB beyond S2PS',
      'qemu-virt',
      {},
      { ...S2_OK, S2PS: 0, S2TTB: 2 ** 32 },
      'S2TTB out of range of S2PS',
    ],
    ['S2T0SZ below 64 - IAS', 'qemu-virt', {}, { ...S2_OK, S2T0SZ: 19 }, 'S2T0SZ out of range'],
    ['S2T0SZ above 39', 'qemu-virt', {}, { ...S2_OK, S2T0SZ: 40, S2SL0: 0 }, 'S2T0SZ out of range'],
    [
      'S2SL0 needs more than 16 tables',
      'qemu-virt',
      {},
      { ...S2_OK, S2SL0: 1 },
      'S2SL0 inconsistent with S2T0SZ and S2TG',
    ],
    ['S2SL0 = 0b11', 'qemu-virt', {}, { ...S2_OK, S2SL0: 3 }, 'S2SL0 inconsistent with S2T0SZ and S2TG'],
    [
      'S2ENDI big-endian on a little-endian SMMU',
      'qemu-virt',
      {},
      { ...S2_OK, S2ENDI: 1 },
      'S2ENDI big-endian, SMMU little-endian only',
    ],
    [
      '16-bit VMID on an 8-bit-VMID SMMU',
      'qemu-virt',
      noVmid16,
      { ...S2_OK, S2VMID: 0x100 },
      'S2VMID[15:8] != 0 with 8-bit VMIDs',
    ],
  ];
  for (const [name, preset, id, ste, reason] of cases) {
    it(name, () => {
      const { smmu, drv } = device(preset, id);
      expect(steIllegal(decodeSte(encodeSte(ste)), decodeFeatures(smmu.id))).toBe(reason);
      drv.writeSte(5, ste);
      expect(smmu.translate(5, -1, 0x1000, ACCESS_READ)).toBe(-1);
      expect(drv.events().map((e) => e.type)).toEqual([EVT_C_BAD_STE]);
    });
  }

  it('legal: an abort STE with garbage elsewhere, a bypass STE with garbage stage-2 fields', () => {
    const f = decodeFeatures(SMMU_PRESETS['qemu-virt']);
    expect(steIllegal(decodeSte(encodeSte({ V: 1, Config: 0, S2TG: 3, S1STALLD: 1 })), f)).toBeNull();
    expect(steIllegal(decodeSte(encodeSte({ V: 1, Config: 4, S2TG: 3, S2AA64: 0 })), f)).toBeNull();
    expect(steIllegal(decodeSte(encodeSte(S2_OK)), f)).toBeNull();
  });
});

describe('ILLEGAL CDs raise C_BAD_CD (IHI 0070 §5.4.2)', () => {
  const noAsid16 = { idr0: SMMU_PRESETS['qemu-virt'].idr0 & ~(1 << 12) };
  const cases: [string, Partial<SmmuIdRegisters>, Partial<CdFields>, string][] = [
    ['V = 0', {}, { V: 0 }, 'V == 0'],
    ['A = 0 with TERM_MODEL = 1', {}, { A: 0 }, 'A == 0 with SMMU_IDR0.TERM_MODEL == 1'],
    ['S = 1 without the stall model', {}, { S: 1 }, 'S == 1 with STALL_MODEL == 0b01'],
    ['ENDI big-endian', {}, { ENDI: 1 }, 'ENDI big-endian, SMMU little-endian only'],
    ['AA64 = 0', {}, { AA64: 0 }, 'AA64 == 0 (VMSAv8-32 stage 1 not supported)'],
    ['HA without HTTU', {}, { HA: 1 }, 'HA/HD without HTTU'],
    ['16-bit ASID on an 8-bit-ASID SMMU', noAsid16, { ASID: 0x100 }, 'ASID[15:8] != 0 with 8-bit ASIDs'],
    ['T0SZ below 16', {}, { T0SZ: 15 }, 'T0SZ out of range'],
    ['T0SZ above 39', {}, { T0SZ: 40 }, 'T0SZ out of range'],
    ['T1SZ out of range with EPD1 = 0', {}, { EPD1: 0, TG1: 2, T1SZ: 12 }, 'T1SZ out of range'],
    ['TG0 reserved', {}, { TG0: 3 }, 'TG0 unsupported or TTB0 out of range'],
    ['TTB0 beyond IPS', {}, { IPS: 0, TTB0: 2 ** 32 }, 'TG0 unsupported or TTB0 out of range'],
    ['TG1 reserved with EPD1 = 0', {}, { EPD1: 0, TG1: 0, T1SZ: 16 }, 'TG1 unsupported or TTB1 out of range'],
  ];
  for (const [name, id, cd, reason] of cases) {
    it(name, () => {
      const { mem, smmu, drv } = device('qemu-virt', id);
      writeCd(mem, 0x400000, linuxCd(0x500000, 1, cd));
      drv.writeSte(5, { V: 1, Config: 5, S1ContextPtr: 0x400000 });
      expect(smmu.translate(5, -1, 0x1000, ACCESS_READ)).toBe(-1);
      expect(smmu.result.event).toBe(EVT_C_BAD_CD);
      expect(smmu.configCache.cachedStes()[0].cds.get(0)?.illegal).toBe(reason);
      expect(drv.events().map((e) => e.type)).toEqual([EVT_C_BAD_CD]);
    });
  }

  it('EPD0 = 1 makes T0SZ, TG0 and TTB0 IGNORED: no C_BAD_CD, a translation fault instead', () => {
    const { mem, smmu, drv } = device('qemu-virt');
    writeCd(mem, 0x400000, linuxCd(2 ** 50, 1, { EPD0: 1, T0SZ: 1, TG0: 3 }));
    drv.writeSte(5, { V: 1, Config: 5, S1ContextPtr: 0x400000 });
    expect(smmu.translate(5, -1, 0x1000, ACCESS_READ)).toBe(-1);
    expect(drv.events().map((e) => e.name)).toEqual(['F_TRANSLATION']);
  });
});
