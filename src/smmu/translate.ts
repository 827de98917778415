/**
 * Translation of one transaction: configuration lookup (stream table, STE, CD table, CD), then the
 * TLB, then the walks: stage 1, stage 2, or nested, where every stage-1 descriptor address, CD and
 * L1CD address is an IPA translated by stage 2 first (reference §3.1-3.2; IHI 0070 §3.3).
 *
 * Faults become an architected event (reference §3.5, §4): stage-1 translation faults carry S2 = 0,
 * CLASS = IN; stage-2 faults carry S2 = 1, the IPA, and CLASS CD, TT or IN after what stage 2 was
 * translating; external aborts on walks are F_WALK_EABT with the fetch address. Translation faults
 * are recorded only when CD.R (stage 1) or STE.S2R (stage 2) asks. Every faulting transaction is
 * terminated with an abort: this model has the terminate fault model only (no stalls; the presets
 * advertise STALL_MODEL = 0b01 and TERM_MODEL = 1, which makes CD.S, STE.S2S and CD.A = 0 illegal).
 *
 * The TLB-hit path allocates nothing and uses no BigInt.
 */
import type { PhysMem } from '../mm/physmem.ts';
import {
  ACCESS_PRIV,
  ACCESS_READ,
  FAULT_FETCH,
  FAULT_NONE,
  INV_POW2,
  isDevice,
  NestedWalkContext,
  POW2,
  S1_ALL,
  S2_ALL,
  type WalkFetchHook,
  type WalkRegime,
  WalkResult,
  type WalkTrace,
  walk,
} from '../pgtable/index.ts';
import { decodeL1Cd } from './cd.ts';
import {
  CdEntry,
  type ConfigCache,
  SteEntry,
  TC_ABORT,
  TC_BYPASS,
  TC_NESTED,
  TC_S1,
  TC_S1_BYPASS,
  TC_S2,
  TransCfg,
} from './config-cache.ts';
import {
  CLASS_CD,
  CLASS_IN,
  CLASS_NAMES,
  CLASS_TT,
  EVT_C_BAD_CD,
  EVT_C_BAD_STE,
  EVT_C_BAD_STREAMID,
  EVT_C_BAD_SUBSTREAMID,
  EVT_F_ACCESS,
  EVT_F_ADDR_SIZE,
  EVT_F_CD_FETCH,
  EVT_F_PERMISSION,
  EVT_F_STE_FETCH,
  EVT_F_STREAM_DISABLED,
  EVT_F_TRANSLATION,
  EVT_F_WALK_EABT,
  FaultInfo,
} from './events.ts';
import { NO_QUIRKS, type SmmuFeatures, type SmmuQuirks } from './registers.ts';
import { decodeL1Std, S1DSS_BYPASS, S1DSS_SSID0 } from './ste.ts';
import type { Tlb, TlbEntry } from './tlb.ts';

/** Receives the faults that ask to be recorded. */
export interface EventSink {
  recordEvent(f: FaultInfo): void;
}

/** The outcome of the last translation, reused (read it before the next call). */
export class TranslationResult {
  /** Output PA, or -1 when the transaction was terminated. */
  pa = -1;
  /** Event type of the fault (0: none or a silent abort); details in `fault`. */
  event = 0;
  /** Terminated with no event (STE.Config abort, GBPA.ABORT, or out of range with the SMMU disabled). */
  get silent(): boolean {
    return this.pa < 0 && this.event === 0;
  }
  tlbHit = false;
  /** The translation holds for the naturally aligned 2^sizeLg2 bytes around the input. */
  sizeLg2 = 12;
  /**
   * The address between the stages: the stage-1 output (the input when stage 1 is bypassed; equal to
   * the PA when stage 2 is bypassed). -1 when terminated.
   */
  ipa = -1;
  readonly fault = new FaultInfo();
}

export type TraceKind = 'l1std' | 'ste' | 'l1cd' | 'cd' | 's1' | 's2';

