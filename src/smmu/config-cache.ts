/**
 * The configuration cache: STEs and CDs as fetched from memory, decoded once into what translation
 * needs (walk regimes, TLB tags, recording flags), and kept until a CMD_CFGI_* that covers them is
 * completed by a CMD_SYNC (IHI 0070 §4.3, §5.2.1: "might be cached in any state" - valid or not).
 *
 * CDs are cached per StreamID (the STE that located them), as the architecture allows (§5.4.1).
 * In a nested configuration the cache holds CD.TTB0 as the IPA the CD contains: every walk translates
 * it through stage 2 again (reference §9 leaves this choice open; QEMU caches the translated PA).
 */
import {
  PA_SIZE_BITS,
  S1_NEED,
  S2_NEED,
  s2StartLevel,
  startLevelForInput,
  tg0ToGranule,
  WalkRegime,
} from '../pgtable/index.ts';
import type { CdFields } from './cd.ts';
import { cdIllegal, decodeCd } from './cd.ts';
import type { SmmuFeatures } from './registers.ts';
import type { SteFields } from './ste.ts';
import { decodeSte, steIllegal } from './ste.ts';
import type { Tlb, TlbContext } from './tlb.ts';
import { TLB_S1, TLB_S2, TLB_S12, WORLD_NS_EL1, WORLD_NS_EL2, WORLD_NS_EL2_E2H } from './tlb.ts';

/** One decoded STE. */
export class SteEntry {
  readonly sid: number;
  readonly words: Uint32Array;
  readonly fields: SteFields;
  /** Null when legal, else the failed validity check (C_BAD_STE). */
  readonly illegal: string | null;
  /** Config: 0 abort (0b0xx), 4 bypass, 5 stage 1, 6 stage 2, 7 nested. */
  readonly config: number;
  readonly s1: boolean;
  readonly s2: boolean;
  readonly world: number;
  /** VMID tag (-1 when ignored: no stage 2 in the SMMU, or an EL2 StreamWorld). */
  readonly vmid: number;
  readonly s2Regime: WalkRegime | null;
  /** STE.S2R: record stage-2 translation faults. */
  readonly s2r: boolean;
  /** STE.S2PTW: stage-1 walks and CD fetches to Device memory fault at stage 2. */
  readonly s2ptw: boolean;
  /** STE.S2FWB in effect (needs SMMU_IDR3.FWB). */
  readonly s2fwb: boolean;
  /** CDs fetched through this STE, by CD table index. */
  readonly cds = new Map<number, CdEntry>();
  /** Derived translation configurations, by SubstreamID + 1 (0: no SubstreamID). */
  readonly trans = new Map<number, TransCfg>();

  constructor(sid: number, words: Uint32Array, f: SmmuFeatures, e2h: boolean) {
    this.sid = sid;
    this.words = words;
    const ste = decodeSte(words);
    this.fields = ste;
    this.illegal = steIllegal(ste, f);
    this.config = (ste.Config & 4) === 0 ? 0 : ste.Config;
    this.s1 = this.config === 5 || this.config === 7;
    this.s2 = this.config === 6 || this.config === 7;
    // StreamWorld (IHI 0070 STE.STRW): EL2 only for a stage-1-only STE with STRW = 0b10 on a Hyp SMMU.
    this.world =
      f.s1p && f.hyp && this.config === 5 && ste.STRW === 2
        ? e2h
          ? WORLD_NS_EL2_E2H
          : WORLD_NS_EL2
        : WORLD_NS_EL1;
    this.vmid = f.s2p && this.world === WORLD_NS_EL1 ? ste.S2VMID : -1;
    this.s2r = ste.S2R === 1;
    this.s2ptw = ste.S2PTW === 1;
    this.s2fwb = f.fwb && ste.S2FWB === 1;
    this.s2Regime = null;
    if (this.illegal === null && this.s2) {
      const granule = tg0ToGranule(ste.S2TG);
      this.s2Regime = new WalkRegime({
        stage: 2,
        granuleLg2: granule,
        inputBits: 64 - ste.S2T0SZ,
        startLevel: s2StartLevel(granule, ste.S2SL0),
        ttb: ste.S2TTB,
        oaBits: Math.min(PA_SIZE_BITS[ste.S2PS], f.oasBits),
        paMaxBits: f.oasBits,
        affd: ste.S2AFFD === 1,
        xnx: f.xnx,
      });
    }
  }
}

