/**
 * The command line: `probe` prints the probe's JSON lines; bad input gets one message naming the
 * file, line and field and exit status 2, before anything runs.
 */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { capture, runCli as run } from './run.ts';

const dir = mkdtempSync(join(tmpdir(), 'vfio-nest-cli-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('vfio-nest probe', () => {
  it('prints one JSON line per op, as the real probe does', async () => {
    const p = file('ok.txt', 'open_container\ncheck_extension ext=6  # nesting\nset_iommu type=3\n');
    const r = await run('probe', p, '--kernel', '6.18');
    expect(r.code).toBe(0);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.seq, l.scenario, l.op, l.ret, l.errno])).toEqual([
      [0, '01-ok.txt', 'open_container', 0, null],
      [1, '01-ok.txt', 'check_extension', 0, null], // 6.18: type 6 is gone (vfio-type1.md §6)
      [2, '01-ok.txt', 'set_iommu', -1, 'EINVAL'], // no group in the container (vfio-type1.md §3.3)
    ]);
  });

  it('--local-ops: the local probe ops answer; without it they are unknown, as on the shared probe', async () => {
    const p = file(
      'local.txt',
      'open_container\nopen_group\ngroup_set_container\nset_iommu type=3\ndevice_open\ndev_rw off=0x70000000000 len=2\n',
    );
    const last = (out: string) => JSON.parse(out.trim().split('\n').pop()!);
    const shared = await run('probe', p, '--config', '6.12-intel');
    expect(shared.code).toBe(0);
    expect([last(shared.out).ret, last(shared.out).errno]).toEqual([-1, 'EPROBE_UNKNOWN_OP']);
    const local = await run('probe', p, '--config', '6.12-intel', '--local-ops');
    // The edu's vendor ID through vfio-pci's config region (y6-device-api seq 74).
    expect([last(local.out).ret, last(local.out).value]).toEqual([2, '0x1234']);
  });

  // Bad probe files and bad options: the corpus in corpus.test.ts (broken-probes/, invocations.yaml).
});

describe('vfio-nest', () => {
  it('--help prints usage on stdout with exit 0; no command prints it on stderr with exit 2', async () => {
    const h = await run('--help');
    expect(h.code).toBe(0);
    expect(h.out).toContain('Usage: vfio-nest <command>');
    const none = await run();
    expect(none.code).toBe(2);
    expect(none.err).toContain('Usage: vfio-nest <command>');
  });

  it('every command has --help with an example', async () => {
    for (const cmd of ['probe', 'demo', 'run', 'walk']) {
      const r = await run(cmd, '--help');
      expect(r.code).toBe(0);
      expect(r.out).toContain(`Usage: vfio-nest ${cmd}`);
      expect(r.out).toContain('Example');
    }
  });
});