/** One memory read of a translation. */
export interface SmmuTraceRead {
  kind: TraceKind;
  /** Stage-2 reads: what stage 2 was translating (CD, TT or IN). */
  cls?: 'CD' | 'TT' | 'IN';
  level?: number;
  index?: number;
  /** Address in its own space: an IPA for nested stage-1 descriptors, CDs and L1CDs. */
  addr: number;
  /** Physical address read. */
  pa: number;
  /** The words read (2 for a descriptor, 16 for an STE or CD). */
  words: number[];
}

/** Collects every read of a translation: configuration fetches and descriptor reads, in order. */
export class SmmuTrace implements WalkTrace {
  readonly reads: SmmuTraceRead[] = [];
  /** Set by the translator before each stage-2 walk. */
  cls = CLASS_IN;

  descriptor(
    stage: 1 | 2,
    level: number,
    index: number,
    descAddr: number,
    pa: number,
    lo: number,
    hi: number,
  ) {
    const read: SmmuTraceRead = {
      kind: stage === 1 ? 's1' : 's2',
      level,
      index,
      addr: descAddr,
      pa,
      words: [lo, hi],
    };
    if (stage === 2) read.cls = CLASS_NAMES[this.cls];
    this.reads.push(read);
  }

  config(kind: TraceKind, addr: number, pa: number, words: ArrayLike<number>): void {
    this.reads.push({ kind, addr, pa, words: Array.from(words, (w) => w >>> 0) });
  }

  /**
   * The reads of the 2-D table walk: stage-1 descriptors and the stage-2 walks for them (CLASS TT) and
   * for the output (CLASS IN). Reference §3.3: (n1 + 1)(n2 + 1) - 1 of them.
   */
  get walkReads(): SmmuTraceRead[] {
    return this.reads.filter((r) => r.kind === 's1' || (r.kind === 's2' && r.cls !== 'CD'));
  }

  /** Configuration reads: L1STD, STE, L1CD, CD, and the stage-2 walks that locate CDs (CLASS CD). */
  get configReads(): SmmuTraceRead[] {
    return this.reads.filter((r) => r.kind !== 's1' && !(r.kind === 's2' && r.cls !== 'CD'));
  }
}

/** Stream table registers the translator reads (kept by the device). */
export interface StreamTableConfig {
  base: number;
  log2size: number;
  twoLevel: boolean;
  split: number;
  recordInvalidSid: boolean;
  e2h: boolean;
}

const WALK_EVENT = [0, EVT_F_TRANSLATION, EVT_F_ADDR_SIZE, EVT_F_ACCESS, EVT_F_PERMISSION];

export class Translator implements WalkFetchHook {
  readonly mem: PhysMem;
  readonly features: SmmuFeatures;
  readonly cache: ConfigCache;
  readonly tlb: Tlb;
  tlbEnabled: boolean;
  readonly result = new TranslationResult();
  readonly strtab: StreamTableConfig = {
    base: 0,
    log2size: 0,
    twoLevel: false,
    split: 6,
    recordInvalidSid: false,
    e2h: false,
  };
  smmuEnabled = false;
  gbpaAbort = false;
  /** Ignore (neither read nor fill) the caches: the trace view of a cold translation. */
  bypassCaches = false;
  /** Do not record events (a dry run). */
  quiet = false;
  /** Implementation deviations to reproduce (set by the device; NO_QUIRKS: the architecture). */
  quirks: SmmuQuirks = NO_QUIRKS;
  /** Look the caches up as a transaction would but never fill them: a dry run that sees cache hits. */
  peekCaches = false;
  /** Use the nested fast walk (off: the general walks only, for differential tests). */
  fastWalk = true;
  private readonly sink: EventSink;
  private readonly oasLimit: number;
  private readonly iasLimit: number;
  // Fast-path shortcut: the last (StreamID, SubstreamID) and its configuration.
  private fastSid = -1;
  private fastSsid = -2;
  private fastTc: TransCfg | null = null;
  private fastGen = -1;
  // Walk scratch and the context the fetch hook works in.
  private readonly s1Out = new WalkResult();
  private readonly s2Out = new WalkResult();
  private readonly s2Fetch = new WalkResult();
  private readonly nested: NestedWalkContext;
  private curSte: SteEntry | null = null;
  private curNested = false;
  // The stage-1 regime and CD.R of the walk in progress (for the quirks' fault reports).
  private curS1: WalkRegime | null = null;
  private curRecordS1 = true;
  private s2Class = CLASS_IN;
  private trace: SmmuTrace | null = null;

