/**
 * A hostile guest: the VMM's virtual SMMUv3 (src/vmm/vsmmu.ts) and the type-6 nesting path fed random
 * register values, vSTEs, CDs, stage-1 descriptors and commands written into guest RAM, with the
 * device doing DMA and its faults forwarded into the guest's event queue. Whatever the guest writes:
 *  - nothing throws (a bad queue or table address is an abort, as the architecture has it);
 *  - the device still reaches only guest RAM, on frames pinned for the VMM (the host's isolation
 *    invariant, checked from the nested STE's stage-2 table bytes);
 *  - an event the vSMMU cannot write is flagged: queue full -> EVENTQ_PROD.OVFLG differs from
 *    EVENTQ_CONS.OVACKFLG; queue outside guest RAM -> GERROR.EVENTQ_ABT_ERR; or EVENTQEN = 0.
 */

import fc from 'fast-check';
import { GuestSmmuDriver } from '../../src/guest/smmu-driver.ts';
import { Host } from '../../src/host/host.ts';
import {
  CMD_CFGI_CD,
  CMD_CFGI_STE,
  CMD_SYNC,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_VA,
  encodeCd,
  encodeCommand,
  encodeSte,
  REG,
} from '../../src/smmu/index.ts';
import { Vmm } from '../../src/vmm/vmm.ts';
import { checkIsolation, type Tracked } from './invariants.ts';
import { FuzzFailure, type World } from './world.ts';

const IPA = 0x4000_0000;
const RAM = 4 << 20;
/** Guest RAM: the driver's structures and tables from 1 MiB, data below. */
const TABLES = IPA + (1 << 20);

export type GuestAction =
  | { a: 'reg'; off: number; value: number }
  | { a: 'ste'; words: number[]; sane: boolean; inval: boolean }
  | { a: 'cd'; words: number[]; inval: boolean }
  | { a: 'mem'; off: number; lo: number; hi: number }
  | { a: 'cmd'; opcode: number; words?: number[] }
  | { a: 'map'; va: number; page: number; ro: boolean }
  | { a: 'dma'; iova: number; len: number; dir: 0 | 1 }
  | { a: 'drain'; ack: boolean };

export interface GuestCase {
  evtqLog2: number;
  actions: GuestAction[];
}

const small = (n: number) => fc.integer({ min: 0, max: n });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const QUEUE_REGS = [
  REG.CR0,
  REG.STRTAB_BASE,
  REG.STRTAB_BASE + 4,
  REG.CMDQ_BASE,
  REG.CMDQ_BASE + 4,
  REG.CMDQ_PROD,
  REG.CMDQ_CONS,
  REG.EVENTQ_BASE,
  REG.EVENTQ_BASE + 4,
  REG.EVENTQ_PROD,
  REG.EVENTQ_CONS,
  REG.GERRORN,
];

const actionArb: fc.Arbitrary<GuestAction> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      a: fc.constant('reg' as const),
      off: fc.constantFrom(...QUEUE_REGS),
      value: fc.oneof(
        fc.constantFrom(
          0,
          0xd,
          0xc,
          0x8,
          0x4,
          IPA + 0x1000,
          IPA + 0x2000 + 4,
          IPA + RAM,
          0x1_0000,
          0x8000_0000,
        ),
        small(0xffff),
        u32,
      ),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      a: fc.constant('ste' as const),
      words: fc.array(u32, { minLength: 16, maxLength: 16 }),
      sane: fc.boolean(),
      inval: fc.constantFrom(true, true, false),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      a: fc.constant('cd' as const),
      words: fc.array(u32, { minLength: 16, maxLength: 16 }),
      inval: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      a: fc.constant('mem' as const),
      off: fc.oneof(
        small(0x3ff).map((i) => (1 << 20) + i * 8),
        small(RAM / 8 - 1).map((i) => i * 8),
      ),
      lo: fc.oneof(
        fc.constantFrom(3, 0x743, 0x7c3, 0),
        u32,
        small(RAM / 4096 - 1).map((p) => (IPA + p * 4096 + 3) >>> 0),
      ),
      hi: fc.constantFrom(0, 0, 0, 0xffff, 0x0060_0000, 0xffff_ffff),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.record({
        a: fc.constant('cmd' as const),
        opcode: fc.constantFrom(CMD_CFGI_STE, CMD_CFGI_CD, CMD_TLBI_NH_ALL, CMD_TLBI_NH_VA, CMD_SYNC),
      }),
      fc.record({
        a: fc.constant('cmd' as const),
        opcode: small(255),
        words: fc.array(u32, { minLength: 4, maxLength: 4 }),
      }),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      a: fc.constant('map' as const),
      va: small(15).map((i) => i * 0x1000),
      page: small(255),
      ro: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      a: fc.constant('dma' as const),
      iova: fc.oneof(
        small(15).map((i) => i * 0x1000),
        fc.constantFrom(IPA, 0x10_0000, 2 ** 40),
      ),
      len: fc.constantFrom(4, 64, 0x1000),
      dir: fc.constantFrom(0 as const, 1 as const),
    }),
  },
  { weight: 2, arbitrary: fc.record({ a: fc.constant('drain' as const), ack: fc.boolean() }) },
);

