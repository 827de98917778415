/**
 * Runs a validated scenario: one host, the named processes (each a probe process with the probe's
 * slots and buffer), and — after a `vmm` step — a VMM with its guest. Each step yields a record
 * (the probe's JSON line for probe steps) and the differences from its `expect`.
 */

import { GuestSmmuDriver } from '../guest/smmu-driver.ts';
import { Host } from '../host/host.ts';
import type { Process } from '../host/process.ts';
import { ArmSmmuV3 } from '../iommu/arm-smmu-v3.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../iommu/types.ts';
import { CAP_FULL_SET } from '../mm/task.ts';
import { type DecodedEvent, decodeEvent, explainWalk } from '../smmu/index.ts';
import { errnoName } from '../uapi/errno.ts';
import { IommufdVmm } from '../vmm/iommufd-vmm.ts';
import { Vmm, VmmError } from '../vmm/vmm.ts';
import { diff } from './expect.ts';
import { fillByte, fillPattern, ProbeProcess, type ProbeRecord } from './probe/runner.ts';
import { CAP_BITS, type Scenario, type Step } from './schema.ts';

export interface StepResult {
  step: Step;
  record: ProbeRecord;
  /** Differences from `expect`: empty when it held (or there was none). */
  failures: string[];
}

const hex = (v: number): string => `0x${v.toString(16)}`;

function eventRecord(e: DecodedEvent): Record<string, unknown> {
  return {
    type: `0x${e.type.toString(16).padStart(2, '0')}`,
    name: e.name,
    sid: e.sid,
    s2: e.s2,
    class: e.cls,
    rnw: e.rnw,
    input_addr: hex(e.inputAddr),
    ipa: hex(e.ipa),
  };
}

/** The host driver's logged event (four u64 words) as the eight u32 words decodeEvent reads. */
export function eventWords32(w: readonly bigint[]): Uint32Array {
  const out = new Uint32Array(8);
  w.forEach((q, i) => {
    out[2 * i] = Number(q & 0xffff_ffffn);
    out[2 * i + 1] = Number(q >> 32n);
  });
  return out;
}

/** A guest mapping's prot as io-pgtable takes it: `ro` is read-only, else read-write (both cacheable). */
function protOf(p: unknown): number {
  return p === 'ro' ? IOMMU_READ | IOMMU_CACHE : IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
}

export class ScenarioRunner {
  readonly host: Host;
  private readonly probes = new Map<string, ProbeProcess>();
  private vmm: Vmm | IommufdVmm | null = null;
  private vmmError: string | null = null;
  private guest: GuestSmmuDriver | null = null;
  private hostEventsSeen = 0;

  constructor(readonly scenario: Scenario) {
    this.host = new Host(scenario.host);
  }

  private probe(name: string): ProbeProcess {
    let p = this.probes.get(name);
    if (p === undefined) {
      const o = this.scenario.processes[name] ?? {};
      const uid = o.uid ?? 0;
      let capEff: number | undefined;
      if (o.caps === 'all') capEff = CAP_FULL_SET;
      else if (o.caps === 'none') capEff = 0;
      else if (Array.isArray(o.caps)) capEff = o.caps.reduce((m, c) => m + 2 ** CAP_BITS[c], 0);
      const proc: Process = this.host.spawn({
        uid,
        gid: o.gid ?? uid,
        ...(capEff !== undefined ? { capEff } : {}),
        ...(o.memlock ? { memlock: o.memlock } : {}),
      });
      p = new ProbeProcess(this.host, null, {}, proc);
      this.probes.set(name, p);
    }
    return p;
  }

  /** Runs every step; the caller may stop early by not iterating further. */
  *run(): Generator<StepResult> {
    for (const step of this.scenario.steps) yield this.runStep(step);
  }

  /**
   * Read-only access to what the steps have built, for state views (the playground): the VMM after a
   * successful `vmm` step (its process is `vmm.proc`), the guest's SMMU driver after `guest_init`, and
   * each named process that has run a probe step.
   */
  inspect(): {
    vmm: Vmm | IommufdVmm | null;
    guest: GuestSmmuDriver | null;
    processes: Map<string, Process>;
  } {
    const processes = new Map<string, Process>();
    for (const [name, p] of this.probes) processes.set(name, p.proc);
    return { vmm: this.vmm, guest: this.guest, processes };
  }

  /** Everything exits: processes close their fds, the VMM releases guest RAM. */
  finish(): void {
    for (const p of this.probes.values()) p.exit();
    this.vmm?.shutdown();
  }