/** One decoded CD, as located through a given STE. */
export class CdEntry {
  readonly index: number;
  readonly words: Uint32Array;
  readonly fields: CdFields;
  readonly illegal: string | null;
  /** TTB0 walk, or null when CD.EPD0 disables it (every TTB0 address then translation-faults). */
  readonly regime0: WalkRegime | null;
  readonly asid: number;
  /** CD.R: record stage-1 translation faults. */
  readonly record: boolean;

  constructor(index: number, words: Uint32Array, ste: SteEntry, f: SmmuFeatures) {
    this.index = index;
    this.words = words;
    const cd = decodeCd(words);
    this.fields = cd;
    this.illegal = cdIllegal(cd, { world: ste.world, s1stalld: ste.fields.S1STALLD === 1 }, f);
    this.asid = ste.world === WORLD_NS_EL2 ? -1 : cd.ASID;
    this.record = cd.R === 1;
    const el2 = ste.world === WORLD_NS_EL2;
    if (this.illegal !== null || (cd.EPD0 === 1 && !el2)) {
      this.regime0 = null;
      return;
    }
    const granule = tg0ToGranule(cd.TG0);
    const inputBits = 64 - cd.T0SZ;
    this.regime0 = new WalkRegime({
      stage: 1,
      granuleLg2: granule,
      inputBits,
      startLevel: startLevelForInput(granule, inputBits),
      ttb: cd.TTB0,
      oaBits: Math.min(PA_SIZE_BITS[cd.IPS], f.oasBits),
      paMaxBits: f.oasBits,
      affd: cd.AFFD === 1,
      hpd: f.had && cd.HAD0 === 1,
      el2,
      wxn: cd.WXN === 1,
      pan: cd.PAN === 1,
    });
  }
}

/** What a translation does, by kind. */
export const TC_ABORT = 0;
/** STE.Config 0b100: both stages bypassed; input above the OAS is a stage-1 F_ADDR_SIZE. */
export const TC_BYPASS = 1;
/** Stage 1 bypassed by S1DSS on a stage-1-only STE: input checked against the IAS. */
export const TC_S1_BYPASS = 2;
export const TC_S1 = 3;
export const TC_S2 = 4;
export const TC_NESTED = 5;

/** A complete configuration for (StreamID, SubstreamID): the fast path's unit. */
export class TransCfg {
  readonly kind: number;
  readonly ste: SteEntry;
  readonly cd: CdEntry | null;
  readonly s1Regime: WalkRegime | null;
  readonly s2Regime: WalkRegime | null;
  /** TLB tags (null: nothing is cached for this kind). */
  readonly tlbCtx: TlbContext | null;
  readonly globalCtx: TlbContext | null;
  readonly tlbKind: number;
  readonly recordS1: boolean;
  readonly recordS2: boolean;
  /** Access attributes after STE.PRIVCFG / INSTCFG, per incoming access (0..7). */
  readonly access: Int8Array;
  /** Stage-1 | stage-2 << 6 permission bits each incoming access needs. */
  readonly need: Int32Array;