describe('vfio-nest demo', () => {
  it('tells the nested story on 6.1: type 6, 24 reads, faults routed, stale entry, nothing locked at the end', async () => {
    const r = await run('demo');
    expect(r.code).toBe(0);
    expect(r.out).toContain('ioctl(3, VFIO_SET_IOMMU) = 0');
    expect(r.out).toContain('ioctl(3, VFIO_IOMMU_SET_PASID_TABLE) = 0');
    expect(r.out).toContain('Table walk: 24 reads, 4 stage 1 and 20 stage 2 = (4 + 1) x (4 + 1) - 1');
    expect(r.out).toContain('rule: a nested walk of n1 and n2 levels');
    expect(r.out).toMatch(/status -> VmLck_kB=0 .*pinned_pages=0/);
    expect(r.out).not.toContain('✗');
  });

  it.each([
    // vfio-type1.md §6: 6.12 SMMUv3 type 6 is EPERM (paging domain finalised at allocation); 6.13 removed it.
    ['6.12', 'ioctl(3, VFIO_SET_IOMMU) = -1 EPERM', 'On 6.12 the story stops here'],
    ['6.18', 'ioctl(3, VFIO_SET_IOMMU) = -1 ENODEV', 'Linux 6.13 removed VFIO_TYPE1_NESTING_IOMMU'],
  ])('--kernel %s shows what that kernel does instead', async (kernel, call, why) => {
    const r = await run('demo', '--kernel', kernel);
    expect(r.code).toBe(0);
    expect(r.out).toContain(call);
    expect(r.out).toContain(why);
    expect(r.out).not.toContain('Table walk');
  });

  it('--json prints one object per step with its ioctls', async () => {
    const r = await run('demo', '--json');
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].kind).toBe('vmm');
    expect(lines[0].ioctls.map((c: { ioctl: string }) => c.ioctl)).toContain('VFIO_IOMMU_MAP_DMA');
    expect(lines.every((l) => l.expect_ok)).toBe(true);
  });

  it('--step waits for a line of input before each step after the first', async () => {
    const { PassThrough } = await import('node:stream');
    const { demoCommand } = await import('../../src/cli/demo.ts');
    const input = new PassThrough();
    const out = capture();
    const err = capture();
    const done = demoCommand(['--step', '--json'], out, err, input);
    await new Promise((r) => setTimeout(r, 50));
    expect(out.text.trim().split('\n')).toHaveLength(1); // only the first step ran
    input.write('\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(out.text.trim().split('\n')).toHaveLength(2);
    input.end(); // end of input: the rest runs without waiting
    expect(await done).toBe(0);
    expect(err.text).toContain('[Enter]');
  });

  it('--iommufd tells the story through iommufd on 6.18: VmPin not VmLck, the same 24 reads', async () => {
    const r = await run('demo', '--iommufd');
    expect(r.code).toBe(0);
    expect(r.out).toContain('ioctl(3, IOMMU_VIOMMU_ALLOC) = 0');
    expect(r.out).toContain('ioctl(4, VFIO_DEVICE_ATTACH_IOMMUFD_PT) = 0');
    // oracle 6.18-iommufd x7: iommufd charges pinned_vm (VmPin), VmLck stays 0.
    expect(r.out).toContain('VmLck_kB=0 VmPin_kB=16384');
    expect(r.out).toContain('Table walk: 24 reads');
    expect(r.out).not.toContain('✗');
    const bad = await run('demo', '--iommufd', '--kernel', '6.1');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--iommufd: iommufd nesting is modelled on 6.18 only');
  });
});

describe('vfio-nest walk', () => {
  it("explains the demo's nested miss: 24 reads in (stage-2 x4, stage-1) order, then the output walk", async () => {
    const r = await run('walk', '--json');
    expect(r.code).toBe(0);
    const x = JSON.parse(r.out);
    expect(x.walk).toHaveLength(24);
    // nested-iommu.md §3.3: each stage-1 level is preceded by a full stage-2 walk of its table's IPA.
    expect(x.walk.map((w: { label: string }) => w.label).join(',')).toBe(
      [...Array(4).fill('S2 TT,S2 TT,S2 TT,S2 TT,S1'), 'S2 IN,S2 IN,S2 IN,S2 IN'].join(','),
    );
    expect(x.walk.map((w: { level: number }) => w.level)).toEqual([
      0, 1, 2, 3, 0, 0, 1, 2, 3, 1, 0, 1, 2, 3, 2, 0, 1, 2, 3, 3, 0, 1, 2, 3,
    ]);
    // The stage-2 walks before a stage-1 read translate that read's own IPA.
    for (let i = 0; i < 4; i++) expect(x.walk[i * 5].input).toBe(x.walk[i * 5 + 4].addr);
    expect(x.walk[23].input).toBe(x.ipa);
    expect(x.walk[19].meaning).toBe('page 4K -> IPA 0x40100000 AP=RW AF');
    expect(x.config.map((c: { label: string }) => c.label)).toEqual([
      'L1STD',
      'STE',
      'S2 CD',
      'S2 CD',
      'S2 CD',
      'S2 CD',
      'CD',
    ]);
    expect(x.event).toBeNull();
  });

  it('human output numbers the reads and ends with the result', async () => {
    const r = await run('walk');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ 24 {2}S2 IN +L3 +IPA 0x40100000 /m);
    expect(r.out).toMatch(/Result: PA 0x[0-9a-f]+ \(IPA 0x40100000\)/);
  });

  it('a stage-2 fault on the CD fetch is shown with its event record', async () => {
    // After examples/12's last step the vSTE points the CD at IPA 0x8000000000, which stage 2 lacks.
    const r = await run('walk', 'examples/12-nested-faults.yaml', '--iova', '0x1000000');
    expect(r.code).toBe(0);
    expect(r.out).toContain('Table walk: 0 reads');
    expect(r.out).toContain('Fault: F_TRANSLATION (0x10) S2=1 CLASS=CD');
    expect(r.out).toMatch(
      /Event record: 0x[0-9a-f]{16} 0x[0-9a-f]{16} 0x0000000001000000 0x0000008000000000/,
    );
  });
});
