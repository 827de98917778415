/**
 * A small test-side SMMU driver: programs the device through its registers in the order Linux's
 * arm-smmu-v3 driver does (arm_smmu_device_reset), writes STEs and CDs, submits commands and reads
 * event records back from the queue. Plus helpers to build stage-2 tables (host) and stage-1 tables
 * in guest memory (IPA space).
 */
import { PhysMem } from '../../src/mm/physmem.ts';
import {
  IOMMU_CACHE,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtable,
  type PgtableMemory,
  TableHeap,
} from '../../src/pgtable/index.ts';
import {
  type CdFields,
  CMD_CFGI_STE_RANGE,
  CMD_SYNC,
  CMD_TLBI_NSNH_ALL,
  type CommandFields,
  CR0_CMDQEN,
  CR0_EVENTQEN,
  CR0_SMMUEN,
  CR2_RECINVSID,
  type DecodedEvent,
  decodeEvent,
  encodeCd,
  encodeCommand,
  encodeSte,
  REG,
  Smmu,
  type SmmuIrq,
  type SmmuOptions,
  type SteFields,
  writeReg64,
} from '../../src/smmu/index.ts';

export const STRTAB = 0x100000;
export const CMDQ = 0x200000;
export const EVTQ = 0x300000;
export const HOST_HEAP = 0x1000000;

export class TestDriver {
  readonly smmu: Smmu;
  readonly mem: PhysMem;
  readonly cmdqLog2: number;
  readonly evtqLog2: number;
  strtabLog2 = 8;

  constructor(smmu: Smmu, opts: { cmdqLog2?: number; evtqLog2?: number } = {}) {
    this.smmu = smmu;
    this.mem = smmu.mem;
    this.cmdqLog2 = opts.cmdqLog2 ?? 8;
    this.evtqLog2 = opts.evtqLog2 ?? 6;
  }

  reg(off: number): number {
    return this.smmu.readReg32(off);
  }

  write(off: number, v: number): void {
    this.smmu.writeReg32(off, v);
  }

  write64(off: number, v: number): void {
    writeReg64(this.smmu, off, v);
  }

  /** Linux arm_smmu_device_reset order: disable, tables, command queue, invalidate all, event queue, enable. */
  init(opts: { recordInvalidSid?: boolean; strtabCfg?: number; enable?: boolean } = {}): void {
    this.write(REG.CR0, 0);
    this.write(REG.CR1, 0xd75);
    this.write(REG.CR2, (opts.recordInvalidSid ?? true) ? CR2_RECINVSID : 0);
    writeReg64(this.smmu, REG.STRTAB_BASE, STRTAB);
    this.write(REG.STRTAB_BASE_CFG, opts.strtabCfg ?? this.strtabLog2);
    writeReg64(this.smmu, REG.CMDQ_BASE, CMDQ | this.cmdqLog2);
    this.write(REG.CMDQ_PROD, 0);
    this.write(REG.CMDQ_CONS, 0);
    this.write(REG.CR0, CR0_CMDQEN);
    this.cmd(CMD_CFGI_STE_RANGE, { range: 31 });
    this.cmd(CMD_TLBI_NSNH_ALL);
    this.sync();
    writeReg64(this.smmu, REG.EVENTQ_BASE, EVTQ | this.evtqLog2);
    this.write(REG.EVENTQ_PROD, 0);
    this.write(REG.EVENTQ_CONS, 0);
    this.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN);
    if (opts.enable ?? true) this.write(REG.CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
  }

  steAddr(sid: number): number {
    return STRTAB + sid * 64;
  }

  writeSte(sid: number, fields: Partial<SteFields>): Uint32Array {
    const w = encodeSte(fields);
    this.writeWords(this.steAddr(sid), w);
    return w;
  }

  writeWords(addr: number, words: ArrayLike<number>, mem: PgtableMemory = this.mem): void {
    for (let i = 0; i < words.length; i++) mem.writeU32(addr + i * 4, words[i] >>> 0);
  }

