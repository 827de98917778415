/**
 * What the playground shows of the model after a step, read through public, read-only views: VFIO
 * (groups, containers with their type and vfio_dma list, each process's locked memory), the host
 * SMMU (registers, STEs and CDs field by field, TLB and configuration-cache contents, command and
 * event queues decoded) and the guest's virtual SMMU (its registers, its STE and CD in guest RAM,
 * its queues). Plain data (strings and numbers): the page renders it, tests check it. Reading
 * changes nothing: walks are dry runs, queues and tables are read back from memory.
 */

import type { Host } from '../src/host/index.ts';
import type { Process } from '../src/host/process.ts';
import { ArmSmmuV3 } from '../src/iommu/arm-smmu-v3.ts';
import { eventWords32, readAtText, type ScenarioRunner } from '../src/scenario/index.ts';
import {
  type AddrSpec,
  CD_ADDRS,
  CD_FIELDS,
  type Command,
  decodeCommand,
  decodeEvent,
  EVENT_NAMES,
  type FieldSpec,
  getAddr,
  getField,
  hexWords64,
  QueueBase,
  type QueueMemory,
  queueSlots,
  REG,
  type Smmu,
  STE_ADDRS,
  STE_FIELDS,
} from '../src/smmu/index.ts';

const hex = (v: number): string => `0x${v.toString(16)}`;

/** 4096 -> 4K, 0x200000 -> 2M. */
export function sizeText(bytes: number): string {
  for (const [unit, n] of [
    ['T', 2 ** 40],
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const)
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  return hex(bytes);
}

// ---- Structures decoded field by field --------------------------------------------------------

export interface FieldView {
  name: string;
  /** Bit range in the structure, `[3:1]`. */
  bits: string;
  value: number;
  /** The value as the spec names it (`nested`, `4K`) or in hex. */
  text: string;
}

export interface StructView {
  what: 'STE' | 'CD';
  /** Where it was read: `PA 0x...`, or `IPA 0x... = PA 0x...`. */
  at: string;
  /** The 64-bit doublewords as 0x%016x. */
  words: string[];
  fields: FieldView[];
}

const TG_NAMES: Record<number, string> = { 0: '4K', 1: '64K', 2: '16K' };
const S2TG_NAMES: Record<number, string> = { 0: '4K', 1: '64K', 2: '16K' };
const VALUE_NAMES: Record<string, Record<number, string>> = {
  Config: {
    0: 'abort',
    1: 'abort',
    2: 'abort',
    3: 'abort',
    4: 'bypass',
    5: 'stage 1',
    6: 'stage 2',
    7: 'nested',
  },
  S1Fmt: { 0: 'linear', 1: '4K leaf tables', 2: '64K leaf tables' },
  S1DSS: { 0: 'terminate', 1: 'bypass', 2: 'SSID0' },
  STRW: { 0: 'NS-EL1', 2: 'EL2' },
  S2TG: S2TG_NAMES,
  TG0: TG_NAMES,
  TG1: { 1: '16K', 2: '4K', 3: '64K' },
  IPS: { 0: '32 bits', 1: '36 bits', 2: '40 bits', 3: '42 bits', 4: '44 bits', 5: '48 bits', 6: '52 bits' },
  S2PS: { 0: '32 bits', 1: '36 bits', 2: '40 bits', 3: '42 bits', 4: '44 bits', 5: '48 bits', 6: '52 bits' },
};

function bitRange(word: number, lsb: number, width: number): string {
  const lo = word * 32 + lsb;
  return width === 1 ? `[${lo}]` : `[${lo + width - 1}:${lo}]`;
}

function decodeStruct(
  what: 'STE' | 'CD',
  words: ArrayLike<number>,
  specs: readonly FieldSpec[],
  addrs: readonly AddrSpec[],
  at: string,
): StructView {
  const fields: FieldView[] = specs.map(([name, w, lsb, width]) => {
    const value = getField(words, w, lsb, width);
    return { name, bits: bitRange(w, lsb, width), value, text: VALUE_NAMES[name]?.[value] ?? hex(value) };
  });
  for (const [name, w, lsb, hi] of addrs) {
    const value = getAddr(words, w, lsb, hi);
    // In bit order: before the first field that starts above the address.
    const lo = w * 32 + lsb;
    const pos = fields.findIndex((f) => Number(/(\d+)\]$/.exec(f.bits)![1]) > lo);
    const field = { name, bits: `[${(w + 1) * 32 + hi - 1}:${lo}]`, value, text: hex(value) };
    fields.splice(pos < 0 ? fields.length : pos, 0, field);
  }
  return { what, at, words: hexWords64(words), fields };
}

