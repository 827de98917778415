/**
 * `vfio-nest serve` as a command and as a library: its options and messages, and the transport
 * (main thread, model thread, callbacks answered over the socket) driven by a client written in
 * TypeScript, so this part needs no C compiler.
 */

import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CB_VMA,
  decodeFrame,
  encodeFrame,
  type Frame,
  FrameReader,
  IOCTL_ARG_BYTES,
  PROTOCOL_VERSION,
  REPLY,
  REQ_HELLO,
  REQ_IOCTL,
  REQ_OPEN,
  REQ_STATUS,
  statusBlock,
} from '../../src/server/protocol.ts';
import { startServer } from '../../src/server/server.ts';
import { encodeDmaMap, VFIO_GET_API_VERSION, VFIO_IOMMU_MAP_DMA } from '../../src/uapi/vfio.ts';
import { runCli as run } from '../cli/run.ts';
import { FakeClient } from './fake-client.ts';
import { startServe, tempDir } from './native.ts';

/** A protocol client over a real socket; its memory and fds are a FakeClient's. */
class SocketClient {
  private readonly reader = new FrameReader();
  private waiting: ((f: Frame) => void) | undefined;
  readonly fake = new FakeClient();

  private readonly sock: Socket;

  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      for (let b = this.reader.next(); b !== undefined; b = this.reader.next()) {
        const f = decodeFrame(b);
        if (f.type === REPLY) {
          this.waiting?.(f);
          continue;
        }
        const a = this.fake.call(b)!; // a callback: answer it as the interposer does
        sock.write(encodeFrame({ type: a.type, num: a.num, a: a.a, b: a.b, data: a.data }));
      }
    });
  }

  static open(path: string): Promise<SocketClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new SocketClient(s)));
      s.once('error', reject);
    });
  }

  request(f: Partial<Frame> & { type: number }): Promise<{ ret: number; data: Uint8Array }> {
    return new Promise((resolve) => {
      this.waiting = (r) => resolve({ ret: r.num ? -r.num : Number(BigInt.asIntN(64, r.a)), data: r.data });
      this.sock.write(encodeFrame(f));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

describe('vfio-nest serve', () => {
  it('--help, and one message with exit status 2 for bad options', async () => {
    const help = await run('serve', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: vfio-nest serve \[--socket PATH\]/);
    expect(help.out).toContain('VFIO_NEST_SOCKET');
    const bad = await run('serve', '--kernel', '5.0');
    expect(bad).toMatchObject({
      code: 2,
      err: "vfio-nest serve: --kernel: '5.0' is not one of 3.19, 6.1, 6.12, 6.18\n",
    });
    const t = await run('serve', '--timeout', 'soon');
    expect(t).toMatchObject({
      code: 2,
      err: "vfio-nest serve: --timeout: 'soon' is not a number of milliseconds\n",
    });
    expect((await run('serve', '--bogus')).code).toBe(2);
  });

  it('answers a client over the socket: HELLO, open, ioctl, status, one trace line per request', async () => {
    const socket = join(tempDir(), 'lib.sock');
    const lines: string[] = [];
    const server = await startServer({
      socket,
      host: { kernel: '6.12' },
      trace: true,
      log: (l) => lines.push(l),
    });
    try {
      const c = await SocketClient.open(socket);
      const hello = new Uint8Array(48);
      new DataView(hello.buffer).setUint32(20, 1, true); // HELLO_MEMLOCK_HOST, uid 0, no capabilities
      expect((await c.request({ type: REQ_HELLO, num: PROTOCOL_VERSION, data: hello })).ret).toBe(0);
      const fd = c.fake.reserveFd();
      const path = new TextEncoder().encode('/dev/vfio/vfio');
      expect((await c.request({ type: REQ_OPEN, fd, data: path })).ret).toBe(fd);
      expect((await c.request({ type: REQ_IOCTL, fd, num: VFIO_GET_API_VERSION })).ret).toBe(0);
      // No IOMMU type yet: MAP_DMA is EINVAL before it looks at the memory...
      c.fake.map(0x7f00_0000_0000, 0x10000);
      const arg = encodeDmaMap({
        argsz: 32,
        flags: 3,
        vaddr: 0x7f00_0000_0000n,
        iova: 0x100000n,
        size: 0x1000n,
      });
      const map = await c.request({
        type: REQ_IOCTL,
        fd,
        num: VFIO_IOMMU_MAP_DMA,
        flags: IOCTL_ARG_BYTES,
        data: arg,
      });
      expect(map.ret).toBe(-22);
      expect(c.fake.asked).toEqual([]);
      const st = statusBlock.decode((await c.request({ type: REQ_STATUS })).data);
      expect(st.capEff).toBe(0n);
      expect(st.memlockCur).toBe(8n << 20n);
      c.close();
      expect(server.connections).toBe(1);
      expect(lines).toContain(`pid 0: ioctl(${fd}, VFIO_IOMMU_MAP_DMA) = -1 EINVAL`);
    } finally {
      await server.close();
    }
    expect(existsSync(socket)).toBe(false);
    expect(await server.stopped).toBeUndefined();
  });

  it('a mid-call callback round trip: the model learns the mapping, pins, and charges', async () => {
    const socket = join(tempDir(), 'cb.sock');
    const server = await startServer({ socket, host: { kernel: '6.12' } });
    try {
      const c = await SocketClient.open(socket);
      const hello = new Uint8Array(48);
      new DataView(hello.buffer).setBigUint64(24, 0x1ff_ffff_ffffn, true);
      new DataView(hello.buffer).setUint32(20, 1, true);
      await c.request({ type: REQ_HELLO, num: PROTOCOL_VERSION, data: hello });
      const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
      const cfd = c.fake.reserveFd();
      const gfd = c.fake.reserveFd();
      await c.request({ type: REQ_OPEN, fd: cfd, data: enc('/dev/vfio/vfio') });
      await c.request({ type: REQ_OPEN, fd: gfd, data: enc('/dev/vfio/1') });
      const i32 = new Uint8Array(4);
      new DataView(i32.buffer).setInt32(0, cfd, true);
      const set = await c.request({
        type: REQ_IOCTL,
        fd: gfd,
        num: 0x3b68,
        flags: IOCTL_ARG_BYTES,
        data: i32,
      });
      expect(set.ret).toBe(0);
      expect((await c.request({ type: REQ_IOCTL, fd: cfd, num: 0x3b66, a: 3n })).ret).toBe(0);
      c.fake.map(0x7f00_0000_0000, 0x10000);
      const arg = encodeDmaMap({
        argsz: 32,
        flags: 3,
        vaddr: 0x7f00_0000_0000n,
        iova: 0x100000n,
        size: 0x4000n,
      });
      const map = await c.request({
        type: REQ_IOCTL,
        fd: cfd,
        num: VFIO_IOMMU_MAP_DMA,
        flags: IOCTL_ARG_BYTES,
        data: arg,
      });
      expect(map.ret).toBe(0);
      expect(c.fake.asked).toEqual([CB_VMA]);
      expect(statusBlock.decode((await c.request({ type: REQ_STATUS })).data).vmLckKb).toBe(16n);
      c.close();
    } finally {
      await server.close();
    }
  });

  it('refuses a socket another server listens on; SIGTERM stops it and removes the socket', async () => {
    const socket = join(tempDir(), 'one.sock');
    const first = await startServe(socket, []);
    const second = await run('serve', '--socket', socket);
    expect(second).toMatchObject({
      code: 2,
      err: `vfio-nest serve: ${socket}: another server is listening there\n`,
    });
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});
