/**
 * The SMMUv3 device: its register file (IHI 0070 §6), programmed by a driver with 32-bit accesses
 * (a 64-bit register is two halves at off and off + 4), the command and event queues in memory, the
 * configuration cache and TLB, and DMA through the translation.
 *
 * Invalidation commands take effect when a later CMD_SYNC is consumed (IHI 0070 §4.3.8, §4.7.3):
 * until then cached STEs, CDs and translations stay in use even after memory changed. Registers that
 * the architecture guards by an enable are IGNORED when written while enabled (the SMMUv3.2 rule).
 */
import type { PhysMem } from '../mm/physmem.ts';
import { ACCESS_READ, ACCESS_WRITE, INV_POW2, POW2 } from '../pgtable/index.ts';
import {
  CMD_CFGI_CD,
  CMD_CFGI_CD_ALL,
  CMD_CFGI_STE,
  CMD_CFGI_STE_RANGE,
  CMD_SYNC,
  CMD_TLBI_EL2_ALL,
  CMD_TLBI_EL2_ASID,
  CMD_TLBI_EL2_VA,
  CMD_TLBI_EL2_VAA,
  CMD_TLBI_NH_ALL,
  CMD_TLBI_NH_ASID,
  CMD_TLBI_NH_VA,
  CMD_TLBI_NH_VAA,
  CMD_TLBI_NSNH_ALL,
  CMD_TLBI_S2_IPA,
  CMD_TLBI_S12_VMALL,
  type Command,
  CS_IRQ,
  CS_SEV,
  commandError,
  decodeCommand,
  decodeCommandInto,
  tlbiRange,
} from './commands.ts';
import { ConfigCache } from './config-cache.ts';
import { encodeEvent, type FaultInfo } from './events.ts';
import { CommandQueue, EVENTQ_ABORTED, EVENTQ_WRITTEN, EventQueue } from './queues.ts';
import {
  CERROR_ABT,
  CR0_ATSCHK,
  CR0_CMDQEN,
  CR0_EVENTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  CR2_E2H,
  CR2_PTM,
  CR2_RECINVSID,
  decodeFeatures,
  GBPA_ABORT,
  GBPA_UPDATE,
  GERROR_CMDQ_ERR,
  GERROR_EVENTQ_ABT_ERR,
  GERROR_MSI_CMDQ_ABT_ERR,
  GERROR_MSI_EVENTQ_ABT_ERR,
  GERROR_MSI_GERROR_ABT_ERR,
  IRQ_CTRL_EVENTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  NO_QUIRKS,
  REG,
  SMMU_PRESETS,
  type SmmuFeatures,
  type SmmuIdRegisters,
  type SmmuPreset,
  type SmmuQuirks,
  STRTAB_FMT_2LVL,
} from './registers.ts';
import {
  overlaps,
  TLB_S1,
  TLB_S2,
  TLB_S12,
  Tlb,
  type TlbEntry,
  type TlbPolicy,
  WORLD_NS_EL1,
  WORLD_NS_EL2,
  WORLD_NS_EL2_E2H,
} from './tlb.ts';
import { type EventSink, SmmuTrace, type TranslationResult, Translator } from './translate.ts';

function isCfgi(opcode: number): boolean {
  return (
    opcode === CMD_CFGI_STE ||
    opcode === CMD_CFGI_STE_RANGE ||
    opcode === CMD_CFGI_CD ||
    opcode === CMD_CFGI_CD_ALL
  );
}

/** Numbers per pending invalidation: four command words and CR2.E2H. */
const PENDING_STRIDE = 5;

/** Interrupt lines the owner can observe (wired outputs; MSIs are also written to memory when configured). */
export type SmmuIrq = 'eventq' | 'gerror' | 'cmdq-sync' | 'sev';

