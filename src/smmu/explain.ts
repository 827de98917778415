/**
 * One translation explained read by read: the configuration fetches (L1STD, STE, L1CD, CD and the
 * stage-2 walks that locate CDs) and the 2-D table walk, each read decoded as the walker interprets
 * it, then the result or the event record. Shared by the CLI's `walk` and the browser's step view;
 * it runs `Smmu.walkTrace`, a quiet dry run that neither uses nor fills the caches (or, with
 * `{ caches: 'peek' }`, looks them up without filling them, so a hit shows as the reads it saved).
 */

import { ACCESS_READ, ACCESS_WRITE, decodeDescriptor, hex64, tg0ToGranule } from '../pgtable/index.ts';
import { decodeCd, decodeL1Cd } from './cd.ts';
import type { Smmu } from './device.ts';
import { type DecodedEvent, decodeEvent, encodeEvent } from './events.ts';
import { decodeL1Std, decodeSte, STE_CFG_NESTED, STE_CFG_S1_TRANS, STE_CFG_S2_TRANS } from './ste.ts';
import type { SmmuTraceRead } from './translate.ts';

export interface ExplainedRead {
  /** 1-based position among the walk reads (0 for configuration reads). */
  n: number;
  kind: SmmuTraceRead['kind'];
  /** `S1`, `S2 TT`, `S2 IN`, `S2 CD`, `STE`, `CD`, `L1STD`, `L1CD`. */
  label: string;
  level: number | null;
  index: number | null;
  /** The address this read serves: the input address for stage-1 reads, the IPA for stage-2 reads. */
  input: number;
  /** The descriptor's own address: an IPA for nested stage-1 reads and CDs, else a PA. */
  addr: number;
  pa: number;
  /** The 64-bit value (the first doubleword for STEs and CDs) as 0x%016x. */
  value: string;
  /** What the walker makes of it: `table -> 0x...`, `page 0x... AP=...`, `invalid`, STE/CD fields. */
  meaning: string;
}

export interface ExplainedWalk {
  sid: number;
  ssid: number;
  iova: number;
  write: boolean;
  /** Physical address, or -1 on a fault. */
  pa: number;
  /** The address between the stages (-1 when the walk stopped before stage 1 finished). */
  ipa: number;
  config: ExplainedRead[];
  walk: ExplainedRead[];
  /** The event the translation would record (null when it succeeded; `silent` when not recorded). */
  event: (DecodedEvent & { silent: boolean }) | null;
  /** The caches were looked up (`caches: 'peek'`) and the TLB held the translation: no walk reads. */
  tlbHit: boolean;
}

const hex = (v: number): string => `0x${v.toString(16)}`;
const CONFIG_NAMES: Record<number, string> = {
  0: 'abort',
  4: 'bypass',
  [STE_CFG_S1_TRANS]: 'stage 1',
  [STE_CFG_S2_TRANS]: 'stage 2',
  [STE_CFG_NESTED]: 'nested',
};
const S1_AP = ['RW (EL1)', 'RW', 'RO (EL1)', 'RO'];
const S2_AP = ['none', 'R', 'W', 'RW'];
const S2TG_LG2 = [12, 16, 14];

/** `space`: what the descriptor's output address is (an IPA for stage 1 of a nested walk). */
function describeDescriptor(r: SmmuTraceRead, granuleLg2: number, space: 'IPA ' | 'PA '): string {
  const stage = r.kind === 's1' ? 1 : 2;
  const d = decodeDescriptor(r.words[0], r.words[1], stage, r.level ?? 0, granuleLg2);
  switch (d.kind) {
    case 'invalid':
      return 'invalid';
    case 'reserved':
      return 'reserved encoding';
    case 'table':
      return `table -> ${space}${hex(d.address)}`;
    default: {
      const perm = stage === 1 ? `AP=${S1_AP[d.fields.AP]}` : `S2AP=${S2_AP[d.fields.S2AP]}`;
      const af = d.fields.AF ? ' AF' : ' AF=0';
      return `${d.kind} ${d.size >= 2 ** 30 ? `${d.size / 2 ** 30}G` : d.size >= 2 ** 20 ? `${d.size / 2 ** 20}M` : `${d.size / 1024}K`} -> ${space}${hex(d.address)} ${perm}${af}`;
    }
  }
}

/**
 * Explains `walkTrace(sid, ssid, iova)`: every read in order, decoded. By default a cold walk;
 * `{ caches: 'peek' }` shows what a transaction would read now, cache hits reading nothing. Either
 * way a dry run: no cache filled, no event recorded.
 */
