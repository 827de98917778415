/**
 * The guest OS's SMMUv3 driver: it programs the (virtual) SMMU the VMM presents through its registers,
 * and keeps its stream table, queues, context descriptors and stage-1 page tables in guest RAM, at
 * guest-physical addresses, the way Linux's arm-smmu-v3 does on bare metal: a linear stream table,
 * one CD per stream, 48-bit 4K stage-1 tables written with io-pgtable's encodings.
 */

import { IoPgtable } from '../pgtable/index.ts';
import {
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_SYNC,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NSNH_ALL,
  type CommandFields,
  CR0_CMDQEN,
  CR0_EVENTQEN,
  CR0_SMMUEN,
  type DecodedEvent,
  decodeEvent,
  EVENTQ_OVFLG,
  encodeCd,
  encodeCommand,
  encodeSte,
  queueEmpty,
  queueIndex,
  queueNext,
  queuePos,
  REG,
  S1DSS_SSID0,
  S1FMT_LINEAR,
  STE_CFG_S1_TRANS,
  type SteFields,
  writeReg64,
} from '../smmu/index.ts';
import { GuestAllocator, type GuestRam } from './ram.ts';

/** What the guest can touch of an SMMU: its 32-bit registers. */
export interface SmmuMmio {
  readReg32(off: number): number;
  writeReg32(off: number, value: number): void;
}

export interface GuestStream {
  vsid: number;
  asid: number;
  pgtbl: IoPgtable;
  cd: number;
}

const STRTAB_LOG2 = 8;
const CMDQ_LOG2 = 6;
const EVTQ_LOG2 = 6;

export class GuestSmmuDriver {
  readonly alloc: GuestAllocator;
  readonly strtab: number;
  readonly cmdq: number;
  readonly evtq: number;
  readonly streams = new Map<number, GuestStream>();

  constructor(
    readonly mmio: SmmuMmio,
    readonly ram: GuestRam,
    /** Guest RAM the driver may use for its structures: [heapBase, heapEnd). */
    heapBase: number,
    heapEnd: number,
  ) {
    this.alloc = new GuestAllocator(ram, heapBase, heapEnd);
    this.strtab = this.must(this.alloc.allocTable(64 << STRTAB_LOG2));
    this.cmdq = this.must(this.alloc.allocTable(16 << CMDQ_LOG2));
    this.evtq = this.must(this.alloc.allocTable(32 << EVTQ_LOG2));
  }

  private must(ipa: number): number {
    if (ipa < 0) throw new Error('guest: out of memory for the SMMU structures');
    return ipa;
  }

  /** Writes a structure's words into guest RAM, word 0 (with V) last. */
  private writeWords(at: number, w: Uint32Array): void {
    for (let i = w.length - 1; i >= 0; i--) this.ram.writeU32(at + i * 4, w[i]);
  }