  constructor(
    mem: PhysMem,
    features: SmmuFeatures,
    cache: ConfigCache,
    tlb: Tlb,
    tlbEnabled: boolean,
    sink: EventSink,
  ) {
    this.mem = mem;
    this.features = features;
    this.cache = cache;
    this.tlb = tlb;
    this.tlbEnabled = tlbEnabled;
    this.sink = sink;
    this.oasLimit = POW2[features.oasBits];
    this.iasLimit = POW2[features.iasBits];
    this.nested = new NestedWalkContext(
      mem.base,
      mem.base + mem.size,
      Math.min(mem.base + mem.size, this.oasLimit),
    );
  }

  /** Forget the fast-path shortcut (register state changed). */
  resetShortcut(): void {
    this.fastSid = -1;
    this.fastSsid = -2;
    this.fastTc = null;
  }

  /**
   * Translates one access (ACCESS_* bits) from StreamID `sid`, SubstreamID `ssid` (-1: none).
   * Returns the PA, or -1 when the transaction is terminated (details in `result`).
   */
  translate(sid: number, ssid: number, iova: number, access: number, trace: SmmuTrace | null = null): number {
    access &= 7;
    if (
      trace === null &&
      sid === this.fastSid &&
      ssid === this.fastSsid &&
      this.fastGen === this.cache.generation
    ) {
      // Same stream as last time and nothing invalidated since: its configuration is at hand.
      const tc = this.fastTc!;
      const ctx = tc.tlbCtx;
      if (ctx !== null) {
        let e = this.tlb.lookup(ctx, iova);
        const g = tc.globalCtx;
        if (e === undefined && g !== null && g.count > 0 && g !== ctx) e = this.tlb.lookup(g, iova);
        if (e !== undefined) {
          const need = tc.need[access];
          if ((e.perms & need) === need) {
            const r = this.result;
            const pa = e.paBase + (iova - e.vaBase);
            r.pa = pa;
            r.event = 0;
            r.tlbHit = true;
            r.sizeLg2 = e.sizeLg2;
            r.ipa = e.ipaBase + (iova - e.vaBase);
            return pa;
          }
          // A permission fault from the cached entry, as the slow path would report it.
          this.begin(sid, ssid, iova, access, null);
          this.setAttributes(tc, access);
          this.hit(tc, e, iova, access);
          return this.result.pa;
        }
      }
      if (tc.kind === TC_NESTED && this.walkNested(tc, iova, access)) return this.result.pa;
      this.begin(sid, ssid, iova, access, null);
      this.translateWith(tc, iova, access);
    } else {
      this.translateSlow(sid, ssid, iova, access, trace);
    }
    // Every path leaves its answer in `result.pa`: returning that field (never a call's result) keeps
    // the returned PA an unboxed double where this method is inlined, so a hit allocates nothing.
    return this.result.pa;
  }

  /** Resets the result for a new transaction. */
  private begin(sid: number, ssid: number, iova: number, access: number, trace: SmmuTrace | null): void {
    const r = this.result;
    r.pa = -1;
    r.event = 0;
    r.tlbHit = false;
    r.sizeLg2 = 12;
    r.ipa = -1;
    const ssv = ssid >= 0;
    const f = r.fault;
    f.reset(sid, ssv, ssv ? ssid : 0, iova);
    f.rnw = (access & 1) === 0;
    f.pnu = (access & ACCESS_PRIV) !== 0;
    f.ind = (access & 2) !== 0;
    this.trace = trace;
  }