  runStep(step: Step): StepResult {
    let record: ProbeRecord;
    if (step.spec.kind === 'probe') {
      const p = this.probe(step.process);
      const before = p.out.length;
      p.runLine({ op: step.spec.op, args: step.spec.args, file: this.scenario.file, line: step.line });
      record = p.out[before];
    } else {
      record = { step: step.index, kind: step.spec.kind, ...this.typed(step.spec.kind, step.spec.body) };
    }
    const failures = step.expect ? diff(record, step.expect) : [];
    if (record.error !== undefined && !(step.expect && 'error' in step.expect))
      failures.push(`error: ${String(record.error)}`);
    return { step, record, failures };
  }

  private needGuest(): { vmm: Vmm | IommufdVmm; guest: GuestSmmuDriver | null } {
    if (this.vmm === null)
      throw new StepError(this.vmmError ? `no guest: the vmm step failed (${this.vmmError})` : 'no guest');
    return { vmm: this.vmm, guest: this.guest };
  }

  private needDriver(): GuestSmmuDriver {
    const g = this.needGuest().guest;
    if (g === null) throw new StepError("the guest's SMMU driver is not initialised: add a guest_init step");
    return g;
  }

  private typed(kind: string, b: Record<string, unknown>): Record<string, unknown> {
    try {
      return this.typedStep(kind, b);
    } catch (e) {
      if (e instanceof StepError) return { error: e.message };
      throw e;
    }
  }

