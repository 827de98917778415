/**
 * Real programs against the model: the unchanged probe (test/kernel-answers/probe/vfioprobe.c, built
 * dynamically so LD_PRELOAD applies) runs every public scenario, and the oracle's probe files but
 * x3 (65535 maps, one round trip each: too slow for a unit test), through libvfio-nest-preload.so
 * and `vfio-nest serve`, for the intel and virtio configurations. Its output must equal what
 * `vfio-nest probe` prints for the same configuration and the real kernels' recordings. The device
 * scenario (i1-dma-v2) has the edu DMA to and from the probe's own buffer, checked by the probe
 * itself (cmp_buf on its memory). Then: no server, a server that dies, a server that hangs, and
 * test/server/calls.c for dup/fork/munmap/mmap/sysfs and the process state.
 */

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { configFromName } from '../../src/scenario/probe/config.ts';
import { runProbeFiles } from '../../src/scenario/probe/index.ts';
import { comparable, listRecordings, loadRecording } from '../helpers/recordings.ts';
import { buildC, buildPreload, haveGcc, jsonLines, ROOT, runClient, startServe, tempDir } from './native.ts';

const CONFIGS = [
  '6.1-intel',
  '6.12-intel',
  '6.18-intel',
  '6.12-virtio',
  '6.18-virtio',
  '6.12-virtio-no-unsafe-irq',
];
const SCENARIOS = join(ROOT, 'test/kernel-answers/scenarios');
const ORACLE_PROBES = join(ROOT, 'test/oracle/probes');
const FILES = [
  ...readdirSync(SCENARIOS)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => join(SCENARIOS, f)),
  ...readdirSync(ORACLE_PROBES)
    .filter((f) => f.endsWith('.txt') && !f.startsWith('x3-'))
    .sort()
    .map((f) => join(ORACLE_PROBES, f)),
];
const RECORDING_ROOTS = [join(ROOT, 'test/kernel-answers'), join(ROOT, 'test/oracle/answers')];

/** The machine's group and device for a configuration, as its recordings' oracle_env says. */
function machine(config: string): { group?: number; device?: string } {
  for (const root of RECORDING_ROOTS)
    for (const [c, f] of listRecordings(root)) {
      if (c !== config) continue;
      const env = loadRecording(root, c, f).env;
      if (env.group !== undefined) return { group: Number(env.group), device: env.device };
    }
  return {};
}

const base = (f: string): string => f.split('/').pop()!;

/** A test program's `name=value` lines (test/server/calls.c, cdev.c). */
const keyValues = (stdout: string): Record<string, string> =>
  Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );

