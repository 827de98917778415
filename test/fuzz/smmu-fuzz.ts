/**
 * The SMMUv3 fed random bytes: STEs, CDs, page-table descriptors and commands (biased towards
 * well-formed ones, then with bits flipped), random register writes and random transactions. What
 * must hold whatever the bytes (IHI 0070):
 *  - nothing throws; a transaction ends with a PA inside memory, or terminated with an architected
 *    event type (or silently, for an abort configuration);
 *  - every event the configuration asks for is written to the event queue, or the queue was full
 *    and the overflow is flagged (EVENTQ_PROD.OVFLG differs from EVENTQ_CONS.OVACKFLG), or event
 *    delivery is off (EVENTQEN = 0) or aborted (GERROR.EVENTQ_ABT_ERR): never lost silently;
 *  - every record in the queue has an architected type; GERROR holds only architected bits; a
 *    command error leaves an architected CERROR code in CMDQ_CONS.ERR.
 */

import fc from 'fast-check';
import { PhysMem } from '../../src/mm/physmem.ts';
import {
  CMD_ATC_INV,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_PREFETCH_CONFIG,
  CMD_SYNC,
  CMD_TLBI_EL2_ALL,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  CMD_TLBI_S2_IPA,
  CMD_TLBI_S12_VMALL,
  EVENT_NAMES,
  encodeCd,
  encodeCommand,
  encodeSte,
  REG,
  Smmu,
} from '../../src/smmu/index.ts';
import { linuxCd, STRTAB, TestDriver } from '../smmu/driver.ts';
import { FuzzFailure } from './world.ts';

const MEM_BYTES = 32 << 20;
const CDS = 0x40_0000;
const TABLES = 0x50_0000;
const TABLE_PAGES = 32;

export type SmmuAction =
  | { a: 'ste'; sid: number; fields: Record<string, number>; flips: [number, number][]; inval?: boolean }
  | { a: 'cd'; index: number; fields: Record<string, number>; flips: [number, number][]; inval?: boolean }
  | { a: 'desc'; page: number; index: number; kind: number; target: number; attrs: number; hi: number }
  | { a: 'chain'; root: number; leaves: number; s2: boolean }
  | { a: 'cmd'; opcode: number; fields: Record<string, number>; raw?: number[] }
  | { a: 'reg'; off: number; value: number }
  | { a: 'tx'; sid: number; ssid: number; iova: number; access: number }
  | { a: 'drain'; ack: boolean };

export interface SmmuCase {
  /** Start from a working configuration: StreamID 0 stage 1, StreamID 1 stage 2, their tables. */
  prologue: boolean;
  preset: string;
  evtqLog2: number;
  cmdqLog2: number;
  actions: SmmuAction[];
}

const small = (max: number) => fc.integer({ min: 0, max });
/** A table base: the first tables, any table page, or `outside` (end of RAM, or beyond the PA size). */
const tableBaseArb = (outside: number) =>
  fc.oneof(
    fc.constantFrom(TABLES, TABLES + 8 * 4096),
    small(TABLE_PAGES - 1).map((i) => TABLES + i * 4096),
    fc.constantFrom(MEM_BYTES, outside),
  );
const flipsArb = fc.array(fc.tuple(small(15), small(31)), { maxLength: 3 });

const randomSteArb: fc.Arbitrary<SmmuAction> = fc.record({
  a: fc.constant('ste' as const),
  sid: small(15),
  fields: fc.record({
    V: fc.constantFrom(1, 1, 1, 0),
    Config: fc.constantFrom(0, 4, 5, 5, 6, 6, 7, 7, 1, 2),
    S1Fmt: fc.constantFrom(0, 0, 1, 2, 3),
    S1ContextPtr: fc.oneof(
      small(3).map((i) => CDS + i * 64),
      fc.constantFrom(0, MEM_BYTES + 0x1000, 2 ** 44),
    ),
    S1CDMax: fc.constantFrom(0, 0, 1, 4, 20),
    S1DSS: small(3),
    S2VMID: small(3),
    S2T0SZ: fc.constantFrom(20, 20, 24, 16, 0, 63, 39),
    S2SL0: fc.constantFrom(0, 1, 2, 2, 3),
    S2TG: fc.constantFrom(0, 0, 0, 1, 2, 3),
    S2PS: fc.constantFrom(0, 2, 4, 5, 7),
    S2AA64: fc.constantFrom(1, 1, 0),
    S2R: small(1),
    S2PTW: small(1),
    S2AFFD: small(1),
    S2TTB: tableBaseArb(2 ** 40 + 0x1000),
    STRW: small(3),
  }),
  flips: flipsArb,
  inval: fc.boolean(),
});