export const guestCaseArb: fc.Arbitrary<GuestCase> = fc.record({
  evtqLog2: fc.constantFrom(1, 2, 5),
  actions: fc.array(actionArb, { maxLength: 50, size: 'large' }),
});

export interface GuestStats {
  delivered: number;
  dropped: number;
}

/** Runs one hostile-guest case on a 6.1 SMMUv3 host with vfio-nest's stage-1 binding extension. */
export function runGuestCase(c: GuestCase, stats?: GuestStats): void {
  const host = new Host({ kernel: '6.1', iommu: 'smmuv3', nestBind: true });
  const vmm = new Vmm(host, { ramSize: RAM, ipaBase: IPA });
  const guest = new GuestSmmuDriver(vmm.vsmmu, vmm.ram, TABLES, IPA + RAM);
  guest.init();
  guest.attachStage1(vmm.vsid, 1);
  const v = vmm.vsmmu;
  // The guest's event queue at its driver's address, with the case's size.
  const evtqBase = v.readReg32(REG.EVENTQ_BASE) + v.readReg32(REG.EVENTQ_BASE + 4) * 2 ** 32;
  v.writeReg32(REG.CR0, v.readReg32(REG.CR0) & ~4);
  v.writeReg32(REG.EVENTQ_BASE, ((evtqBase - (evtqBase % 32)) | c.evtqLog2) >>> 0);
  v.writeReg32(REG.EVENTQ_PROD, 0);
  v.writeReg32(REG.EVENTQ_CONS, 0);
  v.writeReg32(REG.CR0, v.readReg32(REG.CR0) | 4);
  const world = {
    host,
    proc: vmm.proc,
    procs: [vmm.proc],
    shadow: null,
    tracked: { ranges: [], seen: new Map() } as Tracked,
  } as unknown as World;

  // Every record the vSMMU takes is written, or not written and flagged.
  const deliver = v.deliverEvent.bind(v);
  v.deliverEvent = (words, vsid) => {
    const r = (off: number) => v.readReg32(off);
    const prod = r(REG.EVENTQ_PROD);
    const cons = r(REG.EVENTQ_CONS);
    const ok = deliver(words, vsid);
    if (stats) ok ? stats.delivered++ : stats.dropped++;
    if (!ok && r(REG.CR0) & 4) {
      const flagged = (r(REG.EVENTQ_PROD) & 0x8000_0000) !== (r(REG.EVENTQ_CONS) & 0x8000_0000);
      const aborted = ((r(REG.GERROR) ^ r(REG.GERRORN)) & 4) !== 0;
      if (!flagged && !aborted)
        throw new FuzzFailure(
          `the vSMMU dropped an event record without flagging it (PROD 0x${prod.toString(16)} CONS 0x${cons.toString(16)} -> PROD 0x${r(REG.EVENTQ_PROD).toString(16)})`,
        );
    }
    return ok;
  };

  const cmdq = (words: ArrayLike<number>) => {
    const b = v.readReg32(REG.CMDQ_BASE) + v.readReg32(REG.CMDQ_BASE + 4) * 2 ** 32;
    const log2 = Math.min(b % 32, 8);
    const addr = b - (b % 32);
    const prod = v.readReg32(REG.CMDQ_PROD);
    const slot = addr + (prod & ((1 << log2) - 1)) * 16;
    if (vmm.ram.contains(slot, 16))
      for (let i = 0; i < 4; i++) vmm.ram.writeU32(slot + i * 4, words[i] >>> 0);
    v.writeReg32(REG.CMDQ_PROD, (prod + 1) & ((2 << log2) - 1));
  };
  const run = (act: GuestAction) => {
    switch (act.a) {
      case 'reg':
        v.writeReg32(act.off, act.value);
        return;
      case 'ste': {
        const s = guest.streams.get(vmm.vsid);
        const w =
          act.sane && s ? encodeSte({ V: 1, Config: 5, S1ContextPtr: s.cd }) : Uint32Array.from(act.words);
        const b = v.readReg32(REG.STRTAB_BASE) + v.readReg32(REG.STRTAB_BASE + 4) * 2 ** 32;
        const at = b - (b % 64) + vmm.vsid * 64;
        if (vmm.ram.contains(at, 64)) for (let i = 0; i < 16; i++) vmm.ram.writeU32(at + i * 4, w[i]);
        if (act.inval) {
          cmdq(encodeCommand(CMD_CFGI_STE, { sid: vmm.vsid, leaf: 1 }));
          cmdq(encodeCommand(CMD_SYNC, {}));
        }
        return;
      }
      case 'cd': {
        const s = guest.streams.get(vmm.vsid);
        if (s === undefined) return;
        const w = encodeCd({ ...Object.fromEntries(Object.entries({})), V: 1 });
        for (let i = 0; i < 16; i++) w[i] = act.words[i] >>> 0;
        for (let i = 0; i < 16; i++) vmm.ram.writeU32(s.cd + i * 4, w[i]);
        if (act.inval) {
          cmdq(encodeCommand(CMD_CFGI_CD, { sid: vmm.vsid, ssid: 0, leaf: 1 }));
          cmdq(encodeCommand(CMD_SYNC, {}));
        }
        return;
      }
      case 'mem':
        vmm.ram.writeU32(IPA + act.off, act.lo >>> 0);
        vmm.ram.writeU32(IPA + act.off + 4, act.hi >>> 0);
        return;
      case 'cmd':
        cmdq(act.words ?? encodeCommand(act.opcode, { sid: vmm.vsid, asid: 1, addr: 0x1000, leaf: 1 }));
        return;
      case 'map':
        if (guest.streams.has(vmm.vsid))
          guest.map(vmm.vsid, act.va, IPA + act.page * 4096, 0x1000, act.ro ? 1 : 3);
        return;
      case 'dma':
        vmm.eduDma(act.iova, act.len, act.dir);
        return;
      case 'drain': {
        const prod = v.readReg32(REG.EVENTQ_PROD);
        const cons = v.readReg32(REG.EVENTQ_CONS);
        v.writeReg32(REG.EVENTQ_CONS, ((prod & 0x7fff_ffff) | ((act.ack ? prod : cons) & 0x8000_0000)) >>> 0);
        return;
      }
    }
  };
  c.actions.forEach((act, i) => {
    try {
      run(act);
      checkIsolation(world);
      const gerror = v.readReg32(REG.GERROR);
      if (gerror & ~0x1fd)
        throw new FuzzFailure(`the vSMMU's GERROR 0x${gerror.toString(16)} has bits no architecture defines`);
    } catch (e) {
      const what = e instanceof FuzzFailure ? e.message : `exception: ${(e as Error).stack ?? e}`;
      throw new FuzzFailure(`${what}\n  guest action ${i}: ${JSON.stringify(act)}`);
    }
  });
  vmm.shutdown();
  if (vmm.proc.mm.pinnedPages !== 0 || vmm.proc.mm.lockedVm !== 0)
    throw new FuzzFailure('the VMM exited with pages still pinned or charged');
}
