/**
 * The scenario format (docs/scenarios.md): a `host`, named `processes`, and `steps`. A step is a
 * probe operation (`op:` with the probe's own argument names) or a typed step (one key naming it:
 * `vmm`, `guest_map`, `dma`, `events`, ...), each with an optional `expect`, `say` (narration),
 * `rule` (the kernel file or spec section that decides it) and `process`.
 * Validation returns typed values or throws ScenarioError at the offending field.
 */

import { z } from 'zod';
import { Host, HostConfigError, type HostOptions } from '../host/host.ts';
import {
  CAP_IPC_LOCK,
  CAP_SETGID,
  CAP_SETUID,
  CAP_SYS_ADMIN,
  CAP_SYS_RAWIO,
  CAP_SYS_RESOURCE,
} from '../mm/task.ts';
import { KERNEL_VERSIONS } from '../uapi/profile.ts';
import { formatPath, type LoadedDocument, type Plain, ScenarioError } from './load.ts';
import { PROBE_OPS } from './probe/ops.ts';
import { isProbeNumber, parseU64 } from './probe/parse.ts';

const u64 = z
  .string({ error: 'expected a number' })
  .refine(isProbeNumber, { message: 'not a number (a C literal like 0x1000 or 4096)' })
  .transform((v) => parseU64(v));
/** A number that fits a JS number exactly (addresses and sizes below 2^53). */
const safe = u64
  .refine((v) => v <= BigInt(Number.MAX_SAFE_INTEGER), { message: 'too large (must be below 2^53)' })
  .transform(Number);
const SIZE_UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
/** A size: a number, or `64MiB`, `1GiB`, `2TiB`. */
const size = z.union([
  z
    .string()
    .regex(/^\d+(K|M|G|T)(iB)?$/, {
      message: 'a size like 4096, 0x1000, 64MiB or 1GiB (binary units: 16MB is ambiguous)',
    })
    .transform((v) => Number(v.match(/^\d+/)![0]) * SIZE_UNITS[v.match(/[KMGT]/)![0]]),
  safe,
]);

const hostSchema = z
  .object({
    kernel: z.enum(KERNEL_VERSIONS as unknown as [string, ...string[]]).default('6.12'),
    iommu: z.enum(['intel', 'virtio', 'smmuv3']).default('intel'),
    smmu: z.enum(['s1', 's2', 's1s2']).optional(),
    params: z
      .record(
        z.string().regex(/^[a-z0-9_]+\.[a-z0-9_]+$/, { message: 'module.name' }),
        z.union([z.string(), z.boolean()]),
      )
      .optional(),
    memory: size.optional(),
    group: safe.optional(),
    device: z.string().optional(),
    nest_bind: z.boolean().optional(),
    iommufd: z.boolean().optional(),
  })
  .strict();

/** The capabilities a process may be given by name, and their bit numbers. */
export const CAP_BITS = {
  CAP_IPC_LOCK,
  CAP_SYS_RESOURCE,
  CAP_SYS_RAWIO,
  CAP_SYS_ADMIN,
  CAP_SETUID,
  CAP_SETGID,
} as const;
const CAPS = Object.keys(CAP_BITS) as [keyof typeof CAP_BITS, ...(keyof typeof CAP_BITS)[]];
const processSchema = z
  .object({
    uid: safe.optional(),
    gid: safe.optional(),
    caps: z.union([z.enum(['all', 'none']), z.array(z.enum(CAPS))]).optional(),
    memlock: z.object({ cur: u64, max: u64 }).strict().optional(),
  })
  .strict();

/** A step with no fields (`events:` or `events: {}`; an empty body is read as `{}`). */
const nothing = z.object({}).strict();
const prot = z.enum(['rw', 'ro']).default('rw');