const randomCdArb: fc.Arbitrary<SmmuAction> = fc.record({
  a: fc.constant('cd' as const),
  index: small(3),
  fields: fc.record({
    V: fc.constantFrom(1, 1, 1, 0),
    T0SZ: fc.constantFrom(16, 16, 25, 39, 0, 63),
    TG0: fc.constantFrom(0, 0, 0, 1, 2, 3),
    EPD0: fc.constantFrom(0, 0, 0, 1),
    EPD1: fc.constantFrom(1, 1, 0),
    IPS: fc.constantFrom(2, 4, 5, 7),
    AA64: fc.constantFrom(1, 1, 0),
    R: fc.constantFrom(1, 1, 0),
    A: fc.constantFrom(1, 1, 0),
    S: small(1),
    AFFD: small(1),
    HA: small(1),
    HD: small(1),
    ASID: small(3),
    TTB0: tableBaseArb(2 ** 40),
  }),
  flips: flipsArb,
  inval: fc.boolean(),
});

/** Well-formed configurations (what a driver writes), so that walks also succeed and fill the TLB. */
const steArb: fc.Arbitrary<SmmuAction> = fc.oneof(
  { weight: 2, arbitrary: randomSteArb },
  {
    weight: 4,
    arbitrary: fc.record({
      a: fc.constant('ste' as const),
      sid: small(3),
      fields: fc.oneof(
        fc.constantFrom(0, 0, 0, 1).map((i) => ({ V: 1, Config: 5, S1ContextPtr: CDS + i * 64 })),
        fc.constantFrom(0, 0, 8, 16).map((root) => ({
          V: 1,
          Config: 6,
          S2VMID: 1,
          S2T0SZ: 25,
          S2SL0: 1,
          S2PS: 2,
          S2AA64: 1,
          S2R: 1,
          S2PTW: 1,
          S2TTB: TABLES + root * 4096,
        })),
      ),
      flips: fc.constant<[number, number][]>([]),
      inval: fc.constantFrom(true, true, true, false),
    }),
  },
);

const cdArb: fc.Arbitrary<SmmuAction> = fc.oneof(
  { weight: 1, arbitrary: randomCdArb },
  {
    weight: 2,
    arbitrary: fc.record({
      a: fc.constant('cd' as const),
      index: fc.constantFrom(0, 0, 0, 1),
      fields: fc
        .tuple(fc.constantFrom(0, 0, 8, 16), small(3))
        .map(([root, asid]) => linuxCd(TABLES + root * 4096, asid + 1) as Record<string, number>),
      flips: fc.constant<[number, number][]>([]),
      inval: fc.constantFrom(true, true, true, false),
    }),
  },
);

const descArb: fc.Arbitrary<SmmuAction> = fc.record({
  a: fc.constant('desc' as const),
  page: small(TABLE_PAGES - 1),
  index: fc.oneof(small(3), small(511)),
  kind: fc.constantFrom(0, 1, 3, 3, 3, 2),
  target: fc.oneof(
    small(TABLE_PAGES - 1).map((i) => TABLES + i * 4096),
    fc.integer({ min: 0, max: MEM_BYTES / 4096 - 1 }).map((i) => i * 4096),
    fc.constantFrom(MEM_BYTES, 2 ** 40, 0x20_0000),
  ),
  attrs: fc.oneof(fc.constantFrom(0x740, 0x7c0, 0x4c0, 0x400, 0x0), fc.integer({ min: 0, max: 0xfff })),
  hi: fc.constantFrom(0, 0, 0, 0x0040_0000, 0x0060_0000, 0xffff_ffff),
});

/** A well-formed 4-level walk from a root page (tables at root+1..3), with leaves for the first pages. */
const chainArb: fc.Arbitrary<SmmuAction> = fc.record({
  a: fc.constant('chain' as const),
  root: fc.constantFrom(0, 0, 8, 16),
  leaves: fc.constantFrom(1, 4, 16),
  s2: fc.boolean(),
});

