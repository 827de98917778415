/**
 * The command line: `probe` prints the probe's JSON lines; bad input gets one message naming the
 * file, line and field and exit status 2, before anything runs.
 */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';

function capture() {
  const chunks: string[] = [];
  return {
    write(s: string): void {
      chunks.push(s);
    },
    get text(): string {
      return chunks.join('');
    },
  };
}

async function run(...argv: string[]) {
  const out = capture();
  const err = capture();
  const code = await main(argv, out, err);
  return { code, out: out.text, err: err.text };
}

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
      [1, '01-ok.txt', 'check_extension', 0, null], // 6.18: type 6 is gone
      [2, '01-ok.txt', 'set_iommu', -1, 'EINVAL'], // no group in the container
    ]);
  });

  it.each([
    [
      'unknown op',
      'open_container\nopen_contianer\n',
      ":2: op: unknown op 'open_contianer' (did you mean 'open_container'?)",
    ],
    ['bad number', 'map iova=0x10z size=0x1000\n', ":1: iova: '0x10z' is not a number"],
    ['missing argument', 'map iova=0x1000\n', ":1: size: 'map' needs size="],
    ['unknown argument', 'map iova=0 size=0x1000 szie=1\n', ":1: szie: 'map' takes no argument 'szie'"],
  ])('%s: file:line: field: message, exit 2, nothing printed on stdout', async (_n, text, msg) => {
    const p = file('bad.txt', text);
    const r = await run('probe', p);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err.startsWith(`vfio-nest probe: ${p}${msg}`)).toBe(true);
  });

  it.each([
    [['--kernel', '5.10'], "--kernel: '5.10' is not one of 3.19, 6.1, 6.12, 6.18"],
    [['--iommu', 'amd'], "--iommu: 'amd' is not one of intel, virtio, smmuv3"],
    [['--param', 'foo'], "--param: 'foo' is not module.name=value"],
    [['--param', 'vfio_iommu_type1.nope=1'], "unknown module parameter 'vfio_iommu_type1.nope'"],
    [['--config', '6.12-amd'], "--config: '6.12-amd' is not a configuration name"],
    [['--bogus'], "Unknown option '--bogus'"],
  ])('bad option %j is exit 2 with a message', async (args, msg) => {
    const r = await run('probe', file('x.txt', 'open_container\n'), ...args);
    expect(r.code).toBe(2);
    expect(r.err).toContain(msg);
  });

  it('a missing file is exit 2 naming it', async () => {
    const r = await run('probe', join(dir, 'nope.txt'));
    expect(r.code).toBe(2);
    expect(r.err).toContain('nope.txt: cannot read: ENOENT');
  });
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

  it('an unknown command suggests the nearest', async () => {
    const r = await run('prbe');
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown command 'prbe' (did you mean 'probe'?)");
  });

  it('every command has --help with an example', async () => {
    for (const cmd of ['probe', 'demo']) {
      const r = await run(cmd, '--help');
      expect(r.code).toBe(0);
      expect(r.out).toContain('Example');
    }
  });

  it('demo tells the type-1 story and ends with nothing locked', async () => {
    const r = await run('demo');
    expect(r.code).toBe(0);
    expect(r.out).toContain('set_iommu type=3');
    expect(r.out).toContain('VmLck 128 kB');
    expect(r.out).toContain('After exit: VmLck 0 kB, pinned pages 0');
  });
});