export interface SmmuOptions {
  /** A preset name (`qemu-virt`, `qemu-virt-s1`, `s2`, `full`) or a preset; default `qemu-virt`. */
  preset?: string | SmmuPreset;
  /** ID register values replacing the preset's. */
  id?: Partial<SmmuIdRegisters>;
  /** Caches on (default) or off. */
  tlb?: boolean;
  configCache?: boolean;
  tlbEntries?: number;
  tlbPolicy?: TlbPolicy;
  configCacheEntries?: number;
  /** GBPA reset value (IMPLEMENTATION DEFINED; default 0: bypass while disabled). */
  gbpaReset?: number;
  /** Deviations from the architecture to reproduce (default: the preset's, usually none; QEMU_QUIRKS). */
  quirks?: SmmuQuirks;
  /** Called when an interrupt is signalled (an event was written, a global error, a CMD_SYNC completion). */
  interrupt?: (line: SmmuIrq) => void;
}

/** What `walkTrace` returns: the outcome and every read, configuration fetches included. */
export interface SmmuWalk {
  pa: number;
  event: number;
  silent: boolean;
  tlbHit: boolean;
  sizeLg2: number;
  ipa: number;
  trace: SmmuTrace;
}

export class Smmu implements EventSink {
  readonly mem: PhysMem;
  readonly preset: SmmuPreset;
  /** The implementation deviations in force (NO_QUIRKS: the architecture). */
  readonly quirks: SmmuQuirks;
  readonly id: SmmuIdRegisters;
  readonly features: SmmuFeatures;
  readonly tlb: Tlb;
  readonly configCache: ConfigCache;
  readonly translator: Translator;
  readonly cmdq: CommandQueue;
  readonly eventq: EventQueue;
  private readonly interrupt: ((line: SmmuIrq) => void) | undefined;
  private cr0 = 0;
  private cr1 = 0;
  private cr2 = 0;
  private gbpa: number;
  private irqCtrl = 0;
  private gerror = 0;
  private gerrorn = 0;
  private readonly gerrorIrqCfg = [0, 0, 0, 0]; // CFG0 lo, CFG0 hi, CFG1, CFG2
  private readonly eventqIrqCfg = [0, 0, 0, 0];
  private strtabLo = 0;
  private strtabHi = 0;
  private strtabCfg = 0;
  /**
   * Invalidations waiting for a CMD_SYNC: PENDING_STRIDE numbers each, the command's four words and
   * CR2.E2H as it was when it was consumed. Kept as words, decoded again at the sync.
   */
  private readonly pending: number[] = [];
  private pendingCount = 0;
  /** The command being consumed, and the pending one being completed (reused: no garbage). */
  private readonly cmd = decodeCommand(0, 0, 0, 0);
  private readonly doneCmd = decodeCommand(0, 0, 0, 0);
  private processing = false;
  private readonly cmdWords = new Uint32Array(4);
  private readonly eventWords = new Uint32Array(8);
  /** Commands consumed since reset. */
  commandsConsumed = 0;

  constructor(mem: PhysMem, options: SmmuOptions = {}) {
    this.mem = mem;
    const preset =
      typeof options.preset === 'object' ? options.preset : SMMU_PRESETS[options.preset ?? 'qemu-virt'];
    if (preset === undefined) throw new Error(`unknown SMMU preset ${String(options.preset)}`);
    this.preset = preset;
    const { idr0, idr1, idr2, idr3, idr4, idr5, iidr, aidr } = preset;
    this.id = { idr0, idr1, idr2, idr3, idr4, idr5, iidr, aidr, ...options.id };
    this.features = decodeFeatures(this.id);
    this.interrupt = options.interrupt;
    this.gbpa = options.gbpaReset ?? 0;
    this.tlb = new Tlb(options.tlbEntries ?? preset.tlb.entries, options.tlbPolicy ?? preset.tlb.policy);
    this.configCache = new ConfigCache(
      options.configCache ?? true,
      options.configCacheEntries ?? preset.configCache.entries,
    );
    this.translator = new Translator(
      mem,
      this.features,
      this.configCache,
      this.tlb,
      options.tlb ?? true,
      this,
    );
    this.translator.gbpaAbort = (this.gbpa & GBPA_ABORT) !== 0;
    this.quirks = options.quirks ?? preset.quirks ?? NO_QUIRKS;
    this.translator.quirks = this.quirks;
    this.cmdq = new CommandQueue(this.features.cmdqs);
    this.eventq = new EventQueue(this.features.eventqs);
  }