const OPCODES = [
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_S12_VMALL,
  CMD_TLBI_S2_IPA,
  CMD_TLBI_NSNH_ALL,
  CMD_TLBI_EL2_ALL,
  CMD_SYNC,
  CMD_ATC_INV,
  CMD_PREFETCH_CONFIG,
];

const cmdArb: fc.Arbitrary<SmmuAction> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      a: fc.constant('cmd' as const),
      opcode: fc.constantFrom(...OPCODES),
      fields: fc.record({
        sid: small(15),
        ssid: small(3),
        ssv: small(1),
        range: fc.constantFrom(0, 1, 4, 31),
        vmid: small(3),
        asid: small(3),
        addr: fc.constantFrom(0, 0x1000, 0x20_0000, 0x4000_0000),
        leaf: small(1),
        num: small(31),
        scale: small(31),
        tg: small(3),
        ttl: small(3),
        cs: small(3),
        msiAddr: fc.constantFrom(0, 0x10_0000, MEM_BYTES),
        msiData: small(255),
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      a: fc.constant('cmd' as const),
      opcode: small(255),
      fields: fc.constant({}),
      raw: fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 4, maxLength: 4 }),
    }),
  },
);

const REG_TARGETS = [
  REG.CR0,
  REG.CR1,
  REG.CR2,
  REG.GBPA,
  REG.IRQ_CTRL,
  REG.GERRORN,
  REG.STRTAB_BASE,
  REG.STRTAB_BASE_CFG,
  REG.CMDQ_BASE,
  REG.CMDQ_PROD,
  REG.CMDQ_CONS,
  REG.EVENTQ_BASE,
  REG.EVENTQ_PROD,
  REG.EVENTQ_CONS,
  REG.EVENTQ_IRQ_CFG0,
];

const regArb: fc.Arbitrary<SmmuAction> = fc.record({
  a: fc.constant('reg' as const),
  off: fc.oneof(
    fc.constantFrom(...REG_TARGETS),
    small(0x1ff).map((x) => x * 4),
  ),
  value: fc.oneof(
    fc.constantFrom(0, 1, 0xd, 0xc, 0x8000_0000, 0x8000_0001, 0xffff_ffff),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  ),
});

const txArb: fc.Arbitrary<SmmuAction> = fc.record({
  a: fc.constant('tx' as const),
  sid: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(0, 0, 1, 1, 2, 3) },
    { weight: 1, arbitrary: small(15) },
    { weight: 1, arbitrary: fc.constantFrom(0xffff, 0x1_0000) },
  ),
  ssid: fc.constantFrom(-1, -1, -1, 0, 1, 7),
  iova: fc.oneof(
    small(15).map((i) => i * 0x1000),
    small(15).map((i) => i * 0x1000),
    small(7).map((i) => i * 0x20_0000),
    fc.constantFrom(0x4000_0000, 2 ** 39, 2 ** 44, 2 ** 48 - 0x1000, 2 ** 52),
  ),
  access: small(7),
});

export const smmuCaseArb: fc.Arbitrary<SmmuCase> = fc.record({
  prologue: fc.constantFrom(true, true, true, false),
  preset: fc.constantFrom('qemu-virt', 'qemu-virt-s1', 's2', 'full'),
  evtqLog2: fc.constantFrom(1, 2, 6),
  cmdqLog2: fc.constantFrom(2, 8),
  actions: fc.array(
    fc.oneof(
      { weight: 3, arbitrary: steArb },
      { weight: 2, arbitrary: cdArb },
      { weight: 5, arbitrary: descArb },
      { weight: 2, arbitrary: chainArb },
      { weight: 3, arbitrary: cmdArb },
      { weight: 1, arbitrary: regArb },
      { weight: 8, arbitrary: txArb },
      { weight: 2, arbitrary: fc.record({ a: fc.constant('drain' as const), ack: fc.boolean() }) },
    ),
    { maxLength: 80, size: 'large' },
  ),
});

const GERROR_BITS = 0x1fd;
const ARCHITECTED = new Set(Object.keys(EVENT_NAMES).map(Number));

function flip(words: Uint32Array, flips: [number, number][]): Uint32Array {
  for (const [w, b] of flips) words[w] = (words[w] ^ (1 << b)) >>> 0;
  return words;
}

export interface SmmuStats {
  tx: number;
  faults: number;
  recorded: number;
  overflowed: number;
  commandErrors: number;
  /** Faults by event name. */
  events?: Record<string, number>;
}