  constructor(kind: number, ste: SteEntry, cd: CdEntry | null, f: SmmuFeatures, tlb: Tlb | null) {
    this.kind = kind;
    this.ste = ste;
    this.cd = cd;
    const s1 = kind === TC_S1 || kind === TC_NESTED;
    const s2 = kind === TC_S2 || kind === TC_NESTED;
    this.s1Regime = s1 && cd !== null ? cd.regime0 : null;
    this.s2Regime = s2 ? ste.s2Regime : null;
    this.recordS1 = cd?.record ?? false;
    this.recordS2 = ste.s2r;
    this.tlbKind = kind === TC_NESTED ? TLB_S12 : kind === TC_S2 ? TLB_S2 : TLB_S1;
    if (tlb !== null && (s1 || s2)) {
      const asid = s1 && cd !== null ? cd.asid : -1;
      this.tlbCtx = tlb.context(ste.world, this.tlbKind, ste.vmid, asid);
      // Global entries (nG = 0) match every ASID of the VMID: they live under ASID -1.
      this.globalCtx = s1 ? tlb.context(ste.world, this.tlbKind, ste.vmid, -1) : null;
    } else {
      this.tlbCtx = null;
      this.globalCtx = null;
    }
    this.access = new Int8Array(8);
    this.need = new Int32Array(8);
    const privcfg = f.attrPermsOvr ? ste.fields.PRIVCFG : 0;
    const instcfg = f.attrPermsOvr ? ste.fields.INSTCFG : 0;
    for (let a = 0; a < 8; a++) {
      let e = a;
      if (privcfg === 2) e &= ~4;
      else if (privcfg === 3) e |= 4;
      // INSTCFG only changes reads; writes are always data (IHI 0070 STE.INSTCFG).
      if ((e & 1) === 0) {
        if (instcfg === 2) e &= ~2;
        else if (instcfg === 3) e |= 2;
      } else {
        e &= ~2;
      }
      this.access[a] = e;
      this.need[a] = (s1 ? S1_NEED[e] : 0) | (s2 ? S2_NEED[e] << 6 : 0);
    }
  }
}

/** Cached STEs (with their CDs and derived configurations). */
export class ConfigCache {
  enabled: boolean;
  readonly capacity: number;
  private readonly stes = new Map<number, SteEntry>();
  private entries = 0;
  /** Changes whenever anything is dropped: lets the translation fast path check its shortcut. */
  generation = 0;

  constructor(enabled: boolean, capacity: number) {
    this.enabled = enabled;
    this.capacity = capacity;
  }

  ste(sid: number): SteEntry | undefined {
    return this.enabled ? this.stes.get(sid) : undefined;
  }

  putSte(e: SteEntry): void {
    if (!this.enabled) return;
    this.makeRoom();
    this.stes.set(e.sid, e);
    this.entries++;
  }

  putCd(ste: SteEntry, cd: CdEntry): void {
    if (!this.enabled || this.stes.get(ste.sid) !== ste) return;
    this.makeRoom();
    ste.cds.set(cd.index, cd);
    this.entries++;
  }

  putTrans(ste: SteEntry, key: number, tc: TransCfg): void {
    if (this.enabled && this.stes.get(ste.sid) === ste) ste.trans.set(key, tc);
  }

  invalidateSte(sid: number): void {
    const e = this.stes.get(sid);
    if (e === undefined) return;
    this.entries -= 1 + e.cds.size;
    this.stes.delete(sid);
    this.generation++;
  }

  /** StreamIDs [first, first + count). */
  invalidateSteRange(first: number, count: number): void {
    if (count >= this.stes.size) {
      for (const sid of [...this.stes.keys()])
        if (sid >= first && sid < first + count) this.invalidateSte(sid);
    } else {
      for (let sid = first; sid < first + count; sid++) this.invalidateSte(sid);
    }
  }

  invalidateCd(sid: number, index: number): void {
    const e = this.stes.get(sid);
    if (e === undefined) return;
    if (e.cds.delete(index)) this.entries--;
    e.trans.clear();
    this.generation++;
  }

  invalidateCdAll(sid: number): void {
    const e = this.stes.get(sid);
    if (e === undefined) return;
    this.entries -= e.cds.size;
    e.cds.clear();
    e.trans.clear();
    this.generation++;
  }

  invalidateAll(): void {
    this.stes.clear();
    this.entries = 0;
    this.generation++;
  }

  /** Cached structures (STEs + CDs). */
  get size(): number {
    return this.entries;
  }

  /** Every cached STE (for display). */
  cachedStes(): SteEntry[] {
    return [...this.stes.values()];
  }

  private makeRoom(): void {
    // A bounded cache drops everything when full (the QEMU-like policy for the IOTLB, reused here).
    if (this.entries >= this.capacity) this.invalidateAll();
  }
}