  // ---- Translation -------------------------------------------------------------------------

  /**
   * Translates one access from StreamID `sid`, SubstreamID `ssid` (-1: none): `access` is ACCESS_*
   * bits (read 0, write 1, instruction 2, privileged 4). Returns the PA or -1 (terminated); `result`
   * holds the details. Pass a `SmmuTrace` to record every read.
   */
  translate(sid: number, ssid: number, iova: number, access: number, trace: SmmuTrace | null = null): number {
    return this.translator.translate(sid, ssid, iova, access, trace);
  }

  get result(): TranslationResult {
    return this.translator.result;
  }

  /**
   * A device DMA: moves `length` bytes between `bytes[offset..]` and the memory at `iova`, translating
   * each leaf-sized piece; stops at the first terminated access (or at memory that is not RAM).
   * Returns the bytes moved. `attrs` adds ACCESS_PRIV / ACCESS_INSTR.
   */
  dma(
    sid: number,
    ssid: number,
    iova: number,
    bytes: Uint8Array,
    offset: number,
    length: number,
    isWrite: boolean,
    attrs = 0,
  ): number {
    const access = (isWrite ? ACCESS_WRITE : ACCESS_READ) | (attrs & 6);
    const r = this.translator.result;
    let done = 0;
    while (done < length) {
      const addr = iova + done;
      const pa = this.translator.translate(sid, ssid, addr, access);
      if (pa < 0) break;
      // Bytes to the end of the translated block: the block is 2^sizeLg2 aligned (no fmod per page).
      const lg2 = r.sizeLg2;
      const n = Math.min(length - done, POW2[lg2] - (addr - Math.floor(addr * INV_POW2[lg2]) * POW2[lg2]));
      if (!this.mem.contains(pa, n)) break;
      if (isWrite) this.mem.writeBytes(pa, bytes, offset + done, n);
      else this.mem.readBytes(pa, bytes, offset + done, n);
      done += n;
    }
    return done;
  }

  /**
   * One translation with every read recorded (STE and CD fetches included), for the CLI's `walk` and
   * the browser's step view. By default it runs as a cold, quiet dry run: caches neither used nor
   * filled, no event recorded. `{ caches: 'peek' }` is still a dry run but looks the TLB and the
   * configuration cache up as a transaction would (a hit reads nothing) without filling them.
   * `{ caches: true, events: true }` runs it as a real transaction.
   */
  walkTrace(
    sid: number,
    ssid: number,
    iova: number,
    access = ACCESS_READ,
    opts: { caches?: boolean | 'peek'; events?: boolean } = {},
  ) {
    const t = this.translator;
    const trace = new SmmuTrace();
    t.bypassCaches = !(opts.caches ?? false);
    t.peekCaches = opts.caches === 'peek';
    t.quiet = !(opts.events ?? false);
    try {
      const pa = t.translate(sid, ssid, iova, access, trace);
      const r = t.result;
      const out: SmmuWalk = {
        pa,
        event: r.event,
        silent: r.silent,
        tlbHit: r.tlbHit,
        sizeLg2: r.sizeLg2,
        ipa: r.ipa,
        trace,
      };
      return out;
    } finally {
      t.bypassCaches = false;
      t.peekCaches = false;
      t.quiet = false;
    }
  }