  /** Reset in the order Linux uses: tables, command queue, invalidate all, event queue, enable. */
  init(): void {
    const m = this.mmio;
    m.writeReg32(REG.CR0, 0);
    writeReg64(m, REG.STRTAB_BASE, this.strtab);
    m.writeReg32(REG.STRTAB_BASE_CFG, STRTAB_LOG2);
    writeReg64(m, REG.CMDQ_BASE, this.cmdq + CMDQ_LOG2);
    m.writeReg32(REG.CMDQ_PROD, 0);
    m.writeReg32(REG.CMDQ_CONS, 0);
    m.writeReg32(REG.CR0, CR0_CMDQEN);
    this.commands([
      [CMD_CFGI_STE_RANGE, { range: 31 }],
      [CMD_TLBI_NSNH_ALL, {}],
    ]);
    writeReg64(m, REG.EVENTQ_BASE, this.evtq + EVTQ_LOG2);
    m.writeReg32(REG.EVENTQ_PROD, 0);
    m.writeReg32(REG.EVENTQ_CONS, 0);
    m.writeReg32(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
  }

  /** Puts commands and a CMD_SYNC on the command queue and rings the doorbell (CMDQ_PROD). */
  commands(cmds: [number, CommandFields][]): void {
    let prod = queuePos(this.mmio.readReg32(REG.CMDQ_PROD), CMDQ_LOG2);
    for (const [op, f] of [...cmds, [CMD_SYNC, {}] as [number, CommandFields]]) {
      this.writeWords(this.cmdq + queueIndex(prod, CMDQ_LOG2) * 16, encodeCommand(op, f));
      prod = queueNext(prod, CMDQ_LOG2);
    }
    this.mmio.writeReg32(REG.CMDQ_PROD, prod);
  }

  /** Writes the STE of a virtual StreamID and invalidates it (CFGI_STE + SYNC). */
  writeSte(vsid: number, fields: Partial<SteFields>): void {
    this.writeWords(this.strtab + vsid * 64, encodeSte(fields));
    this.commands([[CMD_CFGI_STE, { sid: vsid, leaf: 1 }]]);
  }

  /**
   * Gives a stream a stage-1 domain: 48-bit 4K tables in guest RAM, a CD with `asid`, and an STE that
   * translates (Config 5) through it.
   */
  attachStage1(vsid: number, asid: number): GuestStream {
    const pgtbl = IoPgtable.create(
      this.ram,
      { stage: 1, pgsizeBitmap: 0x4020_1000, ias: 48, oas: 44 },
      this.alloc,
    );
    if (pgtbl === null) throw new Error('guest: cannot allocate stage-1 tables');
    const cd = this.must(this.alloc.allocTable(64));
    this.writeWords(
      cd,
      encodeCd({
        T0SZ: pgtbl.tcr.tsz,
        TG0: pgtbl.tcr.tg,
        IR0: pgtbl.tcr.irgn,
        OR0: pgtbl.tcr.orgn,
        SH0: pgtbl.tcr.sh,
        EPD1: 1,
        V: 1,
        IPS: pgtbl.tcr.ps,
        AA64: 1,
        R: 1,
        A: 1,
        ASET: 1,
        ASID: asid,
        TTB0: pgtbl.pgd,
        MAIR0: pgtbl.mair,
      }),
    );
    const s: GuestStream = { vsid, asid, pgtbl, cd };
    this.streams.set(vsid, s);
    this.writeSte(vsid, {
      V: 1,
      Config: STE_CFG_S1_TRANS,
      S1Fmt: S1FMT_LINEAR,
      S1ContextPtr: cd,
      S1CDMax: 0,
      S1DSS: S1DSS_SSID0,
      S1CIR: 1,
      S1COR: 1,
      S1CSH: 3,
    });
    return s;
  }

  private stream(vsid: number): GuestStream {
    const s = this.streams.get(vsid);
    if (s === undefined) throw new Error(`guest: no stage-1 domain on vSID ${vsid}`);
    return s;
  }

  /** Maps guest VA -> IPA in a stream's stage 1 (no invalidation needed: new entries). Returns 0 or -errno. */
  map(vsid: number, va: number, ipa: number, size: number, prot: number): number {
    return this.stream(vsid).pgtbl.map(va, ipa, size, prot);
  }

  /** Unmaps and invalidates the TLB for the range by VA and ASID (TLBI_NH_VA per page + SYNC). */
  unmap(vsid: number, va: number, size: number): number {
    const s = this.stream(vsid);
    const n = s.pgtbl.unmap(va, size);
    const cmds: [number, CommandFields][] = [];
    for (let a = va; a < va + n; a += 0x1000) cmds.push([CMD_TLBI_NH_VA, { asid: s.asid, addr: a, leaf: 1 }]);
    this.commands(cmds);
    return n;
  }

  /** TLBI_NH_VA for one page of a stream (what a guest does after changing a PTE). */
  invalidateVa(vsid: number, va: number, asid = this.stream(vsid).asid): void {
    this.commands([[CMD_TLBI_NH_VA, { asid, addr: va, leaf: 1 }]]);
  }

  invalidateAsid(vsid: number): void {
    this.commands([[CMD_TLBI_NH_ASID, { asid: this.stream(vsid).asid }]]);
  }

  /** Reads the event records between CONS and PROD and moves CONS past them. */
  events(): DecodedEvent[] {
    let cons = this.mmio.readReg32(REG.EVENTQ_CONS);
    const prod = this.mmio.readReg32(REG.EVENTQ_PROD);
    const out: DecodedEvent[] = [];
    while (!queueEmpty(prod, cons, EVTQ_LOG2)) {
      const slot = this.evtq + queueIndex(cons, EVTQ_LOG2) * 32;
      const w = new Uint32Array(8);
      for (let i = 0; i < 8; i++) w[i] = this.ram.readU32(slot + i * 4);
      out.push(decodeEvent(w));
      cons = queueNext(cons, EVTQ_LOG2);
    }
    // Overflow acknowledged by copying PROD.OVFLG into CONS.OVACKFLG (whatever CONS held there).
    this.mmio.writeReg32(REG.EVENTQ_CONS, (queuePos(cons, EVTQ_LOG2) | (prod & EVENTQ_OVFLG)) >>> 0);
    return out;
  }
}