  private translateSlow(
    sid: number,
    ssid: number,
    iova: number,
    access: number,
    trace: SmmuTrace | null,
  ): number {
    this.begin(sid, ssid, iova, access, trace);
    if (!this.smmuEnabled) {
      // SMMUEN == 0: GBPA decides; out-of-range input is aborted without an event (IHI 0070 §3.4).
      if (this.gbpaAbort || !(iova < this.oasLimit)) return this.silent();
      return this.identity(iova);
    }
    const tc = this.lookupConfig(sid, ssid >= 0, ssid);
    if (tc === null) return this.result.event === 0 ? this.silent() : this.terminate();
    if (trace === null && !this.bypassCaches && this.cache.enabled) {
      this.fastSid = sid;
      this.fastSsid = ssid;
      this.fastTc = tc;
      this.fastGen = this.cache.generation;
    }
    if (tc.tlbCtx !== null && !this.bypassCaches) {
      let e = this.tlb.lookup(tc.tlbCtx, iova);
      const g = tc.globalCtx;
      if (e === undefined && g !== null && g.count > 0 && g !== tc.tlbCtx) e = this.tlb.lookup(g, iova);
      if (e !== undefined) {
        this.setAttributes(tc, access);
        return this.hit(tc, e, iova, access);
      }
    }
    if (tc.kind === TC_NESTED && trace === null && this.walkNested(tc, iova, access)) return this.result.pa;
    return this.translateWith(tc, iova, access);
  }

  /** Post-STE-override PnU / InD for the event record. */
  private setAttributes(tc: TransCfg, access: number): void {
    const ea = tc.access[access];
    const f = this.result.fault;
    f.pnu = (ea & ACCESS_PRIV) !== 0;
    f.ind = (ea & 2) !== 0;
  }

  /** Translation once the configuration is known and the TLB missed (or could not be used). */
  private translateWith(tc: TransCfg, iova: number, access: number): number {
    this.setAttributes(tc, access);
    switch (tc.kind) {
      case TC_ABORT:
        return this.silent();
      case TC_BYPASS:
        // Both stages bypassed: an input above the OAS is a stage-1 Address Size fault (IHI 0070 §3.4).
        if (!(iova < this.oasLimit)) return this.fault(EVT_F_ADDR_SIZE, false, CLASS_IN, 0, true);
        return this.identity(iova);
      case TC_S1_BYPASS:
        if (!(iova < this.iasLimit)) return this.fault(EVT_F_ADDR_SIZE, false, CLASS_IN, 0, true);
        return this.identity(iova);
    }
    return this.walkAll(tc, iova, tc.access[access]);
  }

  /** A TLB hit in the slow path: the permission check decides, attributing a fault to its stage. */
  private hit(tc: TransCfg, e: TlbEntry, iova: number, access: number): number {
    const r = this.result;
    const need = tc.need[access];
    const ipa = e.ipaBase + (iova - e.vaBase);
    if ((e.perms & need) !== need) {
      const s1need = need & 63;
      if ((e.perms & s1need) !== s1need) return this.fault(EVT_F_PERMISSION, false, CLASS_IN, 0, tc.recordS1);
      return this.fault(EVT_F_PERMISSION, true, CLASS_IN, ipa, tc.recordS2);
    }
    r.pa = e.paBase + (iova - e.vaBase);
    r.tlbHit = true;
    r.sizeLg2 = e.sizeLg2;
    r.ipa = ipa;
    return r.pa;
  }

  /**
   * The common nested case in one loop (pgtable/walk-nested.ts), before any fault bookkeeping: it
   * decides no fault, so on anything unusual it returns false and the caller walks with walkAll(),
   * which reports it. On success the result is complete (as for a TLB hit, the fault record is left).
   */
  private walkNested(tc: TransCfg, iova: number, access: number): boolean {
    if (!this.fastWalk || tc.s1Regime === null) return false;
    const nested = this.nested;
    nested.s2ptw = tc.ste.s2ptw;
    nested.s2fwb = tc.ste.s2fwb;
    if (!nested.walk(this.mem, tc.s1Regime, tc.s2Regime!, iova, tc.access[access], this.s1Out, this.s2Out))
      return false;
    const r = this.result;
    r.event = 0;
    r.tlbHit = false;
    this.complete(tc, iova, this.s1Out.oa, this.s2Out.oa, true, true);
    return true;
  }