/** Typed steps: the body of each, and the `expect` keys it understands. */
export const TYPED_STEPS = {
  vmm: {
    body: z
      .object({
        ram_size: size.optional(),
        ipa_base: safe.optional(),
        huge: z.enum(['2M', '1G']).optional(),
        type: safe.optional(),
        vsid: safe.optional(),
        backend: z.enum(['type6', 'iommufd']).default('type6'),
      })
      .strict(),
    expect: ['error', 'VmLck_kB', 'VmPin_kB', 'ipa_base', 'ram_size', 'vsid'],
  },
  guest_init: { body: nothing, expect: [] },
  guest_attach: { body: z.object({ asid: safe.default(1) }).strict(), expect: ['error'] },
  guest_map: {
    body: z.object({ va: safe, ipa: safe, size: size.default(0x1000), prot }).strict(),
    expect: ['ret'],
  },
  guest_unmap: { body: z.object({ va: safe, size: size.default(0x1000) }).strict(), expect: ['unmapped'] },
  guest_remap: {
    body: z.object({ va: safe, ipa: safe, prot, invalidate: z.boolean().default(false) }).strict(),
    expect: [],
  },
  guest_invalidate: { body: z.object({ va: safe.optional(), asid: safe.optional() }).strict(), expect: [] },
  guest_ste: {
    body: z.object({ config: z.enum(['abort', 'bypass', 'translate']), cd_ipa: safe.optional() }).strict(),
    expect: ['error'],
  },
  write: {
    body: z
      .object({ ipa: safe, size: size.default(0x1000), pattern: safe.optional(), fill: safe.optional() })
      .strict(),
    expect: [],
  },
  read: {
    body: z.object({ ipa: safe, size: size.default(0x1000) }).strict(),
    expect: ['pattern', 'fill', 'bytes'],
  },
  dma: {
    body: z
      .object({ iova: safe, size: size, dir: z.enum(['to_device', 'from_device']), edu_off: safe.default(0) })
      .strict(),
    expect: ['faults', 'done'],
  },
  copy: { body: z.object({ src: safe, dst: safe, size }).strict(), expect: [] },
  events: { body: nothing, expect: ['host', 'guest'] },
  walk: {
    body: z
      .object({ iova: safe, access: z.enum(['read', 'write']).default('read'), sid: safe.optional() })
      .strict(),
    expect: ['reads', 's1_reads', 'config_reads', 'fault', 'ok'],
  },
  unmap_guest_ram: {
    body: z.object({ iova: safe.optional(), size: size.optional() }).strict(),
    expect: ['ret', 'size'],
  },
  status: { body: nothing, expect: ['VmLck_kB', 'VmPin_kB', 'pinned_pages'] },
} as const;

export type TypedKind = keyof typeof TYPED_STEPS;

export interface ProbeStepSpec {
  kind: 'probe';
  op: string;
  args: [string, string][];
}

export interface TypedStepSpec {
  kind: TypedKind;
  body: Record<string, unknown>;
}

export interface Step {
  index: number;
  line: number;
  spec: ProbeStepSpec | TypedStepSpec;
  process: string;
  say?: string;
  rule?: string;
  expect?: Record<string, Plain>;
}

export interface Scenario {
  file: string;
  name: string;
  description?: string;
  host: HostOptions;
  processes: Record<string, z.infer<typeof processSchema>>;
  steps: Step[];
}

const COMMON = new Set(['process', 'say', 'rule', 'expect']);
const VMM_STEPS = new Set<TypedKind>(Object.keys(TYPED_STEPS).filter((k) => k !== 'vmm') as TypedKind[]);

function fail(doc: LoadedDocument, path: (string | number)[], detail: string): never {
  const p = doc.position(path);
  throw new ScenarioError(doc.file, p.line, p.col, formatPath(path), detail);
}

type Issue = z.core.$ZodIssue;

/** How far into the value an issue got (an unknown key is one level below its object). */
const depth = (i: Issue): number => i.path.length + (i.code === 'unrecognized_keys' ? 1 : 0);

