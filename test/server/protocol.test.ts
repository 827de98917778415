/**
 * The wire protocol's two copies agree (src/server/protocol.ts and native/preload.c), frames split
 * and join as a stream delivers them, and the build script builds what the interposer test runs.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as proto from '../../src/server/protocol.ts';

const ROOT = join(import.meta.dirname, '../..');
const C = readFileSync(join(ROOT, 'native/preload.c'), 'utf8');

/** Every `#define VN_NAME value` of the C file, evaluated. */
function cDefines(): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of C.matchAll(/^#define VN_([A-Z0-9_]+) (.+)$/gm)) {
    const expr = m[2].replace(/\/\*.*\*\//, '').trim();
    if (!/^[0-9x()*+ a-fA-F_A-Z]+$/.test(expr)) continue;
    const js = expr.replace(/VN_([A-Z0-9_]+)/g, (_, n: string) => String(out.get(n)));
    out.set(m[1], Function(`return (${js});`)() as number);
  }
  return out;
}

describe('serve protocol', () => {
  it('native/preload.c has the same numbers as protocol.ts', () => {
    const c = cDefines();
    const ts = proto as unknown as Record<string, unknown>;
    const names = Object.keys(ts).filter((k) => /^[A-Z][A-Z0-9_]+$/.test(k) && typeof ts[k] === 'number');
    expect(names.length).toBeGreaterThan(30);
    const mismatched = names.filter((k) => c.get(k) !== ts[k]).map((k) => `${k}: ts ${ts[k]}, c ${c.get(k)}`);
    expect(mismatched).toEqual([]);
  });

  it('round-trips a frame, and joins frames split anywhere in the stream', () => {
    const f = proto.encodeFrame({
      type: proto.REQ_IOCTL,
      flags: proto.IOCTL_ARG_BYTES,
      fd: 7,
      num: 0x3b71,
      a: 0xffff_ffff_ffff_fff0n,
      b: 5n,
      data: new Uint8Array([1, 2, 3]),
    });
    expect(f.byteLength).toBe(proto.HEADER_SIZE + 3);
    const g = proto.encodeReply(-22);
    const stream = new Uint8Array([...f, ...g, ...f]);
    const r = new proto.FrameReader();
    const got: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i += 5) {
      r.push(stream.subarray(i, i + 5));
      for (let x = r.next(); x !== undefined; x = r.next()) got.push(x);
    }
    expect(got.map((x) => x.byteLength)).toEqual([35, 32, 35]);
    const d = proto.decodeFrame(got[0]);
    expect(d).toMatchObject({
      type: proto.REQ_IOCTL,
      flags: 1,
      fd: 7,
      num: 0x3b71,
      a: 0xffff_ffff_ffff_fff0n,
      b: 5n,
    });
    expect([...d.data]).toEqual([1, 2, 3]);
    const e = proto.decodeFrame(got[1]);
    expect([e.type, e.num, e.a]).toEqual([proto.REPLY, 22, 0xffff_ffff_ffff_ffffn]);
  });

  it('a length outside the header size and MAX_FRAME is a protocol error', () => {
    for (const len of [8, proto.MAX_FRAME + 1]) {
      const r = new proto.FrameReader();
      const b = new Uint8Array(32);
      new DataView(b.buffer).setUint32(0, len, true);
      r.push(b);
      expect(() => r.next()).toThrow(/bad frame length/);
    }
  });

  it('status, hello and vma blocks keep their layout (docs/serve-protocol.md, Blocks)', () => {
    /** The fields little-endian, one after another, in the order the document lists them. */
    const packed = (fields: [bits: 32 | 64, value: number | bigint][]): number[] => {
      const out: number[] = [];
      for (const [bits, x] of fields)
        for (let i = 0; i < bits / 8; i++) out.push(Number((BigInt(x) >> BigInt(8 * i)) & 0xffn));
      return out;
    };
    const st = {
      uid: 1,
      euid: 2,
      gid: 3,
      egid: 4,
      capEff: 0x1ff_ffff_ffffn,
      memlockCur: 0x10000n,
      memlockMax: 2n ** 64n - 1n,
      vmLckKb: 64n,
      vmPinKb: 0n,
    };
    const b = proto.statusBlock.encode(st);
    expect(b.byteLength).toBe(proto.STATUS_BLOCK_SIZE);
    // u32 uid, euid, gid, egid; u64 CapEff, RLIMIT_MEMLOCK cur, max, VmLck, VmPin
    expect([...b]).toEqual(
      packed([
        [32, 1],
        [32, 2],
        [32, 3],
        [32, 4],
        [64, st.capEff],
        [64, st.memlockCur],
        [64, st.memlockMax],
        [64, 64n],
        [64, 0n],
      ]),
    );
    expect(proto.statusBlock.decode(b)).toEqual(st);
    const h = {
      pid: 9,
      uid: 10,
      euid: 11,
      gid: 12,
      egid: 13,
      capEff: 5n,
      memlockCur: 1n,
      memlockMax: 2n,
      flags: 1,
    };
    const hb = proto.helloBlock.encode(h);
    expect(hb.byteLength).toBe(proto.HELLO_SIZE);
    // u32 pid, uid, euid, gid, egid, flags; u64 CapEff, RLIMIT_MEMLOCK cur, max
    expect([...hb]).toEqual(
      packed([
        [32, 9],
        [32, 10],
        [32, 11],
        [32, 12],
        [32, 13],
        [32, 1],
        [64, 5n],
        [64, 1n],
        [64, 2n],
      ]),
    );
    expect(proto.decodeHello(hb)).toEqual(h);
    expect(proto.decodeHello(new Uint8Array(10))).toBeUndefined();
    const v = { start: 0x7f00_0000_0000n, end: 0x7f00_0010_0000n, prot: 3, pageLg2: 21, flags: 1 };
    const vb = proto.vmaReply.encode(v);
    // u64 start, end; u32 prot, page size log2, flags (and 4 bytes of padding)
    expect([...vb]).toEqual(
      packed([
        [64, v.start],
        [64, v.end],
        [32, 3],
        [32, 21],
        [32, 1],
        [32, 0],
      ]),
    );
    expect(proto.decodeVmaReply(vb)).toEqual(v);
    expect(proto.decodeVmaReply(new Uint8Array(31))).toBeUndefined();
  });

  it('npm run build:preload compiles native/preload.c into build/', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    const s = pkg.scripts['build:preload'];
    expect(s).toMatch(/gcc -shared -fPIC .*-o build\/libvfio-nest-preload\.so native\/preload\.c .*-ldl/);
    expect(readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n')).toContain('build/');
  });
});