  /** The general walks of both stages, each fault reported. */
  private walkAll(tc: TransCfg, iova: number, ea: number): number {
    const trace = this.trace;
    this.curSte = tc.ste;
    this.curNested = tc.kind === TC_NESTED;
    this.curS1 = tc.s1Regime;
    this.curRecordS1 = tc.recordS1;
    const s1 = tc.kind === TC_S1 || tc.kind === TC_NESTED;
    const s2 = tc.kind === TC_S2 || tc.kind === TC_NESTED;
    let ipa = iova;
    if (s1) {
      const regime = tc.s1Regime;
      // CD.EPD0: a TLB miss in the TTB0 region is a translation fault without a walk.
      if (regime === null) return this.fault(EVT_F_TRANSLATION, false, CLASS_IN, 0, tc.recordS1, 0);
      const fault = walk(this.mem, regime, iova, ea, this.s1Out, this, trace);
      if (fault !== FAULT_NONE) {
        if (fault === FAULT_FETCH) return this.terminate();
        return this.fault(WALK_EVENT[fault], false, CLASS_IN, 0, tc.recordS1, this.s1Out.level);
      }
      ipa = this.s1Out.oa;
    } else if (!(iova < this.iasLimit)) {
      // Stage 1 bypassed: the input must fit the IAS (stage-1 Address Size fault, IHI 0070 §3.4).
      return this.fault(EVT_F_ADDR_SIZE, false, CLASS_IN, 0, true);
    }
    let pa = ipa;
    if (s2) {
      this.s2Class = CLASS_IN;
      if (trace !== null) trace.cls = CLASS_IN;
      const fault = walk(this.mem, tc.s2Regime!, ipa, ea, this.s2Out, this, trace);
      if (fault !== FAULT_NONE) {
        if (fault === FAULT_FETCH) return this.terminate();
        return this.fault(WALK_EVENT[fault], true, CLASS_IN, ipa, tc.recordS2, this.s2Out.level);
      }
      pa = this.s2Out.oa;
    }
    this.complete(tc, iova, ipa, pa, s1, s2);
    return pa;
  }

  /** A walk's answer into the result, and into the TLB as one combined entry. */
  private complete(tc: TransCfg, iova: number, ipa: number, pa: number, s1: boolean, s2: boolean): void {
    const r = this.result;
    const sizeLg2 = Math.min(s1 ? this.s1Out.sizeLg2 : 64, s2 ? this.s2Out.sizeLg2 : 64);
    r.pa = pa;
    r.ipa = ipa;
    r.sizeLg2 = sizeLg2;
    if (tc.tlbCtx !== null && !this.bypassCaches && !this.peekCaches && this.tlbEnabled) {
      // A combined entry covers the smaller of the two leaves (QEMU combine_tlb; reference §3.4).
      const inv = INV_POW2[sizeLg2];
      const size = POW2[sizeLg2];
      const global = s1 && (this.s1Out.descLo & 0x800) === 0;
      const ctx = global && tc.globalCtx !== null ? tc.globalCtx : tc.tlbCtx;
      const perms = (s1 ? this.s1Out.perms : S1_ALL) | ((s2 ? this.s2Out.perms : S2_ALL) << 6);
      const leaf = s1 ? this.s1Out : this.s2Out;
      const granule = s1 ? tc.s1Regime!.granuleLg2 : tc.s2Regime!.granuleLg2;
      this.tlb.insert(
        ctx,
        Math.floor(iova * inv) * size,
        Math.floor(ipa * inv) * size,
        Math.floor(pa * inv) * size,
        sizeLg2,
        leaf.level,
        granule,
        perms,
      );
    }
  }

  /**
   * Walk fetch hook. Stage-1 descriptors of a nested configuration are IPAs: stage 2 translates them
   * (CLASS TT). Physical descriptor addresses outside RAM or the OAS are external aborts (F_WALK_EABT:
   * S2 = 0, CLASS TT for stage 1; S2 = 1 and the class being translated for stage 2).
   */
  fetchDescriptor(addr: number, stage: 1 | 2, _level: number): number {
    if (stage === 1 && this.curNested) {
      const pa = this.s2Translate(addr, CLASS_TT);
      if (pa < 0) {
        if (this.quirks !== NO_QUIRKS) this.quirkTableFault(addr, _level);
        return -1;
      }
      if (!this.mem.contains(pa, 8)) {
        this.walkAbort(false, CLASS_TT, pa);
        return -1;
      }
      return pa;
    }
    if (!(addr < this.oasLimit) || !this.mem.contains(addr, 8)) {
      this.walkAbort(stage === 2, stage === 2 ? this.s2Class : CLASS_TT, addr);
      return -1;
    }
    return addr;
  }