  /** Switches caches on or off (dropping their contents): the differential view of the model. */
  setCaching(opts: { tlb?: boolean; configCache?: boolean }): void {
    if (opts.tlb !== undefined) this.translator.tlbEnabled = opts.tlb;
    if (opts.configCache !== undefined) this.configCache.enabled = opts.configCache;
    this.tlb.invalidateAll();
    this.configCache.invalidateAll();
    this.translator.resetShortcut();
  }

  // ---- Events ----------------------------------------------------------------------------

  /** Writes the record for a fault to the event queue if it is writable (IHI 0070 §7.2.1). */
  recordEvent(f: FaultInfo): void {
    if ((this.cr0 & CR0_EVENTQEN) === 0) return;
    if (((this.gerror ^ this.gerrorn) & GERROR_EVENTQ_ABT_ERR) !== 0) return;
    encodeEvent(f, this.eventWords, this.quirks.eventIpaFullAddress);
    const status = this.eventq.push(this.mem, this.eventWords);
    if (status === EVENTQ_ABORTED) {
      this.activateGerror(GERROR_EVENTQ_ABT_ERR);
    } else if (status === EVENTQ_WRITTEN && (this.irqCtrl & IRQ_CTRL_EVENTQ_IRQEN) !== 0) {
      this.signal(this.eventqIrqCfg, GERROR_MSI_EVENTQ_ABT_ERR);
      this.interrupt?.('eventq');
    }
  }

  // ---- Registers -------------------------------------------------------------------------

  readReg32(off: number): number {
    switch (off) {
      case REG.IDR0:
        return this.id.idr0 >>> 0;
      case REG.IDR1:
        return this.id.idr1 >>> 0;
      case REG.IDR2:
        return this.id.idr2 >>> 0;
      case REG.IDR3:
        return this.id.idr3 >>> 0;
      case REG.IDR4:
        return this.id.idr4 >>> 0;
      case REG.IDR5:
        return this.id.idr5 >>> 0;
      case REG.IIDR:
        return this.id.iidr >>> 0;
      case REG.AIDR:
        return this.id.aidr >>> 0;
      case REG.CR0:
      case REG.CR0ACK:
        // Updates complete at once: CR0ACK always equals CR0.
        return this.cr0;
      case REG.CR1:
        return this.cr1;
      case REG.CR2:
        return this.cr2;
      case REG.GBPA:
        return this.gbpa >>> 0;
      case REG.IRQ_CTRL:
      case REG.IRQ_CTRLACK:
        return this.irqCtrl;
      case REG.GERROR:
        return this.gerror;
      case REG.GERRORN:
        return this.gerrorn;
      case REG.GERROR_IRQ_CFG0:
      case REG.GERROR_IRQ_CFG0 + 4:
      case REG.GERROR_IRQ_CFG1:
      case REG.GERROR_IRQ_CFG2:
        return this.features.msi ? this.gerrorIrqCfg[irqCfgIndex(off - REG.GERROR_IRQ_CFG0)] : 0;
      case REG.EVENTQ_IRQ_CFG0:
      case REG.EVENTQ_IRQ_CFG0 + 4:
      case REG.EVENTQ_IRQ_CFG1:
      case REG.EVENTQ_IRQ_CFG2:
        return this.features.msi ? this.eventqIrqCfg[irqCfgIndex(off - REG.EVENTQ_IRQ_CFG0)] : 0;
      case REG.STRTAB_BASE:
        return this.strtabLo;
      case REG.STRTAB_BASE + 4:
        return this.strtabHi;
      case REG.STRTAB_BASE_CFG:
        return this.strtabCfg;
      case REG.CMDQ_BASE:
        return this.cmdq.base.lo;
      case REG.CMDQ_BASE + 4:
        return this.cmdq.base.hi;
      case REG.CMDQ_PROD:
        return this.cmdq.prod;
      case REG.CMDQ_CONS:
        return this.cmdq.cons;
      case REG.EVENTQ_BASE:
        return this.eventq.base.lo;
      case REG.EVENTQ_BASE + 4:
        return this.eventq.base.hi;
      case REG.EVENTQ_PROD:
        return this.eventq.prod;
      case REG.EVENTQ_CONS:
        return this.eventq.cons;
      default:
        return 0;
    }
  }

