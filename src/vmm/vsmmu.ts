/**
 * The virtual SMMUv3 a VMM presents to its guest (as QEMU's vSMMU does for nesting): a register file
 * the guest programs, with the stream table, command queue and event queue in guest RAM. The VMM
 * reads the guest's commands: a changed vSTE becomes a bind of the guest's stage 1, a TLB or CD
 * invalidation is forwarded to the host, CMD_SYNC completes at once. Stage-1 faults the host
 * reports are written into the guest's event queue with the virtual StreamID.
 */

import type { GuestRam } from '../guest/ram.ts';
import type { SmmuMmio } from '../guest/smmu-driver.ts';
import {
  CERROR_ABT,
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_SYNC,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  CR0_CMDQEN,
  CR0_EVENTQEN,
  decodeCommand,
  GERROR_CMDQ_ERR,
  GERROR_EVENTQ_ABT_ERR,
  REG,
} from '../smmu/index.ts';

/** What the vSMMU asks of its VMM. */
export interface VirtualSmmuBackend {
  /** The guest changed (or invalidated) the STE of `vsid`. */
  steChanged(vsid: number): void;
  /** The guest asked for a stage-1 TLB invalidation: all, an ASID, or pages of a VA range. */
  invalidateTlb(inv: { asid: number | null; addr: number | null; pages: number; leaf: boolean }): void;
  /** The guest invalidated a CD (ssid) or all of a stream's CDs (null). */
  invalidateCd(vsid: number, ssid: number | null): void;
  /**
   * Optional: sees every guest command first, as its four 32-bit words; true when it took the command
   * (an iommufd VMM passes TLBI and CFGI_CD commands to the kernel as they are).
   */
  command?(c: ReturnType<typeof decodeCommand>, words: Uint32Array): boolean;
}

export class VirtualSmmu implements SmmuMmio {
  private readonly regs = new Map<number, number>();
  /** Records the guest could not take because its event queue was full (the overflow flag toggled). */
  dropped = 0;

  constructor(
    readonly ram: GuestRam,
    readonly backend: VirtualSmmuBackend,
    /** ID registers: the host's, with stage 2 hidden (the guest owns stage 1 only). */
    idr: { idr0: number; idr1: number; idr3: number; idr5: number },
  ) {
    this.regs.set(REG.IDR0, (idr.idr0 & ~1 & ~(3 << 27)) >>> 0); // no S2P; linear stream table only
    this.regs.set(REG.IDR1, idr.idr1);
    this.regs.set(REG.IDR3, idr.idr3);
    this.regs.set(REG.IDR5, idr.idr5);
    this.regs.set(REG.AIDR, 1);
  }

  private reg(off: number): number {
    return this.regs.get(off) ?? 0;
  }

  private base(off: number): number {
    return this.reg(off) + this.reg(off + 4) * 2 ** 32;
  }

  readReg32(off: number): number {
    if (off === REG.CR0ACK) return this.reg(REG.CR0);
    return this.reg(off);
  }

  writeReg32(off: number, value: number): void {
    // GERROR is the SMMU's: the guest acknowledges through GERRORN.
    if (off === REG.GERROR) return;
    this.regs.set(off, value >>> 0);
    if (off === REG.CMDQ_PROD && this.reg(REG.CR0) & CR0_CMDQEN) this.consume();
    // Acknowledging a command error lets consumption go on (IHI 0070 §7.1).
    if (off === REG.GERRORN && this.reg(REG.CR0) & CR0_CMDQEN) this.consume();
  }

  /** A queue's base and size; LOG2SIZE is capped at IDR1.CMDQS / EVENTQS, as on the hardware. */
  private queue(off: number): { addr: number; log2: number } {
    const b = this.base(off);
    const max = (this.reg(REG.IDR1) >>> (off === REG.CMDQ_BASE ? 21 : 16)) & 0x1f;
    const log2 = Math.min(b % 32, max);
    const raw = b - (b % 32) - Math.floor(b / 2 ** 56) * 2 ** 56;
    const bytes = Math.max((off === REG.CMDQ_BASE ? 16 : 32) * 2 ** log2, 32);
    return { addr: Math.floor(raw / bytes) * bytes, log2 };
  }

  /** Raises a global error unless it is already active (GERROR bit toggled against GERRORN). */
  private gerror(bit: number): void {
    const g = this.reg(REG.GERROR);
    if (((g ^ this.reg(REG.GERRORN)) & bit) === 0) this.regs.set(REG.GERROR, (g ^ bit) >>> 0);
  }

  private gerrorActive(bit: number): boolean {
    return ((this.reg(REG.GERROR) ^ this.reg(REG.GERRORN)) & bit) !== 0;
  }