  /**
   * Translates an IPA the SMMU itself reads (a CD, an L1CD, a stage-1 descriptor) through the current
   * STE's stage 2 as a privileged data read. Returns the PA, or -1 with the fault set.
   */
  private s2Translate(ipa: number, cls: number): number {
    const ste = this.curSte!;
    const prev = this.s2Class;
    this.s2Class = cls;
    if (this.trace !== null) this.trace.cls = cls;
    const out = this.s2Fetch;
    const fault = walk(this.mem, ste.s2Regime!, ipa, ACCESS_READ | ACCESS_PRIV, out, this, this.trace);
    this.s2Class = prev;
    if (fault !== FAULT_NONE) {
      if (fault !== FAULT_FETCH) this.setFault(WALK_EVENT[fault], true, cls, ipa, ste.s2r, out.level);
      return -1;
    }
    // STE.S2PTW: a CD fetch or stage-1 walk to Device memory is a stage-2 permission fault.
    if (ste.s2ptw && isDevice(out.descLo, ste.s2fwb)) {
      this.setFault(EVT_F_PERMISSION, true, cls, ipa, ste.s2r, out.level);
      return -1;
    }
    return out.oa;
  }

  /**
   * SmmuQuirks for a stage-2 fault on a stage-1 table address (QEMU): a next-level table is reported as
   * a stage-1 fault (S2 = 0, CLASS TT, the table's IPA, CD.R); TTB0/1 as a read of the table's base.
   */
  private quirkTableFault(descAddr: number, level: number): void {
    const f = this.result.fault;
    const r = this.curS1;
    if (!f.s2 || f.type === EVT_F_WALK_EABT || r === null) return;
    const granule = POW2[r.granuleLg2];
    if (level > r.startLevel) {
      if (!this.quirks.s1TableFaultAsStage1) return;
      f.s2 = false;
      f.ipa = descAddr - (descAddr % granule);
      f.record = this.curRecordS1;
    } else if (this.quirks.configFetchRnwRead) {
      f.rnw = true;
      f.ind = false;
      f.ipa = r.ttb;
    }
  }

  /** SmmuQuirks.configFetchRnwRead for a stage-2 fault on a CD or L1CD fetch; returns null (terminated). */
  private quirkConfigFault(): null {
    const f = this.result.fault;
    if (this.quirks.configFetchRnwRead && f.s2 && f.type !== EVT_F_WALK_EABT) {
      f.rnw = true;
      f.ind = false;
    }
    return null;
  }

  /** Finds (or fetches and caches) the configuration for a transaction. Null: terminated (event set or silent). */
  private lookupConfig(sid: number, ssv: boolean, ssid: number): TransCfg | null {
    const useCache = !this.bypassCaches && this.cache.enabled;
    const fill = useCache && !this.peekCaches;
    let ste = useCache ? this.cache.ste(sid) : undefined;
    if (ste === undefined) {
      const fetched = this.fetchSte(sid);
      if (fetched === null) return null;
      ste = fetched;
      if (fill) this.cache.putSte(ste);
    }
    if (ste.illegal !== null) {
      this.setFault(EVT_C_BAD_STE, false, CLASS_IN, 0, true);
      return null;
    }
    const key = ssv ? ssid + 1 : 0;
    const cached = useCache ? ste.trans.get(key) : undefined;
    if (cached !== undefined) return cached;
    const tc = this.deriveConfig(ste, ssv, ssid);
    if (tc !== null && fill) this.cache.putTrans(ste, key, tc);
    return tc;
  }