// ---- Queues -------------------------------------------------------------------------------------

export interface QueueEntryView {
  /** Ring position with the wrap bit. */
  pos: number;
  name: string;
  /** The fields that matter for this command or record. */
  detail: string;
  words: string[];
}

export interface QueueView {
  base: string;
  entries: number;
  prod: string;
  cons: string;
  /** The last slots before PROD (events) or CONS (commands), oldest first. */
  recent: QueueEntryView[];
}

/** The fields of a command that say what it does. */
export function commandDetail(c: Command): string {
  const p: string[] = [];
  switch (c.name) {
    case 'CMD_CFGI_STE':
      p.push(`SID=${hex(c.sid)}`, `Leaf=${c.leaf}`);
      break;
    case 'CMD_CFGI_STE_RANGE':
      p.push(c.range === 31 ? 'all StreamIDs (CFGI_ALL)' : `SID=${hex(c.sid)} Range=${c.range}`);
      break;
    case 'CMD_CFGI_CD':
      p.push(`SID=${hex(c.sid)}`, `SSID=${c.ssid}`, `Leaf=${c.leaf}`);
      break;
    case 'CMD_CFGI_CD_ALL':
      p.push(`SID=${hex(c.sid)}`);
      break;
    case 'CMD_TLBI_NH_ASID':
      p.push(`VMID=${c.vmid}`, `ASID=${c.asid}`);
      break;
    case 'CMD_TLBI_NH_VA':
      p.push(`VMID=${c.vmid}`, `ASID=${c.asid}`, `Address=${hex(c.addr)}`, `Leaf=${c.leaf}`);
      break;
    case 'CMD_TLBI_NH_VAA':
    case 'CMD_TLBI_S2_IPA':
      p.push(`VMID=${c.vmid}`, `Address=${hex(c.addr)}`, `Leaf=${c.leaf}`);
      if (c.tg !== 0) p.push(`TG=${c.tg} NUM=${c.num} SCALE=${c.scale}`);
      break;
    case 'CMD_TLBI_NH_ALL':
    case 'CMD_TLBI_S12_VMALL':
      p.push(`VMID=${c.vmid}`);
      break;
    case 'CMD_SYNC':
      p.push(['CS=none', 'CS=IRQ', 'CS=SEV'][c.cs] ?? `CS=${c.cs}`);
      break;
    default:
      break;
  }
  return p.join(' ');
}

function eventDetail(w: ArrayLike<number>): { name: string; detail: string } {
  const e = decodeEvent(w);
  const p = [`SID=${hex(e.sid)}`];
  if (e.ssv) p.push(`SSID=${e.ssid}`);
  if (e.type >= 0x10 || e.type === 0x0b)
    p.push(`S2=${e.s2}`, `CLASS=${e.cls}`, `RnW=${e.rnw}`, `InputAddr=${hex(e.inputAddr)}`);
  if (e.s2) p.push(`IPA=${hex(e.ipa)}`);
  if (e.type === 0x0b || e.type === 0x03 || e.type === 0x09) p.push(`FetchAddr=${hex(e.fetchAddr)}`);
  return { name: `${e.name} (0x${e.type.toString(16).padStart(2, '0')})`, detail: p.join(' ') };
}

function queueView(
  mem: QueueMemory,
  base: QueueBase,
  prod: number,
  cons: number,
  kind: 'cmd' | 'event',
  count: number,
): QueueView {
  const slots = queueSlots(mem, base, kind === 'cmd' ? cons : prod, count);
  const recent = slots.map(({ pos, words: w }) => {
    if (kind === 'cmd') {
      const c = decodeCommand(w[0], w[1], w[2], w[3]);
      return { pos, name: c.name, detail: commandDetail(c), words: hexWords64(w) };
    }
    return { pos, ...eventDetail(w), words: hexWords64(w) };
  });
  return {
    base: hex(base.addr),
    entries: 1 << base.log2size,
    prod: hex(prod),
    cons: hex(cons),
    recent: recent.filter((e) => e.words.some((x) => !/^0x0+$/.test(x))),
  };
}