/** In a union, the branch that got furthest is the one the author meant: report its issue. */
function deepest(issue: Issue): Issue {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return issue;
  let best: Issue | null = null;
  for (const branch of issue.errors)
    for (const inner of branch) {
      const d = deepest({ ...inner, path: [...issue.path, ...inner.path] } as Issue);
      if (best === null || depth(d) > depth(best)) best = d;
    }
  return best ?? issue;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const k of path)
    v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function parseWith<T extends z.ZodType>(
  doc: LoadedDocument,
  schema: T,
  value: unknown,
  at: (string | number)[],
): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = deepest(r.error.issues[0]);
  const path = [...at, ...(issue.path as (string | number)[])];
  if (issue.code === 'unrecognized_keys')
    return fail(doc, [...path, issue.keys[0]], `unknown field '${issue.keys[0]}'`);
  if (issue.path.length > 0 && valueAt(value, issue.path) === undefined)
    return fail(doc, path, 'missing (required)');
  let msg = issue.message;
  if (issue.code === 'invalid_value') msg = `expected one of ${issue.values.join(', ')}`;
  else if (issue.code === 'invalid_key')
    msg = 'not a module.name parameter (e.g. vfio_iommu_type1.allow_unsafe_interrupts)';
  else if (issue.code === 'invalid_union') msg = 'not a valid value here (see docs/scenarios.md)';
  return fail(doc, path, msg);
}

