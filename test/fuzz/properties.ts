/**
 * The three fuzz properties, shared by `npm test` (a short budget) and `npm run fuzz` (long runs):
 *  - model: typed and raw operations on every kernel profile and host IOMMU, checked after every
 *    step against the shadow model, the digest and the invariants (world.ts);
 *  - raw: raw ioctls (random request numbers biased to real ones, random argsz, flags, fields and
 *    bytes) on every fd kind (container, group, device, sysfs, eventfd, tty; /dev/iommu and the VFIO
 *    cdev where the host has them; vfio-nest's binding extension on) in every state: each returns
 *    >= 0 or -errno, a failed one changes nothing, the invariants hold;
 *  - smmu: the SMMUv3 fed random STE/CD/page-table/command bytes (smmu-fuzz.ts);
 *  - guest: a hostile guest programming the VMM's virtual SMMUv3 over type-6 nesting (guest-fuzz.ts).
 */

import fc from 'fast-check';
import { KERNEL_VERSIONS, type KernelVersion } from '../../src/uapi/profile.ts';
import type { FuzzConfig } from './facts.ts';
import { type GuestStats, guestCaseArb, runGuestCase } from './guest-fuzz.ts';
import { configArb, type FdSel, MUTATE_BASES, type Op, opArb, SETUPS } from './ops.ts';
import { runSmmuCase, type SmmuStats, smmuCaseArb } from './smmu-fuzz.ts';
import { World } from './world.ts';

export type FuzzKind = 'model' | 'raw' | 'smmu' | 'guest';
export const FUZZ_KINDS: readonly FuzzKind[] = ['model', 'raw', 'smmu', 'guest'];

export interface FuzzStats {
  runs: number;
  steps: number;
  failedCalls: number;
  uncertain: number;
  isolationChecks: number;
  /** Successful calls by operation kind: the runs reach the interesting states. */
  succeeded: Record<string, number>;
  uncertainWhy: Record<string, number>;
  smmu: SmmuStats;
  guest: GuestStats;
}

export function newStats(): FuzzStats {
  return {
    runs: 0,
    steps: 0,
    failedCalls: 0,
    uncertain: 0,
    isolationChecks: 0,
    succeeded: {},
    uncertainWhy: {},
    smmu: { tx: 0, faults: 0, recorded: 0, overflowed: 0, commandErrors: 0 },
    guest: { delivered: 0, dropped: 0 },
  };
}

function account(stats: FuzzStats, w: World): void {
  stats.runs++;
  stats.steps += w.stats.steps;
  stats.failedCalls += w.stats.failedCalls;
  stats.uncertain += w.stats.uncertain;
  stats.isolationChecks += w.stats.isolationChecks;
  for (const [k, v] of w.succeeded) stats.succeeded[k] = (stats.succeeded[k] ?? 0) + v;
  for (const [k, v] of w.uncertainWhy) stats.uncertainWhy[k] = (stats.uncertainWhy[k] ?? 0) + v;
}

function runOps(w: World, ops: Op[]): void {
  for (const op of ops) w.step(op);
  w.finish();
}

/** Model-based runs: every step checked against the shadow. */
export function modelProperty(stats: FuzzStats, kernels: readonly KernelVersion[] = KERNEL_VERSIONS) {
  return fc.property(
    configArb(kernels),
    fc.constantFrom(...SETUPS),
    fc.array(opArb(3), { minLength: 1, maxLength: 60, size: 'large' }),
    (cfg: FuzzConfig, setup: Op[], ops: Op[]) => {
      const w = new World(cfg);
      runOps(w, [...setup, ...ops]);
      account(stats, w);
    },
  );
}

/** A real struct of MUTATE_BASES, unchanged. */
const struct = (name: string, fd: FdSel): Op => ({
  k: 'raw',
  fd,
  req: 0,
  arg: { t: 'mutate', base: MUTATE_BASES.findIndex(([n]) => n === name), sets: [], flips: [] },
});