// ---- VFIO ---------------------------------------------------------------------------------------

export interface DmaView {
  iova: string;
  last: string;
  size: string;
  vaddr: string;
  prot: string;
  lockedPages: number;
}

export interface ContainerView {
  /** VFIO_SET_IOMMU's type; null while none is set. */
  type: number | null;
  typeName: string;
  /** Whether the domains are nesting ones (type 6 where the kernel still has it). */
  nesting: boolean;
  domains: string[];
  dmaAvail: number;
  dmas: DmaView[];
}

export interface GroupView {
  id: number;
  devices: string[];
  open: boolean;
  container: ContainerView | null;
}

export interface ProcessView {
  name: string;
  uid: number;
  VmLck_kB: number;
  VmPin_kB: number;
  memlock: string;
}

export interface VfioView {
  kernel: string;
  iommu: string;
  groups: GroupView[];
  processes: ProcessView[];
}

const TYPE_NAMES: Record<number, string> = {
  1: 'VFIO_TYPE1_IOMMU',
  3: 'VFIO_TYPE1v2_IOMMU',
  6: 'VFIO_TYPE1_NESTING_IOMMU',
};
const RLIM_TEXT = (v: bigint): string => (v >= 2n ** 63n ? 'unlimited' : sizeText(Number(v)));

function processView(name: string, p: Process): ProcessView {
  const s = p.status();
  const m = p.task.memlock;
  return {
    name,
    uid: p.task.uid,
    VmLck_kB: s.VmLck_kB,
    VmPin_kB: s.VmPin_kB,
    memlock: m.cur === m.max ? RLIM_TEXT(m.cur) : `${RLIM_TEXT(m.cur)} (max ${RLIM_TEXT(m.max)})`,
  };
}

export function vfioView(runner: ScenarioRunner): VfioView {
  const host = runner.host;
  const groups: GroupView[] = [...host.vfio.groups.values()].map((g) => {
    const c = g.container;
    const iommu = c?.iommu ?? null;
    let container: ContainerView | null = null;
    if (c !== null && iommu === null) {
      container = {
        type: null,
        typeName: 'no IOMMU type set',
        nesting: false,
        domains: [],
        dmaAvail: 0,
        dmas: [],
      };
    } else if (iommu !== null) {
      const dmas: DmaView[] = iommu.dmaList().map((d) => ({
        iova: hex(d.iova),
        last: hex(d.iova + d.size - 1),
        size: sizeText(d.size),
        vaddr: hex(Number(d.vaddr)),
        prot: `${d.prot & 1 ? 'R' : ''}${d.prot & 2 ? 'W' : ''}` || '-',
        lockedPages: d.lockedPages,
      }));
      container = {
        type: iommu.type,
        typeName: TYPE_NAMES[iommu.type] ?? `type ${iommu.type}`,
        nesting: iommu.nesting,
        domains: iommu.s.domains.map((d) => `${d.domain.driver.name} ${d.domain.type}`),
        dmaAvail: iommu.s.dmaAvail,
        dmas,
      };
    }
    return {
      id: g.iommuGroup.id,
      devices: g.iommuGroup.devices.map((d) => d.name),
      open: g.openedFile !== null,
      container,
    };
  });
  const { vmm, processes } = runner.inspect();
  const procs = [...processes].map(([name, p]) => processView(name, p));
  if (vmm !== null) procs.unshift(processView('VMM', vmm.proc));
  return { kernel: host.profile.version, iommu: host.iommuKind, groups, processes: procs };
}

// ---- The host SMMU ------------------------------------------------------------------------------

export interface StreamView {
  sid: number;
  device: string;
  /** The L1 descriptor of a 2-level stream table, decoded. */
  l1: string | null;
  ste: StructView | null;
  cd: StructView | null;
  /** Why the STE or CD could not be read (an event name), when it could not. */
  note: string | null;
}

export interface TlbRowView {
  tag: string;
  va: string;
  ipa: string;
  pa: string;
  size: string;
  perms: string;
}