  /** Writes a command at CMDQ_PROD and moves PROD on (the SMMU consumes it at once). */
  submit(words: ArrayLike<number>): void {
    const prod = this.reg(REG.CMDQ_PROD);
    const idx = prod & ((1 << this.cmdqLog2) - 1);
    this.writeWords(CMDQ + idx * 16, words);
    const next = ((prod & ((2 << this.cmdqLog2) - 1)) + 1) & ((2 << this.cmdqLog2) - 1);
    this.write(REG.CMDQ_PROD, next);
  }

  cmd(opcode: number, fields: CommandFields = {}): void {
    this.submit(encodeCommand(opcode, fields));
  }

  sync(fields: CommandFields = {}): void {
    this.cmd(CMD_SYNC, fields);
  }

  /** Raw event records between CONS and PROD; CONS moves past them. */
  rawEvents(): Uint32Array[] {
    const out: Uint32Array[] = [];
    const mask = (2 << this.evtqLog2) - 1;
    let cons = this.reg(REG.EVENTQ_CONS);
    const prod = this.reg(REG.EVENTQ_PROD);
    while ((cons & mask) !== (prod & mask)) {
      const idx = cons & ((1 << this.evtqLog2) - 1);
      const w = new Uint32Array(8);
      for (let i = 0; i < 8; i++) w[i] = this.mem.readU32(EVTQ + idx * 32 + i * 4);
      out.push(w);
      cons = (cons & 0x80000000) | (((cons & mask) + 1) & mask);
    }
    this.write(REG.EVENTQ_CONS, cons >>> 0);
    return out;
  }

  events(): DecodedEvent[] {
    return this.rawEvents().map(decodeEvent);
  }
}

/** The CD Linux writes for a stage-1 domain (6.18-iommufd cd_write defaults: 48-bit 4K, IPS 44, R=A=ASET=1). */
export function linuxCd(ttb0: number, asid: number, over: Partial<CdFields> = {}): Partial<CdFields> {
  return {
    T0SZ: 16,
    TG0: 0,
    IR0: 1,
    OR0: 1,
    SH0: 3,
    EPD1: 1,
    V: 1,
    IPS: 4,
    AA64: 1,
    R: 1,
    A: 1,
    ASET: 1,
    ASID: asid,
    TTB0: ttb0,
    MAIR0: 0xf404ff44,
    ...over,
  };
}

/** Writes a CD at `addr` in `mem` (PA space, or a guest's IPA space through `GuestMem`). */
export function writeCd(mem: PgtableMemory, addr: number, fields: Partial<CdFields>): Uint32Array {
  const w = encodeCd(fields);
  for (let i = 0; i < 16; i++) mem.writeU32(addr + i * 4, w[i]);
  return w;
}

/** STE stage-2 fields from Linux's io-pgtable VTCR, as arm_smmu_make_s2_domain_ste builds them. */
export function s2SteFields(s2: IoPgtable, vmid: number): Partial<SteFields> {
  return {
    S2VMID: vmid,
    S2T0SZ: s2.tcr.tsz,
    S2SL0: s2.tcr.sl,
    S2IR0: s2.tcr.irgn,
    S2OR0: s2.tcr.orgn,
    S2SH0: s2.tcr.sh,
    S2TG: s2.tcr.tg,
    S2PS: s2.tcr.ps,
    S2AA64: 1,
    S2PTW: 1,
    S2R: 1,
    S2TTB: s2.pgd,
  };
}

/** A guest's view of memory: IPAs translated through the host's stage-2 tables. */
export class GuestMem implements PgtableMemory {
  readonly mem: PhysMem;
  readonly s2: IoPgtable;
  constructor(mem: PhysMem, s2: IoPgtable) {
    this.mem = mem;
    this.s2 = s2;
  }
  pa(ipa: number): number {
    const pa = this.s2.iovaToPhys(ipa);
    if (pa === 0) throw new Error(`test bug: IPA 0x${ipa.toString(16)} not mapped`);
    return pa;
  }
  readU32(ipa: number): number {
    return this.mem.readU32(this.pa(ipa));
  }
  writeU32(ipa: number, v: number): void {
    this.mem.writeU32(this.pa(ipa), v);
  }
}

/**
 * A bare SMMU (default preset qemu-virt) after `init()`, with a zeroing heap for host tables at
 * HOST_HEAP; `irqs` logs every interrupt line signalled (unless `opts.interrupt` replaces the logger).
 */