export function validateScenario(doc: LoadedDocument): Scenario {
  const root = doc.value;
  if (root === null || typeof root !== 'object' || Array.isArray(root))
    return fail(doc, [], 'a scenario is a mapping with host, processes and steps');
  for (const k of Object.keys(root))
    if (!['name', 'description', 'host', 'processes', 'steps'].includes(k))
      fail(doc, [k], `unknown field '${k}'`);
  const host = parseWith(doc, hostSchema, root.host ?? {}, ['host']);
  const processes = parseWith(doc, z.record(z.string(), processSchema), root.processes ?? {}, ['processes']);
  const stepsValue = root.steps;
  if (!Array.isArray(stepsValue) || stepsValue.length === 0)
    return fail(doc, ['steps'], 'a non-empty list of steps is needed');
  let vmmSeen = false;
  const steps: Step[] = stepsValue.map((raw, i) => {
    const at = ['steps', i];
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      return fail(doc, at, 'a step is a mapping');
    const keys = Object.keys(raw).filter((k) => !COMMON.has(k));
    const process = raw.process ?? 'main';
    if (typeof process !== 'string') return fail(doc, [...at, 'process'], 'a process name');
    if (process !== 'main' && !(process in processes))
      return fail(doc, [...at, 'process'], `no process '${process}' under processes`);
    for (const k of ['say', 'rule'] as const)
      if (raw[k] !== undefined && typeof raw[k] !== 'string') fail(doc, [...at, k], 'expected text');
    if (
      raw.expect !== undefined &&
      (raw.expect === null || typeof raw.expect !== 'object' || Array.isArray(raw.expect))
    )
      fail(doc, [...at, 'expect'], 'a mapping of expected fields');
    let spec: ProbeStepSpec | TypedStepSpec;
    if ('op' in raw) {
      const op = raw.op;
      if (typeof op !== 'string' || PROBE_OPS[op] === undefined)
        return fail(doc, [...at, 'op'], `unknown probe op '${String(op)}'`);
      const opSpec = PROBE_OPS[op];
      const args: [string, string][] = [];
      for (const k of keys) {
        if (k === 'op') continue;
        const kind = opSpec.args[k];
        if (kind === undefined)
          fail(
            doc,
            [...at, k],
            `'${op}' takes no argument '${k}' (it takes: ${Object.keys(opSpec.args).join(', ') || 'none'})`,
          );
        const v = raw[k];
        if (typeof v !== 'string' && typeof v !== 'boolean') fail(doc, [...at, k], 'a number or a word');
        const text = typeof v === 'boolean' ? (v ? '1' : '0') : v;
        if (kind === 'number' && !isProbeNumber(text))
          fail(doc, [...at, k], `'${text}' is not a number (a C literal like 0x1000 or 4096)`);
        args.push([k, text]);
      }
      for (const req of opSpec.required ?? [])
        if (!args.some(([k]) => k === req)) fail(doc, at, `'${op}' needs ${req}`);
      spec = { kind: 'probe', op, args };
    } else {
      if (keys.length !== 1) {
        const names = Object.keys(TYPED_STEPS).join(', ');
        return keys.length === 0
          ? fail(doc, at, `a step needs op: or one of ${names}`)
          : fail(doc, [...at, keys[1]], `a step does one thing: '${keys[0]}' and '${keys[1]}' are two`);
      }
      const kind = keys[0] as TypedKind;
      const def = TYPED_STEPS[kind];
      if (def === undefined)
        return fail(
          doc,
          [...at, kind],
          `unknown step '${kind}' (steps: op, ${Object.keys(TYPED_STEPS).join(', ')})`,
        );
      if (kind === 'vmm') vmmSeen = true;
      else if (VMM_STEPS.has(kind) && !vmmSeen)
        return fail(doc, [...at, kind], `'${kind}' needs a guest: put a 'vmm' step before it`);
      const body = parseWith(doc, def.body as z.ZodType, raw[kind] ?? {}, [...at, kind]) as Record<
        string,
        unknown
      >;
      if (kind === 'vmm' && body.backend === 'iommufd') {
        if (host.iommufd !== true)
          return fail(
            doc,
            [...at, kind, 'backend'],
            'an iommufd VMM needs a host built with it: host: { iommufd: true }',
          );
        if (body.type !== undefined)
          return fail(doc, [...at, kind, 'type'], 'an iommufd VMM has no VFIO IOMMU type');
      }
      if (raw.expect && typeof raw.expect === 'object')
        for (const k of Object.keys(raw.expect))
          if (!(def.expect as readonly string[]).includes(k))
            fail(
              doc,
              [...at, 'expect', k],
              `'${kind}' has no result '${k}' (it has: ${def.expect.join(', ') || 'none'})`,
            );
      spec = { kind, body };
    }
    const step: Step = { index: i, line: doc.position(at).line, spec, process };
    if (typeof raw.say === 'string') step.say = raw.say;
    if (typeof raw.rule === 'string') step.rule = raw.rule;
    if (raw.expect && typeof raw.expect === 'object' && !Array.isArray(raw.expect))
      step.expect = raw.expect as Record<string, Plain>;
    return step;
  });
  if (vmmSeen && host.iommu !== 'smmuv3')
    fail(doc, ['host', 'iommu'], 'a guest (vmm step) needs iommu: smmuv3');
  const hostOptions: HostOptions = {
    kernel: host.kernel as HostOptions['kernel'],
    iommu: host.iommu,
  };
  if (host.smmu !== undefined) hostOptions.smmu = host.smmu;
  if (host.params !== undefined)
    hostOptions.params = Object.fromEntries(
      Object.entries(host.params).map(([k, v]) => [k, typeof v === 'boolean' ? (v ? '1' : '0') : v]),
    );
  if (host.memory !== undefined) hostOptions.memory = host.memory;
  if (host.group !== undefined) hostOptions.group = host.group;
  if (host.device !== undefined) hostOptions.device = host.device;
  if (host.nest_bind !== undefined) hostOptions.nestBind = host.nest_bind;
  if (host.iommufd !== undefined) hostOptions.iommufd = host.iommufd;
  // What only the host knows (module parameters and their values, device names) is checked by building one.
  try {
    new Host(hostOptions);
  } catch (e) {
    if (!(e instanceof HostConfigError)) throw e;
    return fail(doc, ['host', ...e.option.split(/\.(.*)/s).filter(Boolean)], e.message);
  }
  const name =
    typeof root.name === 'string'
      ? root.name
      : doc.file
          .split('/')
          .pop()!
          .replace(/\.(ya?ml|json)$/, '');
  const sc: Scenario = { file: doc.file, name, host: hostOptions, processes, steps };
  if (typeof root.description === 'string') sc.description = root.description;
  return sc;
}