  private deriveConfig(ste: SteEntry, ssv: boolean, ssid: number): TransCfg | null {
    const f = this.features;
    const tlb = this.tlbEnabled ? this.tlb : null;
    if (ste.config === 0) return new TransCfg(TC_ABORT, ste, null, f, null);
    // A SubstreamID needs stage 1 with substreams (C_BAD_SUBSTREAMID, IHI 0070 §7.3.9).
    const substreams = ste.s1 && f.ssidSize !== 0 && ste.fields.S1CDMax !== 0;
    if (ssv && (!substreams || ssid >= POW2[ste.fields.S1CDMax])) return this.badSubstream(ssid);
    if (!ste.s1) return new TransCfg(ste.s2 ? TC_S2 : TC_BYPASS, ste, null, f, tlb);
    let index = 0;
    if (ssv) {
      // With S1DSS = 0b10, CD 0 belongs to transactions without a SubstreamID.
      if (ssid === 0 && ste.fields.S1DSS === S1DSS_SSID0) return this.streamDisabled();
      index = ssid;
    } else if (substreams) {
      const dss = ste.fields.S1DSS;
      if (dss === S1DSS_BYPASS) return new TransCfg(ste.s2 ? TC_S2 : TC_S1_BYPASS, ste, null, f, tlb);
      if (dss !== S1DSS_SSID0) return this.streamDisabled();
    }
    const useCache = !this.bypassCaches && this.cache.enabled;
    let cd = useCache ? ste.cds.get(index) : undefined;
    if (cd === undefined) {
      const fetched = this.fetchCd(ste, index);
      if (fetched === null) return null;
      cd = fetched;
      if (useCache && !this.peekCaches) this.cache.putCd(ste, cd);
    }
    if (cd.illegal !== null) {
      this.setFault(EVT_C_BAD_CD, false, CLASS_IN, 0, true);
      return null;
    }
    return new TransCfg(ste.s2 ? TC_NESTED : TC_S1, ste, cd, f, tlb);
  }

  private badSubstream(index: number): null {
    this.setFault(EVT_C_BAD_SUBSTREAMID, false, CLASS_IN, 0, true);
    this.result.fault.ssid = index;
    return null;
  }

  private streamDisabled(): null {
    this.setFault(EVT_F_STREAM_DISABLED, false, CLASS_IN, 0, true);
    return null;
  }

  /** Locates and reads the STE (linear or two-level stream table, IHI 0070 §3.3.1). */
  private fetchSte(sid: number): SteEntry | null {
    const st = this.strtab;
    const f = this.features;
    const log2 = Math.min(st.log2size, f.sidSize);
    if (!(sid < POW2[log2])) {
      this.setFault(EVT_C_BAD_STREAMID, false, CLASS_IN, 0, st.recordInvalidSid);
      return null;
    }
    let steAddr: number;
    if (st.twoLevel) {
      const l1Addr = st.base + Math.floor(sid * INV_POW2[st.split]) * 8;
      if (!this.physOk(l1Addr, 8)) return this.fetchAbort(EVT_F_STE_FETCH, l1Addr);
      const lo = this.mem.readU32(l1Addr) >>> 0;
      const hi = this.mem.readU32(l1Addr + 4) >>> 0;
      this.trace?.config('l1std', l1Addr, l1Addr, [lo, hi]);
      const l1 = decodeL1Std(lo, hi);
      const index = sid % POW2[st.split];
      // Span 0 or reserved, beyond SPLIT + 1, or an index beyond the level-2 array (§7.3.3).
      if (l1.Span === 0 || l1.Span > 11 || l1.Span > st.split + 1 || !(index < POW2[l1.Span - 1])) {
        this.setFault(EVT_C_BAD_STREAMID, false, CLASS_IN, 0, st.recordInvalidSid);
        return null;
      }
      const align = POW2[l1.Span + 5];
      steAddr = Math.floor(l1.L2Ptr / align) * align + index * 64;
    } else {
      steAddr = st.base + sid * 64;
    }
    if (!this.physOk(steAddr, 64)) return this.fetchAbort(EVT_F_STE_FETCH, steAddr);
    const words = new Uint32Array(16);
    for (let i = 0; i < 16; i++) words[i] = this.mem.readU32(steAddr + i * 4);
    this.trace?.config('ste', steAddr, steAddr, words);
    return new SteEntry(sid, words, f, st.e2h);
  }