export function explainWalk(
  smmu: Smmu,
  sid: number,
  ssid: number,
  iova: number,
  write: boolean,
  opts: { caches?: 'peek' } = {},
): ExplainedWalk {
  const w = smmu.walkTrace(sid, ssid, iova, write ? ACCESS_WRITE : ACCESS_READ, {
    caches: opts.caches === 'peek' ? 'peek' : false,
  });
  let s1Granule = 12;
  let s2Granule = 12;
  let nested = false;
  // A configuration-cache hit reads no STE or CD: decode the walk with the cached ones it used.
  const cached = opts.caches === 'peek' ? smmu.configCache.ste(sid) : undefined;
  if (cached !== undefined) {
    s2Granule = S2TG_LG2[cached.fields.S2TG] ?? 12;
    nested = cached.config === STE_CFG_NESTED;
    const cd = cached.cds.get(Math.max(ssid, 0));
    if (cd !== undefined) s1Granule = tg0ToGranule(cd.fields.TG0);
  }
  const rows: ExplainedRead[] = w.trace.reads.map((r) => {
    const row: ExplainedRead = {
      n: 0,
      kind: r.kind,
      label: r.kind === 's1' ? 'S1' : r.kind === 's2' ? `S2 ${r.cls}` : r.kind.toUpperCase(),
      input: iova,
      level: r.level ?? null,
      index: r.index ?? null,
      addr: r.addr,
      pa: r.pa,
      value: hex64(r.words[0], r.words[1]),
      meaning: '',
    };
    switch (r.kind) {
      case 'ste': {
        const s = decodeSte(r.words);
        s2Granule = S2TG_LG2[s.S2TG] ?? 12;
        nested = s.Config === STE_CFG_NESTED;
        const parts = [`V=${s.V}`, `Config=${CONFIG_NAMES[s.Config] ?? hex(s.Config)}`];
        if (s.Config & 1) parts.push(`S1ContextPtr=${hex(s.S1ContextPtr)}`, `S1CDMax=${s.S1CDMax}`);
        if (s.Config & 2) parts.push(`S2TTB=${hex(s.S2TTB)}`, `VMID=${s.S2VMID}`, `S2T0SZ=${s.S2T0SZ}`);
        row.meaning = parts.join(' ');
        break;
      }
      case 'cd': {
        const c = decodeCd(r.words);
        s1Granule = tg0ToGranule(c.TG0);
        row.meaning = `V=${c.V} ASID=${c.ASID} TTB0=${hex(c.TTB0)} T0SZ=${c.T0SZ} TG0=${2 ** (s1Granule - 10)}K`;
        break;
      }
      case 'l1std': {
        const l1 = decodeL1Std(r.words[0], r.words[1]);
        row.meaning = `Span=${l1.Span} L2Ptr=${hex(l1.L2Ptr)}`;
        break;
      }
      case 'l1cd': {
        const l1 = decodeL1Cd(r.words[0], r.words[1]);
        row.meaning = `V=${l1.V} L2Ptr=${hex(l1.L2Ptr)}`;
        break;
      }
      default:
        row.meaning =
          r.kind === 's1'
            ? describeDescriptor(r, s1Granule, nested ? 'IPA ' : 'PA ')
            : describeDescriptor(r, s2Granule, 'PA ');
    }
    return row;
  });
  let event: ExplainedWalk['event'] = null;
  if (w.event !== 0) {
    const words = new Uint32Array(8);
    // The record exactly as the SMMU would write it, quirks of its preset included.
    encodeEvent(smmu.translator.result.fault, words, smmu.quirks.eventIpaFullAddress);
    event = { ...decodeEvent(words), silent: w.silent };
  }
  // A stage-2 walk translates the address of the read that follows it (a stage-1 descriptor, a CD),
  // or the final IPA (the faulting one when stage 2 faulted) when nothing follows.
  let next = w.ipa >= 0 ? w.ipa : (event?.ipa ?? -1);
  for (let i = rows.length - 1; i >= 0; i--) {
    if (rows[i].kind === 's2') rows[i].input = next;
    else next = rows[i].addr;
  }
  const config: ExplainedRead[] = [];
  const walk: ExplainedRead[] = [];
  for (const row of rows) {
    if (row.kind === 's1' || (row.kind === 's2' && row.label !== 'S2 CD')) {
      row.n = walk.length + 1;
      walk.push(row);
    } else config.push(row);
  }
  return { sid, ssid, iova, write, pa: w.pa, ipa: w.ipa, config, walk, event, tlbHit: w.tlbHit };
}