  /** Consumes the guest's commands from CONS to PROD. */
  private consume(): void {
    if (this.gerrorActive(GERROR_CMDQ_ERR)) return;
    const { addr, log2 } = this.queue(REG.CMDQ_BASE);
    const wrap = (2 << log2) - 1;
    let cons = this.reg(REG.CMDQ_CONS) & wrap;
    const prod = this.reg(REG.CMDQ_PROD) & wrap;
    while (cons !== prod) {
      const slot = addr + (cons & ((1 << log2) - 1)) * 16;
      if (!this.ram.contains(slot, 16)) {
        // A command the SMMU cannot fetch: CERROR_ABT in CMDQ_CONS.ERR, GERROR.CMDQ_ERR, stop.
        this.regs.set(REG.CMDQ_CONS, (cons | (CERROR_ABT << 24)) >>> 0);
        this.gerror(GERROR_CMDQ_ERR);
        return;
      }
      const w = Uint32Array.of(
        this.ram.readU32(slot),
        this.ram.readU32(slot + 4),
        this.ram.readU32(slot + 8),
        this.ram.readU32(slot + 12),
      );
      const c = decodeCommand(w[0], w[1], w[2], w[3]);
      if (this.backend.command?.(c, w) !== true) this.execute(c);
      cons = (cons + 1) & wrap;
    }
    this.regs.set(REG.CMDQ_CONS, cons);
  }

  private execute(c: ReturnType<typeof decodeCommand>): void {
    const b = this.backend;
    switch (c.opcode) {
      case CMD_CFGI_STE:
        b.steChanged(c.sid);
        break;
      case CMD_CFGI_STE_RANGE: {
        const n = c.range >= 31 ? 2 ** 32 : 2 ** (c.range + 1);
        const first = c.range >= 31 ? 0 : Math.floor(c.sid / n) * n;
        b.steChanged(first === 0 && n === 2 ** 32 ? -1 : first);
        break;
      }
      case CMD_CFGI_CD:
        b.invalidateCd(c.sid, c.ssid);
        break;
      case CMD_CFGI_CD_ALL:
        b.invalidateCd(c.sid, null);
        break;
      case CMD_TLBI_NH_ALL:
      case CMD_TLBI_NSNH_ALL:
        b.invalidateTlb({ asid: null, addr: null, pages: 0, leaf: false });
        break;
      case CMD_TLBI_NH_ASID:
        b.invalidateTlb({ asid: c.asid, addr: null, pages: 0, leaf: false });
        break;
      case CMD_TLBI_NH_VA:
      case CMD_TLBI_NH_VAA: {
        // A range command covers (NUM + 1) << SCALE pages of the TG granule; TG 0 is one page.
        const pages = c.tg === 0 ? 1 : (c.num + 1) * 2 ** c.scale;
        b.invalidateTlb({
          asid: c.opcode === CMD_TLBI_NH_VA ? c.asid : null,
          addr: c.addr,
          pages,
          leaf: c.leaf === 1,
        });
        break;
      }
      case CMD_SYNC:
        break;
      default:
        break;
    }
  }

  /** Writes one event record into the guest's event queue (or counts it dropped when full or off). */
  deliverEvent(words: [bigint, bigint, bigint, bigint], vsid: number): boolean {
    if (!(this.reg(REG.CR0) & CR0_EVENTQEN)) return false;
    // After an abort on the queue, nothing more is written until the guest acknowledges it.
    if (this.gerrorActive(GERROR_EVENTQ_ABT_ERR)) return false;
    const { addr, log2 } = this.queue(REG.EVENTQ_BASE);
    const mask = (2 << log2) - 1;
    const prod = this.reg(REG.EVENTQ_PROD);
    const cons = this.reg(REG.EVENTQ_CONS);
    const full =
      (prod & ((1 << log2) - 1)) === (cons & ((1 << log2) - 1)) &&
      (prod & (1 << log2)) !== (cons & (1 << log2));
    if (full) {
      // The record is lost; the overflow condition is entered: OVFLG toggles unless an overflow is
      // already waiting for the guest's acknowledgement (IHI 0070 §7.4). Toggling it on every drop
      // would hide the overflow from the guest after two.
      this.dropped++;
      if ((prod & 0x8000_0000) === (cons & 0x8000_0000))
        this.regs.set(REG.EVENTQ_PROD, (prod ^ 0x8000_0000) >>> 0);
      return false;
    }
    const w0 = (words[0] & 0xffff_ffffn) | (BigInt(vsid) << 32n);
    const q = [w0, words[1], words[2], words[3]];
    const slot = addr + (prod & ((1 << log2) - 1)) * 32;
    if (!this.ram.contains(slot, 32)) {
      // The queue is not in guest RAM: the write aborts, GERROR.EVENTQ_ABT_ERR (IHI 0070 §7.2).
      this.dropped++;
      this.gerror(GERROR_EVENTQ_ABT_ERR);
      return false;
    }
    q.forEach((w, i) => {
      this.ram.writeU32(slot + 8 * i, Number(w & 0xffff_ffffn));
      this.ram.writeU32(slot + 8 * i + 4, Number(w >> 32n));
    });
    this.regs.set(REG.EVENTQ_PROD, ((prod & 0x8000_0000) | (((prod & mask) + 1) & mask)) >>> 0);
    return true;
  }
}