  writeReg32(off: number, value: number): void {
    const v = value >>> 0;
    const f = this.features;
    switch (off) {
      case REG.CR0: {
        let mask = CR0_SMMUEN | CR0_EVENTQEN | CR0_CMDQEN;
        if (f.pri) mask |= CR0_PRIQEN;
        if (f.ats) mask |= CR0_ATSCHK;
        if (f.vmw) mask |= 7 << 6;
        const old = this.cr0;
        this.cr0 = (v & mask) >>> 0;
        if (((old ^ this.cr0) & CR0_SMMUEN) !== 0) {
          this.translator.smmuEnabled = (this.cr0 & CR0_SMMUEN) !== 0;
          this.syncStreamTable();
        }
        if ((this.cr0 & CR0_CMDQEN) !== 0) this.processCommands();
        return;
      }
      case REG.CR1:
        this.cr1 = v & 0xfff;
        return;
      case REG.CR2:
        if (this.smmuEnabled) return;
        this.cr2 = v & ((f.hyp ? CR2_E2H : 0) | CR2_RECINVSID | CR2_PTM);
        this.syncStreamTable();
        return;
      case REG.GBPA:
        // Only a write with Update = 1 takes effect; it completes at once (Update reads 0).
        if ((v & GBPA_UPDATE) === 0) return;
        this.gbpa = v & 0x001ff3ff;
        this.translator.gbpaAbort = (this.gbpa & GBPA_ABORT) !== 0;
        this.translator.resetShortcut();
        return;
      case REG.IRQ_CTRL:
        this.irqCtrl =
          v & (IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_EVENTQ_IRQEN | (f.pri ? IRQ_CTRL_PRIQ_IRQEN : 0));
        return;
      case REG.GERRORN:
        this.gerrorn = v & 0x1fd;
        // Acknowledging CMDQ_ERR restarts consumption without a PROD write (IHI 0070 §7.1).
        if (((this.gerror ^ this.gerrorn) & GERROR_CMDQ_ERR) === 0) this.processCommands();
        return;
      case REG.GERROR_IRQ_CFG0:
      case REG.GERROR_IRQ_CFG0 + 4:
      case REG.GERROR_IRQ_CFG1:
      case REG.GERROR_IRQ_CFG2:
        if (f.msi && (this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) === 0) {
          this.gerrorIrqCfg[irqCfgIndex(off - REG.GERROR_IRQ_CFG0)] = irqCfgMask(
            off - REG.GERROR_IRQ_CFG0,
            v,
          );
        }
        return;
      case REG.EVENTQ_IRQ_CFG0:
      case REG.EVENTQ_IRQ_CFG0 + 4:
      case REG.EVENTQ_IRQ_CFG1:
      case REG.EVENTQ_IRQ_CFG2:
        if (f.msi && (this.irqCtrl & IRQ_CTRL_EVENTQ_IRQEN) === 0) {
          this.eventqIrqCfg[irqCfgIndex(off - REG.EVENTQ_IRQ_CFG0)] = irqCfgMask(
            off - REG.EVENTQ_IRQ_CFG0,
            v,
          );
        }
        return;
      case REG.STRTAB_BASE:
        if (!this.smmuEnabled) this.strtabLo = (v & 0xffffffc0) >>> 0;
        this.syncStreamTable();
        return;
      case REG.STRTAB_BASE + 4:
        if (!this.smmuEnabled) this.strtabHi = (v & 0x40ffffff) >>> 0;
        this.syncStreamTable();
        return;
      case REG.STRTAB_BASE_CFG:
        if (!this.smmuEnabled) this.strtabCfg = v & (f.stLevel !== 0 ? 0x307ff : 0x3f);
        this.syncStreamTable();
        return;
      case REG.CMDQ_BASE:
      case REG.CMDQ_BASE + 4:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdq.base.write(off - REG.CMDQ_BASE, v);
        return;
      case REG.CMDQ_PROD:
        this.cmdq.prod = v & 0xfffff;
        this.processCommands();
        return;
      case REG.CMDQ_CONS:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdq.cons = v & 0x7f0fffff;
        return;
      case REG.EVENTQ_BASE:
      case REG.EVENTQ_BASE + 4:
        if ((this.cr0 & CR0_EVENTQEN) === 0) this.eventq.base.write(off - REG.EVENTQ_BASE, v);
        return;
      case REG.EVENTQ_PROD:
        if ((this.cr0 & CR0_EVENTQEN) === 0) this.eventq.prod = (v & 0x800fffff) >>> 0;
        return;
      case REG.EVENTQ_CONS:
        this.eventq.cons = (v & 0x800fffff) >>> 0;
        return;
      default:
        // Read-only and unimplemented registers: writes are ignored.
        return;
    }
  }

