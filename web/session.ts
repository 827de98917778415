/**
 * A scenario being stepped through in the playground: the model itself, run step by step in the page.
 * Going back replays from the start (the model is deterministic), so every position is exactly the
 * state `vfio-nest run` reaches after the same steps. No DOM here: the page renders what this holds.
 */

import {
  collapseIoctls,
  describeAnswer,
  describeRequest,
  type IoctlCall,
  isProbeNumber,
  loadScenario,
  parseU64,
  recordIoctls,
  type Scenario,
  ScenarioError,
  ScenarioRunner,
  type ShownIoctl,
  type Step,
} from '../src/scenario/index.ts';
import { type ExplainedWalk, explainWalk } from '../src/smmu/index.ts';

/** Why a text is not a scenario: the CLI's message (`file:line:col: field: detail`) and its parts. */
export interface LoadError {
  message: string;
  line: number;
  col: number;
  field: string;
  detail: string;
}

/** A translation shown as a grid: the cold walk (every read) and what the caches would have saved. */
export interface WalkView {
  sid: number;
  iova: number;
  write: boolean;
  /** Every read a translation makes with nothing cached. */
  cold: ExplainedWalk;
  /** What a transaction reads with the caches as they are (hits read nothing); null: caches ignored. */
  warm: ExplainedWalk | null;
}

export interface StepOutcome {
  index: number;
  line: number;
  kind: string;
  /** `guest_map va=0x1000000 ipa=0x40100000 size=0x10000`, as `vfio-nest run` prints it. */
  request: string;
  /** The model's answer, as `vfio-nest run` prints it. */
  answer: string;
  record: Record<string, unknown>;
  failures: string[];
  ok: boolean;
  /** The step's ioctls, consecutive identical calls counted once (the demo's trace). */
  ioctls: ShownIoctl[];
  /**
   * The translation the step made (its first, for `dma`, `copy` and the probe's `edu_dma`) as the
   * caches stood just before it, or the one a `walk` step explains (a cold dry run, caches ignored).
   * Null for other steps.
   */
  walk: WalkView | null;
}

/** Parses and validates scenario text; errors come back as the CLI words them. */
export function parseScenario(text: string, file: string): Scenario | LoadError {
  try {
    return loadScenario(text, file);
  } catch (e) {
    if (e instanceof ScenarioError)
      return { message: e.message, line: e.line, col: e.col, field: e.field, detail: e.detail };
    // Anything else is a bug in the model: a message, never a stack trace.
    const detail = `the model failed to load it: ${e instanceof Error ? e.message : String(e)}`;
    return { message: `${file}: ${detail}`, line: 1, col: 1, field: '', detail };
  }
}

export function isLoadError(x: Scenario | LoadError): x is LoadError {
  return (x as LoadError).message !== undefined && (x as Scenario).steps === undefined;
}

/** The translation a step makes: address, direction, StreamID. Null when it makes none. */
function translationOf(step: Step, deviceSid: number): { iova: number; write: boolean; sid: number } | null {
  if (step.spec.kind === 'probe') {
    if (step.spec.op !== 'edu_dma') return null;
    const args = new Map(step.spec.args);
    const num = (k: string): bigint => {
      const v = args.get(k) ?? '0';
      return isProbeNumber(v) ? parseU64(v) : 0n;
    };
    // The probe's edu DMA: the low 32 bits of iova; dir 0 reads memory, 1 writes it.
    return { iova: Number(num('iova') & 0xffff_ffffn), write: num('dir') !== 0n, sid: deviceSid };
  }
  const b = step.spec.body;
  switch (step.spec.kind) {
    case 'walk':
      return { iova: b.iova as number, write: b.access === 'write', sid: (b.sid as number) ?? deviceSid };
    case 'dma':
      // to_device: the edu reads memory; from_device: it writes memory.
      return { iova: b.iova as number, write: b.dir === 'from_device', sid: deviceSid };
    case 'copy':
      return { iova: b.src as number, write: false, sid: deviceSid };
    default:
      return null;
  }
}

export class Session {
  readonly outcomes: StepOutcome[] = [];
  private runner: ScenarioRunner;
  private readonly calls: IoctlCall[] = [];
  /** Set when the model threw (a bug in the model, never bad input): no further step runs. */
  halted: string | null = null;

  constructor(readonly scenario: Scenario) {
    this.runner = this.start();
  }

