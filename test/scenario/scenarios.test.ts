/**
 * The scenario language: every example under examples/ runs with all its expectations holding (they
 * are the kernel-answers rows and DESIGN.md flows written as scenarios), every broken file gets its
 * exact file:line:col: field message and exit 2 before any step runs, and a failed expectation is
 * exit 1 with the difference.
 */

import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadScenario, ScenarioError, ScenarioRunner } from '../../src/scenario/index.ts';
import { runCli as run } from '../cli/run.ts';

const ROOT = join(import.meta.dirname, '../..');
const EXAMPLES = readdirSync(join(ROOT, 'examples')).filter((f) => /\.(ya?ml|json)$/.test(f));
const BROKEN = join(import.meta.dirname, 'broken');
const MESSAGES = parse(readFileSync(join(BROKEN, 'messages.yaml'), 'utf8')) as Record<string, string>;

describe('examples/', () => {
  it('has at least 10 scenarios, the demo among them', () => {
    expect(EXAMPLES.length).toBeGreaterThanOrEqual(10);
    expect(EXAMPLES).toContain('demo.yaml');
  });

  it.each(EXAMPLES)('%s: every expectation holds', (name) => {
    const path = join('examples', name);
    const sc = loadScenario(readFileSync(join(ROOT, path), 'utf8'), path);
    const runner = new ScenarioRunner(sc);
    const failures = [...runner.run()].flatMap((r) => r.failures.map((f) => `${path}:${r.step.line}: ${f}`));
    runner.finish();
    expect(failures).toEqual([]);
    // A scenario that expects nothing proves nothing.
    expect(sc.steps.some((s) => s.expect !== undefined)).toBe(true);
  });
});

describe('broken scenarios', () => {
  const files = readdirSync(BROKEN).filter((f) => f !== 'messages.yaml');

  it('the corpus has at least 20 files, each with its message', () => {
    expect(files.length).toBeGreaterThanOrEqual(20);
    expect(Object.keys(MESSAGES).sort()).toEqual([...files].sort());
  });

  it.each(files)('%s: its precise message, exit 2, nothing run', async (name) => {
    const path = join(BROKEN, name);
    const r = await run('run', path);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(`vfio-nest run: ${path}:${MESSAGES[name]}\n`);
  });

  it('one bad file among good ones stops everything before a step runs', async () => {
    const r = await run(
      'run',
      join(ROOT, 'examples/01-type1-basics.yaml'),
      join(BROKEN, '10-unknown-op.yaml'),
    );
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
  });

  it('loadScenario throws a ScenarioError with the position and field', () => {
    const text = 'steps:\n  - op: map\n    iova: 0x1000\n    size: lots\n';
    const e = (() => {
      try {
        loadScenario(text, 'x.yaml');
      } catch (err) {
        return err;
      }
    })() as ScenarioError;
    expect(e).toBeInstanceOf(ScenarioError);
    expect([e.line, e.col, e.field]).toEqual([4, 11, 'steps[0].size']);
  });
});

describe('vfio-nest run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-nest-scn-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('a failed expectation is exit 1 with file:line and the difference', async () => {
    const p = file(
      'fail.yaml',
      "host: { kernel: '6.18' }\nsteps:\n  - op: open_container\n  - op: check_extension\n    ext: 6\n    expect: { ret: 1 }\n",
    );
    const r = await run('run', p);
    expect(r.code).toBe(1);
    // 6.18 removed type 6: CHECK_EXTENSION(6) = 0 (vfio-type1.md §6, commit 35890f85573c).
    expect(r.out).toContain(`${p}:4: ret: expected 1, got 0`);
  });

  it('--json prints one object per step in the probe shape, with expect_ok', async () => {
    const p = file(
      'json.yaml',
      "host: { kernel: '6.1' }\nsteps:\n  - op: open_container\n  - op: set_iommu\n    type: 3\n    expect: { errno: EINVAL }\n",
    );
    const r = await run('run', '--json', p);
    expect(r.code).toBe(0);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // No group in the container yet: VFIO_SET_IOMMU is EINVAL (vfio-type1.md §3).
    expect(lines.map((l) => [l.step, l.line, l.op, l.ret, l.errno, l.expect_ok])).toEqual([
      [0, 3, 'open_container', 0, null, true],
      [1, 4, 'set_iommu', -1, 'EINVAL', true],
    ]);
  });

  it('a step that cannot run in its state is an error value, not an exception', async () => {
    const p = file(
      'state.yaml',
      "host: { kernel: '6.1', iommu: smmuv3 }\nsteps:\n  - vmm: {}\n  - guest_map: { va: 0x1000, ipa: 0x40000000 }\n",
    );
    const r = await run('run', '--json', p);
    expect(r.code).toBe(1);
    const last = JSON.parse(r.out.trim().split('\n')[1]);
    expect(last.error).toBe("the guest's SMMU driver is not initialised: add a guest_init step");
  });

  it('--bail stops a file at its first failure', async () => {
    const p = file(
      'bail.yaml',
      'steps:\n  - op: open_container\n    expect: { ret: 7 }\n  - op: open_container\n',
    );
    const r = await run('run', '--json', '--bail', p);
    expect(r.code).toBe(1);
    expect(r.out.trim().split('\n')).toHaveLength(1);
  });

  it('JSON scenario files are accepted', async () => {
    const p = file(
      's.json',
      '{"host": {"kernel": "6.12"}, "steps": [{"op": "open_container"}, {"op": "get_api_version", "expect": {"ret": 0}}]}',
    );
    const r = await run('run', p);
    expect(r.code).toBe(0);
    // Its steps run and their expectations are checked: a wrong one fails.
    const bad = file(
      'bad.json',
      '{"steps": [{"op": "open_container"}, {"op": "get_api_version", "expect": {"ret": 1}}]}',
    );
    const b = await run('run', bad);
    expect(b.code).toBe(1);
    expect(b.out).toContain(`${bad}:1: ret: expected 1, got 0`);
  });
});