  private get smmuEnabled(): boolean {
    return (this.cr0 & CR0_SMMUEN) !== 0;
  }

  private syncStreamTable(): void {
    const st = this.translator.strtab;
    st.base = (this.strtabHi & 0xffffff) * 4294967296 + ((this.strtabLo & 0xffffffc0) >>> 0);
    st.log2size = this.strtabCfg & 0x3f;
    st.twoLevel = this.features.stLevel !== 0 && ((this.strtabCfg >>> 16) & 3) === STRTAB_FMT_2LVL;
    const split = (this.strtabCfg >>> 6) & 0x1f;
    // SPLIT values other than 6, 8 and 10 behave as 6 (IHI 0070 SMMU_STRTAB_BASE_CFG).
    st.split = split === 8 || split === 10 ? split : 6;
    st.recordInvalidSid = (this.cr2 & CR2_RECINVSID) !== 0;
    st.e2h = (this.cr2 & CR2_E2H) !== 0;
    this.translator.resetShortcut();
  }

  // ---- Global errors and interrupts --------------------------------------------------------

  /** Toggles a GERROR bit unless that error is already active, and signals it (IHI 0070 §7.5). */
  private activateGerror(bit: number): void {
    if (((this.gerror ^ this.gerrorn) & bit) !== 0) return;
    this.gerror = (this.gerror ^ bit) >>> 0;
    if ((this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0 && bit !== GERROR_MSI_GERROR_ABT_ERR) {
      this.signal(this.gerrorIrqCfg, GERROR_MSI_GERROR_ABT_ERR);
      this.interrupt?.('gerror');
    }
  }

  /** Sends the MSI of an interrupt source when one is configured (IDR0.MSI and ADDR != 0). */
  private signal(cfg: number[], abortBit: number): void {
    if (!this.features.msi) return;
    const addr = (cfg[1] & 0xffffff) * 4294967296 + ((cfg[0] & 0xfffffffc) >>> 0);
    if (addr === 0) return;
    this.msiWrite(addr, cfg[2], abortBit);
  }

  private msiWrite(addr: number, data: number, abortBit: number): void {
    if (addr + 4 <= POW2[this.features.oasBits] && this.mem.contains(addr, 4))
      this.mem.writeU32(addr, data >>> 0);
    else this.activateGerror(abortBit);
  }

  // ---- Command queue ---------------------------------------------------------------------

  /** Consumes commands from CONS to PROD while the queue is enabled and no command error is active. */
  private processCommands(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      while (
        (this.cr0 & CR0_CMDQEN) !== 0 &&
        ((this.gerror ^ this.gerrorn) & GERROR_CMDQ_ERR) === 0 &&
        !this.cmdq.empty
      ) {
        const w = this.cmdWords;
        if (this.cmdq.fetch(this.mem, w) !== 0) {
          this.commandError(CERROR_ABT);
          break;
        }
        const cmd = decodeCommandInto(w[0], w[1], w[2], w[3], this.cmd);
        const err = commandError(cmd, this.features);
        if (err !== 0) {
          this.commandError(err);
          break;
        }
        this.execute(cmd);
        this.cmdq.consume();
        this.commandsConsumed++;
      }
    } finally {
      this.processing = false;
    }
  }