  private start(): ScenarioRunner {
    const runner = new ScenarioRunner(this.scenario);
    recordIoctls(runner.host, this.calls);
    return runner;
  }

  /** Steps run so far (0: none; `steps.length`: all). */
  get position(): number {
    return this.outcomes.length;
  }

  get length(): number {
    return this.scenario.steps.length;
  }

  get atEnd(): boolean {
    return this.position >= this.length || this.halted !== null;
  }

  /** The model after `position` steps: read it, do not drive it. */
  get current(): ScenarioRunner {
    return this.runner;
  }

  /** Runs the next step. Returns its outcome, or null at the end (or once halted). */
  next(): StepOutcome | null {
    if (this.atEnd) return null;
    const step = this.scenario.steps[this.position];
    const host = this.runner.host;
    const t = host.smmu !== null ? translationOf(step, host.devices[0].rid) : null;
    let walk: WalkView | null = null;
    if (t !== null && host.smmu !== null) {
      const cold = explainWalk(host.smmu, t.sid, -1, t.iova, t.write);
      // A walk step explains a cold walk by definition; a DMA meets the caches as they are.
      const warm =
        step.spec.kind === 'walk'
          ? null
          : explainWalk(host.smmu, t.sid, -1, t.iova, t.write, { caches: 'peek' });
      walk = { ...t, cold, warm };
    }
    this.calls.length = 0;
    let outcome: StepOutcome;
    try {
      const r = this.runner.runStep(step);
      outcome = {
        index: step.index,
        line: step.line,
        kind: step.spec.kind === 'probe' ? step.spec.op : step.spec.kind,
        request: describeRequest(step),
        answer: describeAnswer(r.record),
        record: r.record as Record<string, unknown>,
        failures: r.failures,
        ok: r.failures.length === 0,
        ioctls: collapseIoctls(this.calls),
        walk,
      };
    } catch (e) {
      // The model threw: a bug in it. Show the message (never a stack) and stop here.
      this.halted = `step ${step.index}: the model failed: ${e instanceof Error ? e.message : String(e)}`;
      outcome = {
        index: step.index,
        line: step.line,
        kind: step.spec.kind === 'probe' ? step.spec.op : step.spec.kind,
        request: describeRequest(step),
        answer: 'the model failed',
        record: {},
        failures: [this.halted],
        ok: false,
        ioctls: collapseIoctls(this.calls),
        walk,
      };
    }
    this.outcomes.push(outcome);
    return outcome;
  }

  /** Moves to `position` steps run: forward by running, backward by replaying from the start. */
  goto(position: number): void {
    const target = Math.max(0, Math.min(position, this.length));
    if (target < this.position) this.reset();
    while (this.position < target && this.next() !== null) {}
  }

  back(): void {
    this.goto(this.position - 1);
  }

  reset(): void {
    this.runner.finish();
    this.outcomes.length = 0;
    this.halted = null;
    this.runner = this.start();
  }

  runToEnd(): void {
    this.goto(this.length);
  }

  /**
   * Any translation on the current state: the cold walk, and (unless `cold`) what a transaction
   * would read now with the caches as they are. A dry run: nothing cached, no event recorded.
   */
  explain(iova: number, opts: { write?: boolean; sid?: number; cold?: boolean } = {}): WalkView | string {
    const host = this.runner.host;
    if (host.smmu === null)
      return `the walk grid needs an SMMUv3 host; this host's IOMMU is ${host.iommu.name}`;
    const sid = opts.sid ?? host.devices[0].rid;
    const write = opts.write ?? false;
    const cold = explainWalk(host.smmu, sid, -1, iova, write);
    const warm = opts.cold ? null : explainWalk(host.smmu, sid, -1, iova, write, { caches: 'peek' });
    return { sid, iova, write, cold, warm };
  }

  /** The address a step works on, for the explorer's default: the last translation at or before `position`. */
  lastAddress(): { iova: number; write: boolean } | null {
    const sid = this.runner.host.devices[0]?.rid ?? 0;
    for (let i = this.position - 1; i >= 0; i--) {
      const t = translationOf(this.scenario.steps[i], sid);
      if (t !== null) return { iova: t.iova, write: t.write };
    }
    for (const step of this.scenario.steps) {
      const t = translationOf(step, sid);
      if (t !== null) return { iova: t.iova, write: t.write };
    }
    return null;
  }

  finish(): void {
    this.runner.finish();
  }
}