export function plainSetup(opts: SmmuOptions & { evtqLog2?: number } = {}) {
  const mem = new PhysMem();
  const irqs: SmmuIrq[] = [];
  const smmu = new Smmu(mem, { preset: 'qemu-virt', interrupt: (l) => irqs.push(l), ...opts });
  const drv = new TestDriver(smmu, { evtqLog2: opts.evtqLog2 });
  drv.init();
  const heap = new TableHeap(mem, HOST_HEAP, 0x1000000, (a, n) => mem.fill(a, n, 0));
  return { mem, smmu, drv, heap, irqs };
}

/**
 * A Linux-like stage-1 domain on StreamID `sid` of a plainSetup: 48-bit 4K tables in PA space, its CD
 * (linuxCd, ASID 1 unless `cd` says otherwise) at 0x400000 + sid * 64, STE Config 5.
 */
export function s1Domain(
  p: { mem: PhysMem; heap: TableHeap; drv: TestDriver },
  sid: number,
  cd: Partial<CdFields> = {},
): IoPgtable {
  const s1 = IoPgtable.create(p.mem, { stage: 1, pgsizeBitmap: 0x40201000, ias: 48, oas: 44 }, p.heap)!;
  writeCd(p.mem, 0x400000 + sid * 64, linuxCd(s1.pgd, 1, cd));
  p.drv.writeSte(sid, { V: 1, Config: 5, S1ContextPtr: 0x400000 + sid * 64 });
  return s1;
}

/** The stage-1 descriptor read at `level` of a cold walk of `va` (4-level stage 1 from L0): to edit it in place. */
export function s1Read(smmu: Smmu, sid: number, va: number, level: number) {
  return smmu.walkTrace(sid, -1, va).trace.walkReads.filter((r) => r.kind === 's1')[level];
}

export const RW = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
/** Guest RAM: IPA 0x4000_0000 -> PA 0x8000_1000 (offset by 4 KiB so stage 2 uses 4K pages: 4 levels). */
export const GUEST_IPA = 0x4000_0000;
export const GUEST_PA = 0x8000_1000;
export const GUEST_SIZE = 0x40_0000;

export interface NestedSetup {
  mem: PhysMem;
  smmu: Smmu;
  drv: TestDriver;
  heap: TableHeap;
  s2: IoPgtable;
  guest: GuestMem;
  s1: IoPgtable;
  cdIpa: number;
  sid: number;
  vmid: number;
  asid: number;
}

/**
 * A nested stream: stage 2 (host, 44-bit IPA, 4 levels) maps guest RAM with 4K pages; the guest's CD
 * and 4-level stage-1 tables (48-bit VA) live in guest RAM at IPAs. STE Config = 7.
 */
export function nestedSetup(
  opts: SmmuOptions & { sid?: number; vmid?: number; asid?: number } = {},
): NestedSetup {
  const { mem, smmu, drv, heap } = plainSetup(opts);
  const s2 = IoPgtable.create(mem, { stage: 2, pgsizeBitmap: 0x40201000, ias: 44, oas: 44 }, heap);
  if (s2 === null) throw new Error('test bug');
  if (s2.map(GUEST_IPA, GUEST_PA, GUEST_SIZE, RW) !== 0) throw new Error('test bug');
  const guest = new GuestMem(mem, s2);
  const gheap = new TableHeap(guest, GUEST_IPA + 0x100000, 0x100000);
  const s1 = IoPgtable.create(guest, { stage: 1, pgsizeBitmap: 0x40201000, ias: 48, oas: 44 }, gheap);
  if (s1 === null) throw new Error('test bug');
  const sid = opts.sid ?? 8;
  const vmid = opts.vmid ?? 1;
  const asid = opts.asid ?? 1;
  const cdIpa = GUEST_IPA + 0x10000;
  writeCd(guest, cdIpa, linuxCd(s1.pgd, asid));
  drv.writeSte(sid, {
    V: 1,
    Config: 7,
    S1ContextPtr: cdIpa,
    S1CIR: 1,
    S1COR: 1,
    S1CSH: 3,
    ...s2SteFields(s2, vmid),
  });
  return { mem, smmu, drv, heap, s2, guest, s1, cdIpa, sid, vmid, asid };
}