  /** Stops consumption at the failing command: CONS.ERR, then GERROR.CMDQ_ERR (IHI 0070 §7.1). */
  private commandError(code: number): void {
    this.cmdq.setError(code);
    this.activateGerror(GERROR_CMDQ_ERR);
  }

  private execute(c: Command): void {
    switch (c.opcode) {
      case CMD_SYNC:
        this.sync(c);
        return;
      case CMD_CFGI_STE:
      case CMD_CFGI_STE_RANGE:
      case CMD_CFGI_CD:
      case CMD_CFGI_CD_ALL:
      case CMD_TLBI_NH_ALL:
      case CMD_TLBI_NH_ASID:
      case CMD_TLBI_NH_VA:
      case CMD_TLBI_NH_VAA:
      case CMD_TLBI_EL2_ALL:
      case CMD_TLBI_EL2_ASID:
      case CMD_TLBI_EL2_VA:
      case CMD_TLBI_EL2_VAA:
      case CMD_TLBI_S12_VMALL:
      case CMD_TLBI_S2_IPA:
      case CMD_TLBI_NSNH_ALL:
        this.deferInvalidation((this.cr2 & CR2_E2H) !== 0);
        return;
      default:
        // ATC_INV (no ATCs are modelled), PREFETCH_* (prefetching is optional), PRI_RESP, RESUME,
        // STALL_TERM: nothing to do here.
        return;
    }
  }

  /** Keeps the command being consumed for the next CMD_SYNC; `e2h` selects the EL2 entries meant. */
  private deferInvalidation(e2h: boolean): void {
    const p = this.pending;
    const at = this.pendingCount++ * PENDING_STRIDE;
    const w = this.cmdWords;
    p[at] = w[0];
    p[at + 1] = w[1];
    p[at + 2] = w[2];
    p[at + 3] = w[3];
    p[at + 4] = e2h ? 1 : 0;
  }