export interface SmmuView {
  preset: string;
  enabled: boolean;
  strtab: string;
  streams: StreamView[];
  tlb: { capacity: number; policy: string; entries: TlbRowView[] };
  configCache: { capacity: number; size: number; entries: { sid: string; config: string; cds: string }[] };
  cmdq: QueueView;
  eventq: QueueView;
  /** Records the host driver logged (those it did not hand to a guest). */
  eventLog: { name: string; detail: string }[];
  pendingInvalidations: number;
}

const WORLDS = ['NS-EL1', 'NS-EL2', 'NS-EL2-E2H'];
const TLB_KINDS: Record<number, string> = { 1: 'S1', 2: 'S2', 3: 'S1+S2' };

function permsText(perms: number): string {
  const s1 = perms & 63;
  const s2 = perms >>> 6;
  const a =
    s1 === 63 ? '' : `S1 ${['PR', 'PW', 'PX', 'UR', 'UW', 'UX'].filter((_, i) => s1 & (1 << i)).join(' ')}`;
  const b = s2 === 15 ? '' : `S2 ${['R', 'W', 'XP', 'XU'].filter((_, i) => s2 & (1 << i)).join(' ')}`;
  return [a, b].filter((x) => x !== '').join(', ') || 'all';
}

/** The STE and CD a stream uses, read the way the SMMU reads them (a cold, quiet dry run). */
function streamView(smmu: Smmu, sid: number, device: string): StreamView {
  const w = smmu.walkTrace(sid, -1, 0);
  let l1: string | null = null;
  let ste: StructView | null = null;
  let cd: StructView | null = null;
  for (const r of w.trace.reads) {
    if (r.kind === 'l1std') {
      const span = r.words[0] & 0x1f;
      l1 = `L1STD at ${readAtText(r)}: Span=${span} L2Ptr=${hex(getAddr(r.words, 0, 6, 24))}`;
    } else if (r.kind === 'ste') ste = decodeStruct('STE', r.words, STE_FIELDS, STE_ADDRS, readAtText(r));
    else if (r.kind === 'cd') cd = decodeStruct('CD', r.words, CD_FIELDS, CD_ADDRS, readAtText(r));
  }
  // Faults of the translation of address 0 itself say nothing about the configuration.
  const configFault = w.event !== 0 && w.event < 0x10 && w.event !== 0x0b;
  let note: string | null = null;
  if (configFault) note = `${EVENT_NAMES[w.event] ?? hex(w.event)}: the configuration cannot be used`;
  else if (w.silent && ste === null) note = 'no STE read (SMMU disabled or the stream aborts)';
  return { sid, device, l1, ste, cd, note };
}

export function smmuView(host: Host): SmmuView | null {
  const smmu = host.smmu;
  if (smmu === null) return null;
  const t = smmu.translator;
  const st = t.strtab;
  const tlb = smmu.tlb
    .entries()
    .sort((a, b) => a.ctx.id - b.ctx.id || a.vaBase - b.vaBase)
    .map((e) => {
      const c = e.ctx;
      const tag = [
        WORLDS[c.world] ?? `world ${c.world}`,
        TLB_KINDS[c.kind] ?? `kind ${c.kind}`,
        c.vmid >= 0 ? `VMID ${c.vmid}` : '',
        c.asid >= 0 ? `ASID ${c.asid}` : c.kind === 2 ? '' : 'global',
      ]
        .filter((x) => x !== '')
        .join(' ');
      return {
        tag,
        va: hex(e.vaBase),
        ipa: c.kind === 3 ? hex(e.ipaBase) : '',
        pa: hex(e.paBase),
        size: sizeText(2 ** e.sizeLg2),
        perms: permsText(e.perms),
      };
    });
  const cached = smmu.configCache.cachedStes().map((s) => ({
    sid: hex(s.sid),
    config: VALUE_NAMES.Config[s.fields.Config] ?? hex(s.fields.Config),
    cds: [...s.cds.values()].map((c) => `CD ${c.index} (ASID ${c.fields.ASID})`).join(', '),
  }));
  const log = host.iommu instanceof ArmSmmuV3 ? host.iommu.eventLog : [];
  const eventLog = log.map((e) => eventDetail(eventWords32(e.words)));
  return {
    preset: smmu.preset.name,
    enabled: (smmu.readReg32(REG.CR0) & 1) === 1,
    strtab: `${hex(st.base)}, ${st.twoLevel ? `2-level, SPLIT=${st.split}` : 'linear'}, ${2 ** st.log2size} StreamIDs`,
    streams: host.devices.map((d) => streamView(smmu, d.rid, d.name)),
    tlb: { capacity: smmu.tlb.capacity, policy: smmu.tlb.policy, entries: tlb },
    configCache: { capacity: smmu.configCache.capacity, size: smmu.configCache.size, entries: cached },
    cmdq: queueView(smmu.mem, smmu.cmdq.base, smmu.cmdq.prod, smmu.cmdq.cons, 'cmd', 12),
    eventq: queueView(smmu.mem, smmu.eventq.base, smmu.eventq.prod, smmu.eventq.cons, 'event', 8),
    eventLog,
    pendingInvalidations: smmu.pendingInvalidations,
  };
}