/** Runs one case; throws FuzzFailure when an invariant breaks. */
export function runSmmuCase(c: SmmuCase, stats?: SmmuStats): void {
  const mem = new PhysMem({ base: 0, size: MEM_BYTES });
  const smmu = new Smmu(mem, { preset: c.preset });
  const drv = new TestDriver(smmu, { evtqLog2: c.evtqLog2, cmdqLog2: c.cmdqLog2 });
  drv.init();
  const reg = (off: number) => smmu.readReg32(off);
  const cmdqErr = () => ((reg(REG.GERROR) ^ reg(REG.GERRORN)) & 1) !== 0;
  const step = (i: number, act: SmmuAction) => {
    const errBefore = cmdqErr();
    try {
      run(act);
      check(errBefore || act.a === 'reg');
    } catch (e) {
      if (e instanceof FuzzFailure)
        throw new FuzzFailure(`${e.message}\n  SMMU ${c.preset}, action ${i}: ${JSON.stringify(act)}`);
      throw new FuzzFailure(
        `exception at action ${i} (${JSON.stringify(act)}) on SMMU ${c.preset}: ${(e as Error).stack ?? e}`,
      );
    }
  };
  const check = (errBefore: boolean) => {
    const gerror = reg(REG.GERROR);
    if (gerror & ~GERROR_BITS)
      throw new FuzzFailure(`GERROR 0x${gerror.toString(16)} has bits no architecture defines`);
    // CMDQ_CONS.ERR is UNKNOWN unless GERROR.CMDQ_ERR is active (IHI 0070 §6.3.28): check it when the
    // SMMU has just raised the error (not when software toggled GERRORN).
    if (!errBefore && cmdqErr()) {
      if (stats) stats.commandErrors++;
      const err = (reg(REG.CMDQ_CONS) >>> 24) & 0x7f;
      if (err < 1 || err > 3)
        throw new FuzzFailure(`a command error with CMDQ_CONS.ERR ${err}, no CERROR code`);
    }
  };
  /** EVENTQ_BASE as the SMMU uses it: LOG2SIZE capped by IDR1.EVENTQS, ADDR aligned to the queue size. */
  const evtq = () => {
    const lo = reg(REG.EVENTQ_BASE);
    const log2 = Math.min(lo & 0x1f, smmu.features.eventqs);
    const raw = (reg(REG.EVENTQ_BASE + 4) & 0xffffff) * 2 ** 32 + ((lo & 0xffff_ffe0) >>> 0);
    const bytes = Math.max(32 << log2, 32);
    return {
      log2,
      addr: Math.floor(raw / bytes) * bytes,
      prod: reg(REG.EVENTQ_PROD),
      cons: reg(REG.EVENTQ_CONS),
    };
  };
  const run = (act: SmmuAction) => {
    switch (act.a) {
      case 'ste':
        drv.writeWords(STRTAB + act.sid * 64, flip(encodeSte(act.fields), act.flips));
        // As a driver does: invalidate the cached STE, and wait for it.
        if (act.inval) {
          drv.cmd(CMD_CFGI_STE, { sid: act.sid, leaf: 1 });
          drv.sync();
        }
        return;
      case 'cd':
        drv.writeWords(CDS + act.index * 64, flip(encodeCd(act.fields), act.flips));
        if (act.inval) {
          drv.cmd(CMD_CFGI_CD_ALL, { sid: act.index });
          drv.cmd(CMD_CFGI_STE_RANGE, { range: 31 });
          drv.cmd(CMD_TLBI_NSNH_ALL);
          drv.sync();
        }
        return;
      case 'desc': {
        const slot = TABLES + act.page * 4096 + act.index * 8;
        const lo = ((act.target % 2 ** 32) & 0xffff_f000) | (act.attrs & 0xffc) | act.kind;
        const hi = (Math.floor(act.target / 2 ** 32) | act.hi) >>> 0;
        mem.writeU32(slot, lo >>> 0);
        mem.writeU32(slot + 4, hi);
        return;
      }
      case 'chain': {
        // Tables at root, root+1, root+2 (index 0 each), leaves at root+3: pages of 0x100000 + i * 4 KiB.
        const t = (i: number) => TABLES + (act.root + i) * 4096;
        for (let l = 0; l < 3; l++) {
          mem.writeU32(t(l), (t(l + 1) | 3) >>> 0);
          mem.writeU32(t(l) + 4, 0);
        }
        const attrs = act.s2 ? 0x4c0 | 0x400 : 0x740;
        for (let i = 0; i < act.leaves; i++) {
          mem.writeU32(t(3) + i * 8, (0x10_0000 + i * 4096) | attrs | 3);
          mem.writeU32(t(3) + i * 8 + 4, 0);
        }
        return;
      }
      case 'cmd':
        drv.submit(act.raw ?? encodeCommand(act.opcode, act.fields));
        return;
      case 'reg':
        smmu.writeReg32(act.off, act.value);
        return;
      case 'drain': {
        // The consumer takes everything up to PROD (the records were checked when written), and
        // acknowledges an overflow if asked (OVACKFLG := OVFLG).
        const q = evtq();
        const ovack = act.ack ? q.prod & 0x8000_0000 : q.cons & 0x8000_0000;
        smmu.writeReg32(REG.EVENTQ_CONS, ((q.prod & ((2 << q.log2) - 1)) | ovack) >>> 0);
        return;
      }
      case 'tx': {
        const before = evtq();
        const cr0 = reg(REG.CR0);
        const abt = ((reg(REG.GERROR) ^ reg(REG.GERRORN)) & 4) !== 0;
        const pa = smmu.translate(act.sid, act.ssid, act.iova, act.access);
        const r = smmu.result;
        if (stats) stats.tx++;
        if (pa >= 0) {
          if (!Number.isInteger(pa)) throw new FuzzFailure(`translation gave PA ${pa}`);
          return;
        }
        if (r.event === 0) return; // a silent abort
        if (stats) {
          stats.faults++;
          if (stats.events) {
            const name = EVENT_NAMES[r.event] ?? String(r.event);
            stats.events[name] = (stats.events[name] ?? 0) + 1;
          }
        }
        if (!ARCHITECTED.has(r.event))
          throw new FuzzFailure(`translation fault with event type 0x${r.event.toString(16)}`);
        if (!r.fault.record) return;
        const after = evtq();
        const mask = (2 << before.log2) - 1;
        const full =
          (before.prod & ((1 << before.log2) - 1)) === (before.cons & ((1 << before.log2) - 1)) &&
          (before.prod & mask) !== (before.cons & mask);
        const enabled = (cr0 & 4) !== 0;
        if (!enabled || abt) {
          if ((after.prod & mask) !== (before.prod & mask))
            throw new FuzzFailure('an event was written with EVENTQEN = 0 or the queue aborted');
          return;
        }
        if (full) {
          if (stats) stats.overflowed++;
          if ((after.prod & 0x8000_0000) === (after.cons & 0x8000_0000))
            throw new FuzzFailure(
              'the event queue was full and dropped a record without flagging the overflow',
            );
          return;
        }
        if ((after.prod & mask) === (before.prod & mask)) {
          if (((reg(REG.GERROR) ^ reg(REG.GERRORN)) & 4) !== 0) return; // the write aborted: GERROR.EVENTQ_ABT_ERR
          throw new FuzzFailure(
            `event 0x${r.event.toString(16)} was asked for but neither written nor flagged`,
          );
        }
        const slot = before.addr + (before.prod & ((1 << before.log2) - 1)) * 32;
        const type = mem.readU32(slot) & 0xff;
        if (type !== r.event)
          throw new FuzzFailure(
            `the record written has type 0x${type.toString(16)}, the fault 0x${r.event.toString(16)}`,
          );
        if (stats) stats.recorded++;
        return;
      }
    }
  };
  if (c.prologue) {
    run({ a: 'chain', root: 0, leaves: 16, s2: false });
    run({ a: 'chain', root: 8, leaves: 16, s2: true });
    run({ a: 'cd', index: 0, fields: linuxCd(TABLES, 1) as Record<string, number>, flips: [], inval: true });
    run({ a: 'ste', sid: 0, fields: { V: 1, Config: 5, S1ContextPtr: CDS }, flips: [], inval: true });
    const s2 = { V: 1, Config: 6, S2VMID: 1, S2T0SZ: 25, S2SL0: 1, S2PS: 2, S2AA64: 1, S2R: 1, S2PTW: 1 };
    run({ a: 'ste', sid: 1, fields: { ...s2, S2TTB: TABLES + 8 * 4096 }, flips: [], inval: true });
  }
  c.actions.forEach((act, i) => {
    step(i, act);
  });
}