/** States worth hammering with raw ioctls: every fd kind open, the IOMMU set, memory mapped. */
const RAW_SETUPS: Op[][] = [
  ...SETUPS.map((s): Op[] => [
    ...s,
    { k: 'device', fd: { sel: 'group', i: 0 }, name: 'good' },
    { k: 'open', what: 'eventfd' },
    { k: 'open', what: 'sysfs' },
    { k: 'open', what: 'iommufd' },
    { k: 'open', what: 'cdev' },
  ]),
  // The device through iommufd (where the host has it): cdev bound, an IOAS with memory, attached.
  [
    { k: 'open', what: 'iommufd' },
    { k: 'open', what: 'cdev' },
    ...['bind', 'ioas-alloc', 'ioas-map', 'attach-pt', 'hwpt-alloc'].map((n) =>
      struct(n, { sel: 'any', i: 0 }),
    ),
    { k: 'open', what: 'eventfd' },
  ],
];

/** Raw ioctl fuzzing of every fd kind, in every state, with the model-independent checks. */
export function rawProperty(stats: FuzzStats, kernels: readonly KernelVersion[] = KERNEL_VERSIONS) {
  // A third of the hosts are 6.18 with iommufd (when 6.18 is in the set): /dev/iommu and the cdev.
  const iommufdHost = configArb(['6.18']).filter((c) => c.iommu !== 'intel');
  const hosts = kernels.includes('6.18')
    ? fc.oneof({ weight: 2, arbitrary: configArb(kernels) }, { weight: 1, arbitrary: iommufdHost })
    : configArb(kernels);
  return fc.property(
    hosts,
    fc.record({ nestBind: fc.boolean(), iommufd: fc.constantFrom(true, true, false) }),
    fc.constantFrom(...RAW_SETUPS),
    fc.array(opArb(24), { minLength: 1, maxLength: 60, size: 'large' }),
    (cfg: FuzzConfig, extra, setup: Op[], ops: Op[]) => {
      // iommufd exists on 6.18 hosts built with it, over an SMMUv3 or virtio-iommu (docs/iommufd.md).
      const iommufd = extra.iommufd && cfg.kernel === '6.18' && cfg.iommu !== 'intel';
      const w = new World(cfg, {
        shadow: false,
        hostExtra: { nestBind: extra.nestBind, ...(iommufd ? { iommufd } : {}) },
      });
      runOps(w, [...setup, ...ops]);
      account(stats, w);
    },
  );
}

/** The SMMUv3 fed random bytes. */
export function smmuProperty(stats: FuzzStats) {
  return fc.property(smmuCaseArb, (c) => {
    runSmmuCase(c, stats.smmu);
    stats.runs++;
    stats.steps += c.actions.length;
  });
}

/** A hostile guest on the VMM's virtual SMMUv3. */
export function guestProperty(stats: FuzzStats) {
  return fc.property(guestCaseArb, (c) => {
    runGuestCase(c, stats.guest);
    stats.runs++;
    stats.steps += c.actions.length;
  });
}

export function propertyFor(
  kind: FuzzKind,
  stats: FuzzStats,
  kernels?: readonly KernelVersion[],
): fc.IProperty<unknown[]> {
  const p =
    kind === 'model'
      ? modelProperty(stats, kernels)
      : kind === 'raw'
        ? rawProperty(stats, kernels)
        : kind === 'smmu'
          ? smmuProperty(stats)
          : guestProperty(stats);
  return p as unknown as fc.IProperty<unknown[]>;
}

/** fast-check parameters from the environment: FUZZ_SEED and FUZZ_PATH replay a reported failure. */
export function replayParams(): { seed?: number; path?: string } {
  const out: { seed?: number; path?: string } = {};
  if (process.env.FUZZ_SEED !== undefined) out.seed = Number(process.env.FUZZ_SEED);
  if (process.env.FUZZ_PATH !== undefined) out.path = process.env.FUZZ_PATH;
  return out;
}