// ---- The guest's virtual SMMU -------------------------------------------------------------------

export interface GuestView {
  enabled: boolean;
  strtab: string;
  /** Valid STEs of the guest's (linear) stream table, with the CD each points at. */
  streams: { vsid: number; ste: StructView; cd: StructView | null }[];
  cmdq: QueueView | null;
  eventq: QueueView | null;
  /** Records the guest's queue had no room for. */
  dropped: number;
}

/** A queue base register pair of the vSMMU, as a QueueBase (to read its ring back). */
function vQueueBase(read: (off: number) => number, off: number, entryBytes: number): QueueBase {
  const b = new QueueBase(19, entryBytes);
  b.write(0, read(off));
  b.write(4, read(off + 4));
  return b;
}

export function guestView(runner: ScenarioRunner): GuestView | null {
  const { vmm, guest } = runner.inspect();
  if (vmm === null) return null;
  const v = vmm.vsmmu;
  const ram = vmm.ram;
  const reg = (off: number): number => v.readReg32(off);
  const cr0 = reg(REG.CR0);
  const base = (reg(REG.STRTAB_BASE + 4) & 0xffffff) * 2 ** 32 + ((reg(REG.STRTAB_BASE) & ~0x3f) >>> 0);
  const log2 = reg(REG.STRTAB_BASE_CFG) & 0x3f;
  const streams: GuestView['streams'] = [];
  const mem: QueueMemory = { readU32: (a) => ram.readU32(a), contains: (a, n) => ram.contains(a, n) };
  if (guest !== null && ram.contains(base, 64 << log2)) {
    for (let vsid = 0; vsid < 2 ** log2; vsid++) {
      const at = base + vsid * 64;
      if ((ram.readU32(at) & 1) === 0) continue;
      const words = Array.from({ length: 16 }, (_, i) => ram.readU32(at + i * 4));
      const ste = decodeStruct('STE', words, STE_FIELDS, STE_ADDRS, `IPA ${hex(at)}`);
      const ptr = getAddr(words, 0, 6, 24);
      let cd: StructView | null = null;
      if ((words[0] & 0xe) >> 1 === 5 && ram.contains(ptr, 64)) {
        const cw = Array.from({ length: 16 }, (_, i) => ram.readU32(ptr + i * 4));
        cd = decodeStruct('CD', cw, CD_FIELDS, CD_ADDRS, `IPA ${hex(ptr)}`);
      }
      streams.push({ vsid, ste, cd });
    }
  }
  const cmdBase = vQueueBase(reg, REG.CMDQ_BASE, 16);
  const evtBase = vQueueBase(reg, REG.EVENTQ_BASE, 32);
  return {
    enabled: (cr0 & 1) === 1,
    strtab:
      guest === null
        ? 'not programmed (no guest_init yet)'
        : `IPA ${hex(base)}, linear, ${2 ** log2} StreamIDs`,
    streams,
    cmdq: guest === null ? null : queueView(mem, cmdBase, reg(REG.CMDQ_PROD), reg(REG.CMDQ_CONS), 'cmd', 12),
    eventq:
      guest === null ? null : queueView(mem, evtBase, reg(REG.EVENTQ_PROD), reg(REG.EVENTQ_CONS), 'event', 8),
    dropped: v.dropped,
  };
}