  /** Locates and reads CD `index` through the STE (linear or two-level CD table, IHI 0070 §3.3.2). */
  private fetchCd(ste: SteEntry, index: number): CdEntry | null {
    const s = ste.fields;
    const f = this.features;
    this.curSte = ste;
    const multi = f.ssidSize !== 0 && s.S1CDMax !== 0;
    const ptrLimit = ste.s2 ? this.iasLimit : this.oasLimit;
    let cdAddr: number;
    if (!multi || s.S1Fmt === 0 || s.S1Fmt === 3) {
      const align = multi ? POW2[s.S1CDMax + 6] : 64;
      cdAddr = Math.floor(s.S1ContextPtr / align) * align + index * 64;
    } else {
      const split = s.S1Fmt === 1 ? 6 : 10;
      const l1Bytes = Math.max(s.S1CDMax > split ? POW2[s.S1CDMax - split] * 8 : 8, 64);
      const l1Addr = Math.floor(s.S1ContextPtr / l1Bytes) * l1Bytes + Math.floor(index * INV_POW2[split]) * 8;
      const pa = ste.s2 ? this.s2Translate(l1Addr, CLASS_CD) : l1Addr;
      if (pa < 0) return this.quirkConfigFault();
      if (!this.physOk(pa, 8)) return this.fetchAbort(EVT_F_CD_FETCH, pa);
      const lo = this.mem.readU32(pa) >>> 0;
      const hi = this.mem.readU32(pa + 4) >>> 0;
      this.trace?.config('l1cd', l1Addr, pa, [lo, hi]);
      const l1 = decodeL1Cd(lo, hi);
      const leafBytes = split === 6 ? 0x1000 : 0x10000;
      const l2 = Math.floor(l1.L2Ptr / leafBytes) * leafBytes;
      // An invalid or out-of-range L1CD is C_BAD_SUBSTREAMID with the CD index (§5.3.1, §3.4.3).
      if (l1.V === 0 || !(l2 < ptrLimit)) return this.badSubstream(index);
      cdAddr = l2 + (index % POW2[split]) * 64;
    }
    const pa = ste.s2 ? this.s2Translate(cdAddr, CLASS_CD) : cdAddr;
    if (pa < 0) return this.quirkConfigFault();
    if (!this.physOk(pa, 64)) return this.fetchAbort(EVT_F_CD_FETCH, pa);
    const words = new Uint32Array(16);
    for (let i = 0; i < 16; i++) words[i] = this.mem.readU32(pa + i * 4);
    this.trace?.config('cd', cdAddr, pa, words);
    return new CdEntry(index, words, ste, f);
  }

  private physOk(pa: number, len: number): boolean {
    return pa + len <= this.oasLimit && this.mem.contains(pa, len);
  }

  private fetchAbort(type: number, addr: number): null {
    this.setFault(type, false, CLASS_IN, 0, true);
    this.result.fault.fetchAddr = addr;
    return null;
  }

  private walkAbort(s2: boolean, cls: number, fetchAddr: number): void {
    this.setFault(EVT_F_WALK_EABT, s2, cls, 0, true);
    this.result.fault.fetchAddr = fetchAddr;
  }

  private setFault(type: number, s2: boolean, cls: number, ipa: number, record: boolean, level = -1): void {
    const f = this.result.fault;
    f.type = type;
    f.s2 = s2;
    f.cls = cls;
    f.ipa = ipa;
    f.record = record;
    f.level = level;
    // A stage-2 fault on a stage-1 table walk is for a table read (TTRnW, F_PERMISSION only).
    f.ttRead = cls === CLASS_TT;
    this.result.event = type;
  }

  private fault(type: number, s2: boolean, cls: number, ipa: number, record: boolean, level = -1): number {
    this.setFault(type, s2, cls, ipa, record, level);
    return this.terminate();
  }

  private terminate(): number {
    const r = this.result;
    r.pa = -1;
    if (r.fault.record && !this.quiet) this.sink.recordEvent(r.fault);
    return -1;
  }

  /** Both stages bypassed: the output is the input. */
  private identity(iova: number): number {
    const r = this.result;
    r.pa = iova;
    r.ipa = iova;
    return iova;
  }

  private silent(): number {
    const r = this.result;
    r.pa = -1;
    r.event = 0;
    return -1;
  }
}