if (!haveGcc()) {
  describe('interposer', () => {
    it.skip('skipped: gcc is not installed (the interposer and the probe are C programs)', () => {});
  });
} else {
  describe('real programs through libvfio-nest-preload.so and vfio-nest serve', () => {
    let dir = '';
    let preload = '';
    let probe = '';

    beforeAll(() => {
      dir = tempDir();
      preload = buildPreload(dir);
      probe = buildC(dir, 'test/kernel-answers/probe/vfioprobe.c', 'vfioprobe');
    });

    const clientEnv = (socket: string, m: { group?: number; device?: string }): Record<string, string> => ({
      LD_PRELOAD: preload,
      VFIO_NEST_SOCKET: socket,
      VFIO_NEST_ROOT: '1', // the probe starts as root with every capability, as on the oracle
      VFIO_NEST_MEMLOCK: 'host', // and the kernel's default RLIMIT_MEMLOCK
      ...(m.group !== undefined ? { VFIO_GROUP: String(m.group) } : {}),
      ...(m.device !== undefined ? { VFIO_DEVICE: m.device } : {}),
    });

    for (const config of CONFIGS) {
      it.concurrent(`${config}: the probe's output equals vfio-nest probe and the recordings`, async () => {
        const cfg = configFromName(config)!;
        const m = machine(config);
        const hostArgs = ['--config', config];
        if (m.group !== undefined) hostArgs.push('--group', String(m.group));
        if (m.device !== undefined) hostArgs.push('--device', m.device);
        const serve = await startServe(join(dir, `${config}.sock`), hostArgs);
        const got = new Map<string, Record<string, unknown>[]>();
        try {
          for (const [i, file] of FILES.entries()) {
            const name = `${String(i + 1).padStart(2, '0')}-${base(file)}`;
            const r = await runClient(probe, [file, name], clientEnv(serve.socket, m));
            expect(r.code, `${config} ${name}: ${r.stderr}`).toBe(0);
            got.set(base(file), jsonLines(r.stdout));
          }
        } finally {
          await serve.stop();
        }

        // The same files through the model directly, on one host, as vfio-nest probe runs them.
        const model = runProbeFiles(
          FILES.map((f) => ({ name: base(f), text: readFileSync(f, 'utf8') })),
          { ...cfg.host, ...m },
          { ...cfg.probe, ...m },
        );
        for (const [i, file] of FILES.entries()) {
          const want = model[i].lines.map(comparable);
          const have = got.get(base(file))!.map(comparable);
          expect(have.length, `${config} ${base(file)}: lines`).toBe(want.length);
          for (let k = 0; k < want.length; k++)
            expect(have[k], `${config} ${base(file)} seq ${k}`).toEqual(want[k]);
        }

        // And the real kernels, where a recording of this configuration ran the file.
        let compared = 0;
        for (const root of RECORDING_ROOTS)
          for (const [c, f] of listRecordings(root)) {
            if (c !== config) continue;
            const rec = loadRecording(root, c, f);
            rec.scenarios.forEach((s, j) => {
              const have = got.get(s);
              if (have === undefined) return;
              const want = rec.lines[j].map(comparable);
              expect(have.length, `${config} ${f} ${s}: lines`).toBe(want.length);
              for (let k = 0; k < want.length; k++)
                expect(have.map(comparable)[k], `${config} ${f} ${s} seq ${k}`).toEqual(want[k]);
              compared++;
            });
          }
        expect(compared, `${config}: recordings compared`).toBeGreaterThanOrEqual(5);

        // The device really moved the probe's bytes: the round trip compared equal in its own memory
        // (where type-1 can be set at all: without allow_unsafe_interrupts virtio-iommu refuses it).
        const dma = got.get('i1-dma-v2.txt')!;
        const typeSet = dma.find((l) => l.op === 'set_iommu')!.ret === 0;
        expect(typeSet).toBe(config !== '6.12-virtio-no-unsafe-irq');
        expect(dma.find((l) => l.op === 'cmp_buf')).toMatchObject(
          typeSet ? { ret: 0, first_diff: -1 } : { ret: -1, first_diff: 0 },
        );
        expect(dma.filter((l) => l.op === 'edu_dma').every((l) => l.ret === (typeSet ? 0 : -1))).toBe(true);
      });
    }

    it.concurrent('without a server, VFIO calls fail at once with ENODEV', async () => {
      const r = await runClient(
        probe,
        [join(SCENARIOS, 'a-basic-v2.txt')],
        clientEnv(join(dir, 'nobody.sock'), {}),
      );
      const lines = jsonLines(r.stdout);
      expect(lines[0]).toMatchObject({ op: 'open_container', ret: -1, errno: 'ENODEV' });
      expect(r.stderr).toMatch(/vfio-nest-preload: cannot reach the server at .*nobody\.sock/);
      expect(r.ms).toBeLessThan(5000);
    });

    it.concurrent('a server that dies mid-session gives ENODEV; a silent one times out; closing still works', async () => {
      const file = join(dir, 'pause.txt');
      writeFileSync(
        file,
        'open_container\nsleep ms=1200\nget_api_version\nclose_container\nopen_container\n',
      );
      for (const how of ['SIGKILL', 'SIGSTOP'] as const) {
        const serve = await startServe(join(dir, `dies-${how}.sock`), ['--trace']);
        const run = runClient(probe, [file], { ...clientEnv(serve.socket, {}), VFIO_NEST_TIMEOUT_MS: '500' });
        for (let i = 0; i < 100 && !serve.log.includes('open("/dev/vfio/vfio")'); i++)
          await new Promise((r) => setTimeout(r, 50));
        serve.proc.kill(how);
        const r = await run;
        if (how === 'SIGSTOP') serve.proc.kill('SIGCONT');
        await serve.stop('SIGKILL');
        const lines = jsonLines(r.stdout);
        expect(lines.map((l) => [l.op, l.ret, l.errno])).toEqual([
          ['open_container', 0, null],
          ['sleep', 0, null],
          ['get_api_version', -1, 'ENODEV'],
          ['close_container', 0, null],
          ['open_container', -1, 'ENODEV'],
        ]);
        expect(r.ms).toBeLessThan(8000);
      }
    });

    it.concurrent("the device cdev as QEMU's iommufd backend finds it: vfio-dev listed, its dev attribute, fstat, bind", async () => {
      const cdev = buildC(dir, 'test/server/cdev.c', 'cdev');
      const serve = await startServe(join(dir, 'cdev.sock'), ['--config', '6.18-iommufd']);
      let r: Awaited<ReturnType<typeof runClient>>;
      try {
        r = await runClient(cdev, [], clientEnv(serve.socket, {}));
      } finally {
        await serve.stop();
      }
      expect(r.code, r.stderr).toBe(0);
      const got = keyValues(r.stdout);
      expect(got).toEqual({
        entry0: 'vfio0',
        entries: '1',
        opendir_other: 'ENOENT', // not a device of the model
        dev_read: '6 253:0', // oracle x19-cdev-sysfs seq 0
        dev_stdio: '253:0', // stdio's reads do not pass through read(2): a snapshot
        cdev: 'chr 253:0', // its sysfs dev's numbers (QEMU's open_cdev checks them)
        iommufd: '1:3', // other model fds are the /dev/null they stand on
        bind: '0',
      });
    });

    it.concurrent('dup, fork, munmap, mmap, sysfs, the process state and /proc/self/status through the interposer', async () => {
      const calls = buildC(dir, 'test/server/calls.c', 'calls');
      const serve = await startServe(join(dir, 'calls.sock'), ['--config', '6.12-intel']);
      let r: Awaited<ReturnType<typeof runClient>>;
      let status: Awaited<ReturnType<typeof runClient>>;
      try {
        r = await runClient(calls, [], clientEnv(serve.socket, {}));
        // Another program on the same server: /proc/self/status is the model's where it says so.
        const env = { ...clientEnv(serve.socket, {}), VFIO_NEST_ROOT: '0', VFIO_NEST_CAPEFF: '4000' };
        status = await runClient('/bin/cat', ['/proc/self/status'], env);
      } finally {
        await serve.stop();
      }
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/^CapEff:\t0000000000004000$/m);
      expect(status.stdout).toMatch(/^CapPrm:\t0000000000004000$/m);
      expect(status.stdout).toMatch(/^VmLck:\s+0 kB$/m);
      expect(status.stdout).toMatch(/^Name:\tcat$/m); // the rest is the real file
      expect(r.code, r.stderr).toBe(0);
      const got = keyValues(r.stdout);
      expect(got).toEqual({
        dup_ge_100: '1',
        dup_api: '0', // a dup shares the container
        fcntl_dup_api: '0',
        group: '1',
        group_after_dup2: '-1 ENOTTY', // dup2 of /dev/null over it: the real /dev/null answers
        group_reopen: '1', // ...and the model's group was released
        dup3: '200',
        set_container_dup3: '0',
        set_iommu: '0',
        map: '0',
        vmlck_mapped: '16',
        munmap: '0',
        vmlck_unmapped: '16', // still pinned and charged
        map_unmapped: '-1 EFAULT', // nothing is mapped there any more
        unmap_all: '0',
        unmapped_size: '16384',
        vmlck_after: '0',
        device: '1',
        mmap_bar: '-1 ENODEV',
        dev_read: '4', // y9-fd-syscalls seq 16-17: BAR0 at the file position, which moves
        dev_id: '0x10000ed',
        dev_read_next: '4',
        dev_live: '0x0',
        dev_lseek: '-1 ESPIPE', // seq 18
        ioeventfd: '0',
        efd_write: '8',
        live_after_write: '0xedcba987', // the model wrote 0x12345678; liveness reads its inverse
        live_pwrite: '4',
        live_after_pwrite: '0x0', // ~0 written, its inverse read
        efd_eventfd_write: '0',
        live_after_eventfd_write: '0xedcba987',
        child_inherited: '-1 ENODEV',
        child_close: '0',
        child_open: '1', // a new connection: a new process of the model
        child_group: '-1 EBUSY', // the parent holds the group
        parent_after_fork: '0',
        readlink: '30',
        link: '../../../kernel/iommu_groups/1',
        readlinkat_short: '8', // truncated, as readlink(2) truncates
        readlink_other: '-1 ENOENT', // not a device of the model
        readlink_real: '1', // other links are the real kernel's
        param_read: '6',
        param: '65535',
        param_lseek: '0',
        param_write: '4',
        setrlimit: '0',
        memlock_cur: '65536',
        setuid: '0',
        getuid: '1000',
        geteuid: '1000',
        capget: '0',
        capget_libc: '0',
        cap_eff: '0', // leaving uid 0 dropped every capability
        raise_max: '-1 EPERM',
      });
    });
  });
}
