/**
 * The 2-D walk grid: a nested translation laid out as the hardware makes it. Rows are stage-1 levels
 * (each row ends with the stage-1 descriptor read; its IPA had to be translated first, across the
 * row, by a stage-2 walk: CLASS TT), and a last row translates the output IPA (CLASS IN). Columns are
 * stage-2 levels. A cold miss of n1 and n2 levels fills (n1 + 1)(n2 + 1) - 1 cells (nested-iommu.md
 * §3.3). Cells the caches saved are shown as skipped; the cell that faulted carries its event record.
 * Pure data, from `explainWalk`: the page renders it, the tests check it.
 */

import type { ExplainedRead, ExplainedWalk } from '../src/smmu/index.ts';
import type { WalkView } from './session.ts';

export type CellState = 'read' | 'skipped' | 'fault';

export interface GridCell {
  /** The read: for a skipped cell, the one a cold walk makes there. */
  read: ExplainedRead;
  state: CellState;
  /** Why a cell was skipped. */
  why?: 'TLB hit' | 'configuration cache hit';
}

export interface GridRow {
  /** `S1 L0` ... for the rows that end in a stage-1 descriptor, `output` for the last. */
  label: string;
  /** What the row's stage-2 walk translates: the stage-1 table's IPA, or the output IPA. */
  ipa: number;
  /** By column (stage-2 level); null where the walk read nothing at that level. */
  s2: (GridCell | null)[];
  /** The stage-1 descriptor the row leads to (null on the output row, or when stage 2 faulted first). */
  s1: GridCell | null;
}

export type GridOutcome =
  | {
      kind: 'pa';
      pa: number;
      ipa: number;
      tlbHit: boolean;
      /** The TLB answered, but the tables now say otherwise: the entry is stale until invalidated. */
      stale: { pa: number; ipa: number; fault: string | null } | null;
    }
  | { kind: 'fault'; event: NonNullable<ExplainedWalk['event']> }
  | { kind: 'silent' };

export interface WalkGrid {
  sid: number;
  iova: number;
  write: boolean;
  /** Stage-2 levels, one per column (empty when stage 2 does not translate). */
  s2Levels: number[];
  rows: GridRow[];
  /** Configuration reads: L1STD, STE, the stage-2 walk that finds the CD, L1CD, CD. */
  config: GridCell[];
  /** Walk cells read (the faulting one included) and skipped. */
  reads: number;
  skipped: number;
  /** `(4 + 1) x (4 + 1) - 1` when the walk has the full nested shape. */
  shape: string | null;
  outcome: GridOutcome;
  /** The cell that faulted (in `rows` or `config`), when one did. */
  faultCell: GridCell | null;
}

/** Faults of the configuration (stream table, CD table), not of the table walk (IHI 0070 §7.3). */
const CONFIG_FAULTS = new Set([0x02, 0x03, 0x04, 0x06, 0x08, 0x09, 0x0a]);
const F_PERMISSION = 0x13;

/** Matches each cold configuration read with the same read in `warm` (by label, level and address). */
function configCells(cold: ExplainedRead[], warm: ExplainedRead[] | null): GridCell[] {
  if (warm === null) return cold.map((read) => ({ read, state: 'read' }));
  const used = new Set<ExplainedRead>();
  const out: GridCell[] = cold.map((c) => {
    const w = warm.find(
      (r) => !used.has(r) && r.label === c.label && r.level === c.level && r.addr === c.addr,
    );
    if (w === undefined) return { read: c, state: 'skipped', why: 'configuration cache hit' };
    used.add(w);
    return { read: w, state: 'read' };
  });
  // A cached configuration can differ from memory (not yet invalidated): show what was read too.
  for (const r of warm) if (!used.has(r)) out.push({ read: r, state: 'read' });
  return out;
}

export function buildGrid(view: WalkView): WalkGrid {
  const { cold, warm } = view;
  const used = warm ?? cold;
  // A TLB hit reads no descriptor (a permission fault from a cached entry reads none either).
  const hit =
    warm !== null &&
    cold.walk.length > 0 &&
    warm.walk.length === 0 &&
    (warm.tlbHit || warm.event?.type === F_PERMISSION);
  const reads = hit ? cold.walk : used.walk;
  const cells: GridCell[] = reads.map((read) =>
    hit ? { read, state: 'skipped', why: 'TLB hit' } : { read, state: 'read' },
  );
  const config = configCells(cold.config, warm === null ? null : warm.config);

  const s2Levels = [...new Set(cells.filter((c) => c.read.kind === 's2').map((c) => c.read.level ?? 0))].sort(
    (a, b) => a - b,
  );
  const rows: GridRow[] = [];
  let pending: GridCell[] = [];
  const row = (label: string, s1: GridCell | null): GridRow => {
    const s2: (GridCell | null)[] = s2Levels.map(() => null);
    for (const c of pending) s2[s2Levels.indexOf(c.read.level ?? 0)] = c;
    return { label, ipa: pending[0]?.read.input ?? s1?.read.addr ?? -1, s2, s1 };
  };
  const firstS1 = cold.walk.find((r) => r.kind === 's1')?.level ?? 0;
  let nextS1 = firstS1;
  for (const c of cells) {
    if (c.read.kind === 's1') {
      rows.push(row(`S1 L${c.read.level}`, c));
      nextS1 = (c.read.level ?? 0) + 1;
      pending = [];
    } else pending.push(c);
  }
  if (pending.length > 0) {
    // Stage 2 translating a stage-1 table (TT) that faulted before the descriptor was read, or the
    // output IPA (IN).
    const tt = pending.some((c) => c.read.label === 'S2 TT');
    rows.push(row(tt ? `S1 L${nextS1}` : 'output', null));
  }

  let outcome: GridOutcome;
  let faultCell: GridCell | null = null;
  const event = used.event;
  if (event !== null) {
    outcome = { kind: 'fault', event };
    const inConfig = CONFIG_FAULTS.has(event.type) || event.cls === 'CD';
    const list = inConfig ? config.filter((c) => c.state !== 'skipped') : hit ? [] : cells;
    faultCell = list[list.length - 1] ?? null;
    if (faultCell !== null) faultCell.state = 'fault';
  } else if (used.pa < 0) {
    outcome = { kind: 'silent' };
  } else {
    const stale =
      hit && (cold.pa !== used.pa || cold.event !== null)
        ? { pa: cold.pa, ipa: cold.ipa, fault: cold.event?.name ?? null }
        : null;
    outcome = { kind: 'pa', pa: used.pa, ipa: used.ipa, tlbHit: hit, stale };
  }

  const s1 = cells.filter((c) => c.read.kind === 's1').length;
  const s2 = cells.length - s1;
  const n2 = s2 / (s1 + 1);
  const shape =
    s1 > 0 && s2 > 0 && Number.isInteger(n2) && n2 === s2Levels.length
      ? `(${s1} + 1) x (${n2} + 1) - 1`
      : null;
  const skipped = cells.filter((c) => c.state === 'skipped').length;
  return {
    sid: view.sid,
    iova: view.iova,
    write: view.write,
    s2Levels,
    rows,
    config,
    reads: cells.length - skipped,
    skipped,
    shape,
    outcome,
    faultCell,
  };
}