  /** Carries out one invalidation a CMD_SYNC completes. */
  private invalidate(c: Command, e2h: boolean): void {
    const cache = this.configCache;
    switch (c.opcode) {
      case CMD_CFGI_STE:
        cache.invalidateSte(c.sid);
        return;
      case CMD_CFGI_STE_RANGE:
        if (c.range === 31) {
          cache.invalidateAll(); // CMD_CFGI_ALL
        } else {
          const count = POW2[c.range + 1];
          cache.invalidateSteRange(Math.floor(c.sid / count) * count, count);
        }
        return;
      case CMD_CFGI_CD:
        cache.invalidateCd(c.sid, c.ssid);
        return;
      case CMD_CFGI_CD_ALL:
        cache.invalidateCdAll(c.sid);
        return;
    }
    const tlb = this.tlb;
    const f = this.features;
    const vmidMatch = (e: TlbEntry) => !f.s2p || e.ctx.vmid === c.vmid;
    const el1S1 = (e: TlbEntry) =>
      e.ctx.world === WORLD_NS_EL1 && (e.ctx.kind === TLB_S1 || e.ctx.kind === TLB_S12);
    const [start, end] = tlbiRange(c, f);
    const vaMatch = (e: TlbEntry) => overlaps(e.vaBase, e.sizeLg2, start, end);
    switch (c.opcode) {
      case CMD_TLBI_NH_ALL:
        tlb.invalidate((e) => el1S1(e) && vmidMatch(e));
        return;
      case CMD_TLBI_NH_ASID:
        tlb.invalidate((e) => el1S1(e) && vmidMatch(e) && e.ctx.asid === c.asid);
        return;
      case CMD_TLBI_NH_VA:
        tlb.invalidate(
          (e) => el1S1(e) && vmidMatch(e) && (e.ctx.asid === c.asid || e.ctx.asid === -1) && vaMatch(e),
        );
        return;
      case CMD_TLBI_NH_VAA:
        tlb.invalidate((e) => el1S1(e) && vmidMatch(e) && vaMatch(e));
        return;
      case CMD_TLBI_EL2_ALL:
        tlb.invalidate((e) => e.ctx.world === WORLD_NS_EL2 || e.ctx.world === WORLD_NS_EL2_E2H);
        return;
      case CMD_TLBI_EL2_ASID:
        tlb.invalidate((e) => e.ctx.world === WORLD_NS_EL2_E2H && e.ctx.asid === c.asid);
        return;
      case CMD_TLBI_EL2_VA:
      case CMD_TLBI_EL2_VAA: {
        // CR2.E2H selects which EL2 entries are meant (IHI 0070 §4.4.2.8-9).
        const world = e2h ? WORLD_NS_EL2_E2H : WORLD_NS_EL2;
        const byAsid = c.opcode === CMD_TLBI_EL2_VA && e2h;
        tlb.invalidate(
          (e) =>
            e.ctx.world === world && (!byAsid || e.ctx.asid === c.asid || e.ctx.asid === -1) && vaMatch(e),
        );
        return;
      }
      case CMD_TLBI_S12_VMALL:
        tlb.invalidate((e) => e.ctx.world === WORLD_NS_EL1 && e.ctx.vmid === c.vmid);
        return;
      case CMD_TLBI_S2_IPA:
        // Stage-2-only entries by IPA; combined stage 1+2 entries are not required to go (reference §5.3).
        tlb.invalidate((e) => e.ctx.kind === TLB_S2 && e.ctx.vmid === c.vmid && vaMatch(e));
        return;
      case CMD_TLBI_NSNH_ALL:
        tlb.invalidate((e) => e.ctx.world === WORLD_NS_EL1);
        return;
    }
  }

  /** CMD_SYNC: completes every earlier invalidation, then signals (IHI 0070 §4.7.3). */
  private sync(c: Command): void {
    const n = this.pendingCount;
    const p = this.pending;
    for (let at = 0; at < n * PENDING_STRIDE; at += PENDING_STRIDE) {
      // A TLBI with nothing cached has nothing to match (an unmap's TLBI on an idle SMMU): not decoded.
      if (this.tlb.size === 0 && !isCfgi(p[at] & 0xff)) continue;
      this.invalidate(
        decodeCommandInto(p[at], p[at + 1], p[at + 2], p[at + 3], this.doneCmd),
        p[at + 4] === 1,
      );
    }
    this.pendingCount = 0;
    if (n > 0) this.translator.resetShortcut();
    if (c.cs === CS_IRQ) {
      if (this.features.msi && c.msiAddr !== 0) this.msiWrite(c.msiAddr, c.msiData, GERROR_MSI_CMDQ_ABT_ERR);
      this.interrupt?.('cmdq-sync');
    } else if (c.cs === CS_SEV && this.features.sev) {
      this.interrupt?.('sev');
    }
  }

  /** Invalidations consumed but not yet completed by a CMD_SYNC. */
  get pendingInvalidations(): number {
    return this.pendingCount;
  }
}

function irqCfgIndex(rel: number): number {
  return rel === 0 ? 0 : rel === 4 ? 1 : rel === 8 ? 2 : 3;
}

/** *_IRQ_CFG0: ADDR [55:2]; CFG1: DATA; CFG2: MemAttr [3:0], SH [5:4]. */
function irqCfgMask(rel: number, v: number): number {
  if (rel === 0) return (v & 0xfffffffc) >>> 0;
  if (rel === 4) return v & 0xffffff;
  if (rel === 8) return v >>> 0;
  return v & 0x3f;
}