  private typedStep(kind: string, b: Record<string, unknown>): Record<string, unknown> {
    const host = this.host;
    switch (kind) {
      case 'vmm': {
        try {
          const huge: 21 | 30 | undefined = b.huge === '2M' ? 21 : b.huge === '1G' ? 30 : undefined;
          const options = {
            ramSize: (b.ram_size as number | undefined) ?? 16 << 20,
            ...(b.ipa_base !== undefined ? { ipaBase: b.ipa_base as number } : {}),
            ...(huge ? { hugeLg2: huge } : {}),
            ...(b.vsid !== undefined ? { vsid: b.vsid as number } : {}),
          };
          this.vmm =
            b.backend === 'iommufd'
              ? new IommufdVmm(host, options)
              : new Vmm(host, { ...options, ...(b.type !== undefined ? { type: b.type as number } : {}) });
        } catch (e) {
          if (!(e instanceof VmmError)) throw e;
          this.vmmError = e.message;
          return { error: e.message };
        }
        const v = this.vmm;
        return {
          ipa_base: hex(v.ram.ipaBase),
          ram_size: hex(v.ram.size),
          vsid: hex(v.vsid),
          VmLck_kB: v.proc.status().VmLck_kB,
          VmPin_kB: v.proc.status().VmPin_kB,
        };
      }
      case 'guest_init': {
        const { vmm } = this.needGuest();
        const top = vmm.ram.ipaBase + vmm.ram.size;
        const heap = Math.min(vmm.ram.size / 4, 4 << 20);
        this.guest = new GuestSmmuDriver(vmm.vsmmu, vmm.ram, top - heap, top);
        this.guest.init();
        return { heap: `${hex(top - heap)}-${hex(top - 1)}` };
      }
      case 'guest_attach': {
        const g = this.needDriver();
        const { vmm } = this.needGuest();
        const s = g.attachStage1(vmm.vsid, b.asid as number);
        if (vmm.lastError < 0) return { error: errnoName(-vmm.lastError) };
        return { asid: s.asid, cd_ipa: hex(s.cd), ttb0: hex(s.pgtbl.pgd) };
      }
      case 'guest_map': {
        const g = this.needDriver();
        const r = g.map(
          this.needGuest().vmm.vsid,
          b.va as number,
          b.ipa as number,
          b.size as number,
          protOf(b.prot),
        );
        return { ret: r < 0 ? -1 : 0, ...(r < 0 ? { errno: errnoName(-r) } : {}) };
      }
      case 'guest_unmap': {
        const n = this.needDriver().unmap(this.needGuest().vmm.vsid, b.va as number, b.size as number);
        return { unmapped: hex(n) };
      }
      case 'guest_remap': {
        const g = this.needDriver();
        const vsid = this.needGuest().vmm.vsid;
        const s = g.streams.get(vsid);
        if (s === undefined) throw new StepError('no stage-1 domain: add a guest_attach step');
        s.pgtbl.unmap(b.va as number, 0x1000);
        g.map(vsid, b.va as number, b.ipa as number, 0x1000, protOf(b.prot));
        if (b.invalidate) g.invalidateVa(vsid, b.va as number);
        return {};
      }
      case 'guest_invalidate': {
        const g = this.needDriver();
        const vsid = this.needGuest().vmm.vsid;
        if (b.va !== undefined) g.invalidateVa(vsid, b.va as number, b.asid as number | undefined);
        else g.invalidateAsid(vsid);
        return {};
      }
      case 'guest_ste': {
        const g = this.needDriver();
        const { vmm } = this.needGuest();
        const cd = (b.cd_ipa as number | undefined) ?? g.streams.get(vmm.vsid)?.cd ?? 0;
        const config = { abort: 0, bypass: 4, translate: 5 }[b.config as 'abort' | 'bypass' | 'translate'];
        g.writeSte(vmm.vsid, { V: 1, Config: config, S1ContextPtr: cd, S1CIR: 1, S1COR: 1, S1CSH: 3 });
        return vmm.lastError < 0 ? { error: errnoName(-vmm.lastError) } : {};
      }
      case 'write': {
        const { vmm } = this.needGuest();
        const size = b.size as number;
        if (!vmm.ram.contains(b.ipa as number, size))
          throw new StepError(`IPA ${hex(b.ipa as number)} is not guest RAM`);
        if (b.fill !== undefined) vmm.ram.fill(b.ipa as number, size, b.fill as number);
        else vmm.ram.write(b.ipa as number, fillPattern((b.pattern as number | undefined) ?? 1, size));
        return {};
      }
      case 'read': {
        const { vmm } = this.needGuest();
        if (!vmm.ram.contains(b.ipa as number, b.size as number))
          throw new StepError(`IPA ${hex(b.ipa as number)} is not guest RAM`);
        const bytes = vmm.ram.read(b.ipa as number, b.size as number);
        const out: Record<string, unknown> = {
          bytes: Array.from(bytes.subarray(0, 16), (x) => x.toString(16).padStart(2, '0')).join(''),
        };
        // Results the expectation asks about, computed on demand.
        for (let seed = 0; seed < 256; seed++)
          if (bytes.every((x, i) => x === fillByte(i, seed))) {
            out.pattern = seed;
            break;
          }
        if (bytes.every((x) => x === bytes[0])) out.fill = bytes[0];
        return out;
      }
      case 'dma': {
        const { vmm } = this.needGuest();
        vmm.eduDma(b.iova as number, b.size as number, b.dir === 'to_device' ? 0 : 1, b.edu_off as number);
        const last = host.edus.get(host.devices[0].name)!.lastDma;
        return { done: hex(last?.done ?? 0), faults: last?.faults ?? 0 };
      }
      case 'copy': {
        const { vmm } = this.needGuest();
        vmm.copy(b.src as number, b.dst as number, b.size as number);
        return {};
      }
      case 'events': {
        const drv = host.iommu instanceof ArmSmmuV3 ? host.iommu : null;
        const hostEvents = drv
          ? drv.eventLog
              .slice(this.hostEventsSeen)
              .map((e) => eventRecord(decodeEvent(eventWords32(e.words))))
          : [];
        this.hostEventsSeen = drv?.eventLog.length ?? 0;
        const guestEvents = this.guest ? this.guest.events().map(eventRecord) : [];
        return { host: hostEvents, guest: guestEvents };
      }
      case 'walk': {
        if (host.smmu === null) throw new StepError('walk needs an SMMUv3 host');
        const sid = (b.sid as number | undefined) ?? host.devices[0].rid;
        const x = explainWalk(host.smmu, sid, -1, b.iova as number, b.access === 'write');
        return {
          ok: x.pa >= 0,
          pa: x.pa >= 0 ? hex(x.pa) : null,
          reads: x.walk.length,
          s1_reads: x.walk.filter((r) => r.kind === 's1').length,
          config_reads: x.config.length,
          fault: x.event?.name ?? null,
        };
      }
      case 'unmap_guest_ram': {
        const { vmm } = this.needGuest();
        const all = b.iova === undefined;
        const iova = all ? 0 : (b.iova as number);
        const size = (b.size as number | undefined) ?? 0x1000;
        // iommufd: IOMMU_IOAS_UNMAP of [0, U64_MAX] is its unmap-all (docs/iommufd.md).
        const r =
          vmm instanceof IommufdVmm
            ? (({ ret, length }) => ({ ret, size: length }))(
                vmm.iommufd.ioasUnmap({ ioasId: vmm.ioasId, iova, length: all ? 2n ** 64n - 1n : size }),
              )
            : vmm.container.unmapDma(all ? { iova: 0, size: 0, flags: 2 } : { iova, size });
        return {
          ret: r.ret < 0 ? -1 : 0,
          ...(r.ret < 0 ? { errno: errnoName(-r.ret) } : {}),
          size: `0x${r.size.toString(16)}`,
        };
      }
      case 'status': {
        const { vmm } = this.needGuest();
        return { ...vmm.proc.status(), pinned_pages: vmm.proc.mm.pinnedPages };
      }
    }
    throw new Error(`step kind ${kind} not implemented`);
  }
}

/** A step that cannot run in this state: reported as the step's error, never thrown out. */
export class StepError extends Error {}
