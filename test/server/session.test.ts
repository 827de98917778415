/**
 * The server's side of the protocol, without sockets: a Session on a Host answering a FakeClient.
 * A device's DMA must read and write the client's own bytes; pinning, charging, the zero page and
 * EFAULT stay the model's; fds are the client's numbers; only changed argument bytes go back.
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import { configFromName } from '../../src/scenario/probe/config.ts';
import {
  encodeFrame,
  IOCTL_ARG_BYTES,
  PROTOCOL_VERSION,
  REQ_CAPSET,
  REQ_CLOSE,
  REQ_DUP,
  REQ_HELLO,
  REQ_IOCTL,
  REQ_LISTDIR,
  REQ_LSEEK,
  REQ_MUNMAP,
  REQ_OPEN,
  REQ_PREAD,
  REQ_PWRITE,
  REQ_READ,
  REQ_SETRLIMIT,
  REQ_SETUID,
  REQ_SIGNAL,
  REQ_STATUS,
  RLIMIT_MEMLOCK,
  SIGNAL_FORGET,
  statusBlock,
} from '../../src/server/protocol.ts';
import { EPROTO, Session } from '../../src/server/session.ts';
import { EBADF, EBADFD, EFAULT, EINVAL, ENOENT, EPERM, ESPIPE } from '../../src/uapi/errno.ts';
import { vfioDeviceBindIommufd } from '../../src/uapi/iommufd.ts';
import {
  encodeDmaMap,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_SET_IOMMU,
} from '../../src/uapi/vfio.ts';
import {
  IRQ_SET_SIZE,
  regionOffset,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
} from '../../src/uapi/vfio-device.ts';
import { FakeClient, helloRoot, request } from './fake-client.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const u32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
};
const BUF = 0x7f12_3400_0000;
const PAGE = 4096;

interface Rig {
  host: Host;
  client: FakeClient;
  session: Session;
  container: number;
  group: number;
}

/** A client with a container, the group in it and type-1 v2 set, its 64 KiB buffer mapped at BUF. */
function rig(kernel: '6.1' | '6.12' = '6.12'): Rig {
  const host = new Host({ kernel, iommu: 'intel' });
  const client = new FakeClient();
  const session = new Session(host, client);
  expect(helloRoot(session)).toBe(0);
  client.map(BUF, 16 * PAGE);
  const container = open(session, client, '/dev/vfio/vfio');
  const group = open(session, client, '/dev/vfio/1');
  expect(ioctlBytes(session, group, VFIO_GROUP_SET_CONTAINER, u32(container)).ret).toBe(0);
  expect(ioctlValue(session, container, VFIO_SET_IOMMU, 3)).toBe(0);
  return { host, client, session, container, group };
}

function open(s: Session, c: FakeClient, path: string): number {
  const fd = c.reserveFd();
  const r = request(s, { type: REQ_OPEN, fd, data: enc(`${path}\0`) });
  expect(r.ret).toBe(fd);
  return fd;
}

function ioctlValue(s: Session, fd: number, req: number, value: number): number {
  return request(s, { type: REQ_IOCTL, fd, num: req, a: BigInt(value) }).ret;
}

function ioctlBytes(s: Session, fd: number, req: number, arg: Uint8Array) {
  return request(s, { type: REQ_IOCTL, fd, num: req, flags: IOCTL_ARG_BYTES, data: arg });
}

function mapDma(r: Rig, vaddr: number, iova: number, size: number, flags = 3): number {
  const arg = encodeDmaMap({
    argsz: 32,
    flags,
    vaddr: BigInt(vaddr),
    iova: BigInt(iova),
    size: BigInt(size),
  });
  return ioctlBytes(r.session, r.container, VFIO_IOMMU_MAP_DMA, arg).ret;
}

function status(s: Session) {
  return statusBlock.decode(request(s, { type: REQ_STATUS }).data);
}

/** Opens the edu, turns bus mastering on, and returns a function running one DMA. */
function device(r: Rig): {
  fd: number;
  dma: (src: number, dst: number, len: number, toRam: boolean, irq?: boolean) => void;
} {
  const fd = ioctlBytes(r.session, r.group, VFIO_GROUP_GET_DEVICE_FD, enc('0000:00:01.0\0')).ret;
  expect(fd).toBeGreaterThanOrEqual(20); // a number the client handed out (CB_NEWFD)
  const cfg = regionOffset(VFIO_PCI_CONFIG_REGION_INDEX) + 4;
  const cmd = request(r.session, { type: REQ_PREAD, fd, a: BigInt(cfg), b: 2n });
  expect(cmd.ret).toBe(2);
  cmd.data[0] |= 0x6;
  expect(request(r.session, { type: REQ_PWRITE, fd, a: BigInt(cfg), data: cmd.data }).ret).toBe(2);
  const wr = (reg: number, v: number): void => {
    expect(request(r.session, { type: REQ_PWRITE, fd, a: BigInt(reg), data: u32(v) }).ret).toBe(4);
  };
  return {
    fd,
    dma: (src, dst, len, toRam, irq = false) => {
      wr(0x80, src);
      wr(0x88, dst);
      wr(0x90, len);
      wr(0x98, (toRam ? 3 : 1) | (irq ? 4 : 0));
    },
  };
}

describe('Session: the model side of vfio-nest serve', () => {
  it('needs HELLO first, once, with this protocol version', () => {
    const s = new Session(new Host(), new FakeClient());
    expect(request(s, { type: REQ_STATUS }).ret).toBe(-EPROTO);
    expect(request(s, { type: REQ_HELLO, num: PROTOCOL_VERSION + 1, data: new Uint8Array(48) }).ret).toBe(
      -EPROTO,
    );
    expect(helloRoot(s)).toBe(0);
    expect(helloRoot(s)).toBe(-EPROTO);
    const st = status(s);
    expect(st.uid).toBe(0);
    expect(st.capEff).toBe(0x1ff_ffff_ffffn);
    expect(st.memlockCur).toBe(8n << 20n); // the 6.12 profile's default, as HELLO_MEMLOCK_HOST asks
  });

  it("a device's DMA reads and writes the client's own bytes", () => {
    const r = rig();
    const src = new Uint8Array(0x800).map((_, i) => (i * 7 + 1) & 0xff);
    r.client.write(BUF, src);
    expect(mapDma(r, BUF, 0x100000, PAGE, 1)).toBe(0);
    expect(mapDma(r, BUF + PAGE, 0x101000, PAGE, 2)).toBe(0);
    const d = device(r);
    d.dma(0x100000, 0x40000, 0x800, false); // client memory -> edu
    d.dma(0x40000, 0x101000, 0x800, true); // edu -> client memory
    expect(r.client.read(BUF + PAGE, 0x800)).toEqual(src);
    // Pinning and charging are the model's: two pages, locked_vm counted even with CAP_IPC_LOCK.
    expect(status(r.session).vmLckKb).toBe(8n);
    expect(r.host.phys.externalFrames).toBe(2);
  });

  it("interrupts reach the client's own eventfd", () => {
    const r = rig();
    expect(mapDma(r, BUF, 0x100000, PAGE)).toBe(0);
    const d = device(r);
    const efd = r.client.eventfd();
    const irqSet = (fds: number[]): Uint8Array => {
      const b = new Uint8Array(IRQ_SET_SIZE + 4 * fds.length);
      const v = new DataView(b.buffer);
      v.setUint32(0, b.byteLength, true);
      v.setUint32(4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, true);
      v.setUint32(8, VFIO_PCI_INTX_IRQ_INDEX, true);
      v.setUint32(16, fds.length, true);
      for (const [i, fd] of fds.entries()) v.setInt32(IRQ_SET_SIZE + 4 * i, fd, true);
      return b;
    };
    // The client's stdout is a file but not an eventfd: EINVAL (oracle y6-device-api seq 100), and a
    // descriptor it does not have is EBADF (seq 101).
    expect(ioctlBytes(r.session, d.fd, VFIO_DEVICE_SET_IRQS, irqSet([1])).ret).toBe(-EINVAL);
    expect(ioctlBytes(r.session, d.fd, VFIO_DEVICE_SET_IRQS, irqSet([900])).ret).toBe(-EBADF);
    expect(ioctlBytes(r.session, d.fd, VFIO_DEVICE_SET_IRQS, irqSet([efd])).ret).toBe(0);
    const open = r.session.proc!.openFds.length;
    d.dma(0x100000, 0x40000, 16, false, true); // done -> INTx
    expect(r.client.signals).toEqual([[efd, 1n]]);
    d.dma(0x100000, 0x40000, 16, false, true); // INTx is auto-masked until unmasked
    expect(r.client.signals).toEqual([[efd, 1n]]);
    expect(r.session.proc!.openFds.length).toBe(open); // the stand-in fd was only for the call
  });

  it('EFAULT where the client has nothing mapped, and for a write pin of read-only memory', () => {
    const r = rig();
    expect(mapDma(r, 0x1000_0000, 0x100000, PAGE)).toBe(-EFAULT);
    r.client.map(0x2000_0000, PAGE, 1);
    expect(mapDma(r, 0x2000_0000, 0x100000, PAGE, 3)).toBe(-EFAULT);
    expect(mapDma(r, 0x2000_0000, 0x100000, PAGE, 1)).toBe(0);
    expect(status(r.session).vmLckKb).toBe(4n);
  });

  it('6.1: a read-only map of a page the client never wrote pins the zero page, uncharged', () => {
    const host = new Host({ kernel: '6.1', iommu: 'intel' });
    const client = new FakeClient();
    const session = new Session(host, client);
    const user = { uid: 1000, euid: 1000, gid: 1000, egid: 1000, capEff: 0n, flags: 0 };
    helloRoot(session, { ...user, memlockCur: 0x10000n, memlockMax: 0x10000n });
    expect(status(session).memlockMax).toBe(0x10000n);
    client.map(BUF, 16 * PAGE);
    client.write(BUF + 8 * PAGE, new Uint8Array([1]));
    const container = open(session, client, '/dev/vfio/vfio');
    const group = open(session, client, '/dev/vfio/1');
    ioctlBytes(session, group, VFIO_GROUP_SET_CONTAINER, u32(container));
    const r: Rig = { host, client, session, container, group };
    expect(ioctlValue(session, container, VFIO_SET_IOMMU, 3)).toBe(0);
    expect(mapDma(r, BUF, 0x100000, 4 * PAGE, 1)).toBe(0);
    expect(status(session).vmLckKb).toBe(0n);
    expect(mapDma(r, BUF + 8 * PAGE, 0x200000, PAGE, 1)).toBe(0); // written by the client
    expect(status(session).vmLckKb).toBe(4n);
  });

  it('a pinned page the client unmaps stays with the device; the client no longer sees its DMA', () => {
    const r = rig();
    r.client.write(BUF, new Uint8Array(0x800).fill(0x5a));
    expect(mapDma(r, BUF, 0x100000, PAGE, 3)).toBe(0);
    const d = device(r);
    d.dma(0x100000, 0x40000, 0x800, false); // edu buffer := 0x5a...
    expect(request(r.session, { type: REQ_MUNMAP, a: BigInt(BUF), b: BigInt(16 * PAGE) }).ret).toBe(0);
    expect(r.host.phys.externalFrames).toBe(0); // the pinned folio kept its bytes in the model
    r.client.unmap(BUF, 16 * PAGE);
    r.client.map(BUF, 16 * PAGE); // new memory at the same address
    d.dma(0x40000, 0x100000, 0x800, true);
    expect(r.client.read(BUF, 0x800).every((b) => b === 0)).toBe(true);
    d.dma(0x100000, 0x40000, 4, false); // the device still reads the old page
    expect(r.host.edus.get('0000:00:01.0')!.buffer[0]).toBe(0x5a);
  });

  it("the cdev's BIND_IOMMUFD takes the client's iommufd number (translated, as QEMU's iommufd backend sends it)", () => {
    const cfg = configFromName('6.18-iommufd')!;
    const host = new Host(cfg.host);
    const client = new FakeClient();
    const session = new Session(host, client);
    expect(helloRoot(session)).toBe(0);
    const cdev = open(session, client, '/dev/vfio/devices/vfio0');
    const iommufd = open(session, client, '/dev/iommu');
    const bind = vfioDeviceBindIommufd.encode({
      argsz: 24,
      flags: 0,
      iommufd,
      out_devid: 0,
      token_uuid_ptr: 0n,
    });
    const r = ioctlBytes(session, cdev, VFIO_DEVICE_BIND_IOMMUFD, bind);
    expect(r.ret).toBe(0);
    // The device id came back (written at out_devid, offset 12).
    expect(r.data.byteLength).toBeGreaterThan(0);
    expect(ioctlBytes(session, cdev, VFIO_DEVICE_BIND_IOMMUFD, bind).ret).toBe(-EINVAL); // bound already
  });

  it("LISTDIR names a device's cdev where the host has iommufd, ENOENT where not or for another device", () => {
    const list = (host: Host, path: string) => {
      const session = new Session(host, new FakeClient());
      expect(helloRoot(session)).toBe(0);
      return request(session, { type: REQ_LISTDIR, data: enc(`${path}\0`) });
    };
    const iommufd = new Host(configFromName('6.18-iommufd')!.host);
    const r = list(iommufd, '/sys/bus/pci/devices/0000:00:01.0/vfio-dev');
    expect([r.ret, new TextDecoder().decode(r.data)]).toEqual([1, 'vfio0\0']);
    expect(list(iommufd, '/sys/bus/pci/devices/0000:00:09.0/vfio-dev').ret).toBe(-ENOENT);
    expect(
      list(new Host({ kernel: '6.12', iommu: 'intel' }), '/sys/bus/pci/devices/0000:00:01.0/vfio-dev').ret,
    ).toBe(-ENOENT);
  });

  // vfio-type1.md §3.4: a second open of a group node is EBUSY while the first file is open.
  it('dup shares the open file: the group stays open until its last fd is closed', () => {
    const r = rig();
    expect(request(r.session, { type: REQ_DUP, fd: r.container, a: 30n }).ret).toBe(30);
    expect(request(r.session, { type: REQ_CLOSE, fd: r.container }).ret).toBe(0);
    expect(ioctlValue(r.session, 30, VFIO_GET_API_VERSION, 0)).toBe(0);
    expect(ioctlValue(r.session, r.container, VFIO_GET_API_VERSION, 0)).toBe(-EBADF);
    expect(request(r.session, { type: REQ_DUP, fd: r.group, a: 31n }).ret).toBe(31);
    expect(request(r.session, { type: REQ_CLOSE, fd: r.group }).ret).toBe(0);
    const again = r.client.reserveFd();
    expect(request(r.session, { type: REQ_OPEN, fd: again, data: enc('/dev/vfio/1') }).ret).toBe(-16); // EBUSY
    expect(request(r.session, { type: REQ_CLOSE, fd: 31 }).ret).toBe(0);
    expect(request(r.session, { type: REQ_OPEN, fd: again, data: enc('/dev/vfio/1') }).ret).toBe(again);
    expect(request(r.session, { type: REQ_CLOSE, fd: 31 }).ret).toBe(-EBADF);
  });

  // REQ_SIGNAL: the program's own writes to an eventfd it gave the model run the model's waiters, as
  // eventfd_signal does in the kernel. y6-device-api seq 158-190: INTx is masked once delivered, and
  // an unmask while the edu still asserts it sends it again.
  it("the client's writes to an eventfd the model holds reach the model (an INTx unmask eventfd)", () => {
    const r = rig();
    expect(mapDma(r, BUF, 0x100000, PAGE)).toBe(0);
    const d = device(r);
    const trigger = r.client.eventfd();
    const unmask = r.client.eventfd();
    const irqSet = (action: number, fd: number): Uint8Array => {
      const b = new Uint8Array(IRQ_SET_SIZE + 4);
      const v = new DataView(b.buffer);
      v.setUint32(0, b.byteLength, true);
      v.setUint32(4, VFIO_IRQ_SET_DATA_EVENTFD | action, true);
      v.setUint32(8, VFIO_PCI_INTX_IRQ_INDEX, true);
      v.setUint32(16, 1, true);
      v.setInt32(IRQ_SET_SIZE, fd, true);
      return b;
    };
    expect(
      ioctlBytes(r.session, d.fd, VFIO_DEVICE_SET_IRQS, irqSet(VFIO_IRQ_SET_ACTION_TRIGGER, trigger)).ret,
    ).toBe(0);
    expect(
      ioctlBytes(r.session, d.fd, VFIO_DEVICE_SET_IRQS, irqSet(VFIO_IRQ_SET_ACTION_UNMASK, unmask)).ret,
    ).toBe(0);
    d.dma(0x100000, 0x40000, 16, false, true);
    expect(r.client.signals).toEqual([[trigger, 1n]]);
    expect(request(r.session, { type: REQ_SIGNAL, fd: unmask, a: 1n }).ret).toBe(0);
    expect(r.client.signals).toEqual([
      [trigger, 1n],
      [trigger, 1n],
    ]);
    // A number the model was never handed, and one the client closed, reach nothing.
    expect(request(r.session, { type: REQ_SIGNAL, fd: 77, a: 1n }).ret).toBe(0);
    expect(request(r.session, { type: REQ_SIGNAL, fd: unmask, num: SIGNAL_FORGET }).ret).toBe(0);
    expect(request(r.session, { type: REQ_SIGNAL, fd: unmask, a: 1n }).ret).toBe(0);
    expect(r.client.signals).toHaveLength(2);
  });

  // An ioeventfd's fd is the client's too; its signal writes the register (y6-device-api: IOEVENTFD
  // answers and the liveness register, which stores the inverse of what is written: y7 seq 2-4).
  it("the client's write to an ioeventfd's eventfd makes the model write the BAR", () => {
    const r = rig();
    const d = device(r);
    const efd = r.client.eventfd();
    const arg = new Uint8Array(32);
    const v = new DataView(arg.buffer);
    v.setUint32(0, 32, true);
    v.setUint32(4, 4, true); // VFIO_DEVICE_IOEVENTFD_32
    v.setBigUint64(8, BigInt(regionOffset(0) + 4), true);
    v.setBigUint64(16, 0x1234_5678n, true);
    v.setInt32(24, efd, true);
    expect(ioctlBytes(r.session, d.fd, VFIO_DEVICE_IOEVENTFD, arg).ret).toBe(0);
    const live = (): number => {
      const b = request(r.session, { type: REQ_PREAD, fd: d.fd, a: BigInt(regionOffset(0) + 4), b: 4n });
      return new DataView(b.data.buffer).getUint32(0, true);
    };
    expect(live()).toBe(0);
    expect(request(r.session, { type: REQ_SIGNAL, fd: efd, a: 1n }).ret).toBe(0);
    expect(live()).toBe(~0x1234_5678 >>> 0);
  });

  // y9-fd-syscalls (local answers, all eight configurations): vfio fds have no llseek (seq 5, 18),
  // and read() reads the device fd at its file position, which a dup shares (seq 16-17).
  it("read, write and lseek follow the open file's position, as the kernel keeps it", () => {
    const r = rig();
    expect(request(r.session, { type: REQ_LSEEK, fd: r.container, a: 0n, num: 0 }).ret).toBe(-ESPIPE);
    const { fd } = device(r);
    expect(request(r.session, { type: REQ_LSEEK, fd, a: 4n, num: 0 }).ret).toBe(-ESPIPE);
    expect(request(r.session, { type: REQ_DUP, fd, a: 40n }).ret).toBe(40);
    const id = request(r.session, { type: REQ_READ, fd, b: 4n });
    expect([id.ret, [...id.data]]).toEqual([4, [0xed, 0, 0, 1]]);
    const live = request(r.session, { type: REQ_READ, fd: 40, b: 4n });
    expect([live.ret, [...live.data]]).toEqual([4, [0, 0, 0, 0]]);
    // A negative pread offset is EINVAL (seq 28); pread leaves the position alone.
    expect(request(r.session, { type: REQ_PREAD, fd, a: 2n ** 64n - 1n, b: 4n }).ret).toBe(-EINVAL);
    expect(request(r.session, { type: REQ_PREAD, fd, a: 0n, b: 4n }).ret).toBe(4);
    // A sysfs parameter reads to its end, then seeks back (generic_file_llseek; from source).
    const p = open(r.session, r.client, '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit');
    const text = request(r.session, { type: REQ_READ, fd: p, b: 32n });
    expect(new TextDecoder().decode(text.data)).toBe('65535\n');
    expect(request(r.session, { type: REQ_READ, fd: p, b: 32n }).ret).toBe(0);
    expect(request(r.session, { type: REQ_LSEEK, fd: p, a: 0n, num: 0 }).ret).toBe(0);
    expect(request(r.session, { type: REQ_READ, fd: p, b: 32n }).ret).toBe(6);
    expect(request(r.session, { type: REQ_LSEEK, fd: p, a: 2n ** 64n - 8n, num: 1 }).ret).toBe(-EINVAL);
  });

  // vfio-type1.md §3.5 table: a non-container fd EINVAL until 6.1, EBADFD from 6.2 (R); fd < 0 EINVAL
  // on 3.x, fdget's EBADF from 6.1 (R); a closed fd EBADF everywhere.
  it("SET_CONTAINER's fd is the client's: an open non-VFIO fd, a closed one, -1", () => {
    for (const [kernel, notContainer, negative] of [
      ['6.12', EBADFD, EBADF],
      ['6.1', EINVAL, EBADF],
      ['3.19', EINVAL, EINVAL],
    ] as const) {
      const host = new Host({ kernel, iommu: 'intel' });
      const client = new FakeClient();
      const s = new Session(host, client);
      helloRoot(s);
      const group = open(s, client, '/dev/vfio/1');
      expect(ioctlBytes(s, group, VFIO_GROUP_SET_CONTAINER, u32(1)).ret).toBe(-notContainer); // stdout
      expect(ioctlBytes(s, group, VFIO_GROUP_SET_CONTAINER, u32(99)).ret).toBe(-EBADF);
      expect(ioctlBytes(s, group, VFIO_GROUP_SET_CONTAINER, u32(-1)).ret).toBe(-negative);
      const c = open(s, client, '/dev/vfio/vfio');
      expect(ioctlBytes(s, group, VFIO_GROUP_SET_CONTAINER, u32(c)).ret).toBe(0);
    }
  });

  it('sends back only the bytes the kernel changed', () => {
    const r = rig();
    const info = new Uint8Array(64).fill(0xee);
    new DataView(info.buffer).setUint32(0, 16, true); // argsz 16: flags and iova_pgsizes only
    const rep = ioctlBytes(r.session, r.container, VFIO_IOMMU_GET_INFO, info);
    expect(rep.ret).toBe(0);
    expect(rep.at).toBe(0); // argsz rewritten to the size needed
    expect(rep.data.byteLength).toBe(16);
    expect(new DataView(rep.data.buffer).getUint32(0, true)).toBe(120);
    const st = ioctlValue(r.session, r.container, VFIO_GET_API_VERSION, 0);
    expect(st).toBe(0);
    const set = request(r.session, {
      type: REQ_IOCTL,
      fd: r.group,
      num: VFIO_GROUP_SET_CONTAINER,
      flags: IOCTL_ARG_BYTES,
      data: u32(r.container),
    });
    expect(set.ret).toBe(-EINVAL); // already set; the translated fd is not sent back
    expect(set.data.byteLength).toBe(0);
  });

  it('process state: setrlimit, setuid dropping capabilities, capset lowering only', () => {
    const s = new Session(new Host(), new FakeClient());
    helloRoot(s);
    const rl = request(s, { type: REQ_SETRLIMIT, num: RLIMIT_MEMLOCK, a: 0x10000n, b: 0x20000n });
    expect(rl.ret).toBe(0);
    expect(statusBlock.decode(rl.data).memlockMax).toBe(0x20000n);
    expect(request(s, { type: REQ_SETRLIMIT, num: 7, a: 1n, b: 1n }).ret).toBe(-EINVAL);
    expect(request(s, { type: REQ_CAPSET, a: 1n << 14n }).ret).toBe(0);
    expect(status(s).capEff).toBe(1n << 14n);
    expect(request(s, { type: REQ_CAPSET, a: 3n << 14n }).ret).toBe(-EPERM);
    const su = request(s, { type: REQ_SETUID, a: 1000n });
    expect(su.ret).toBe(-EPERM); // CAP_SETUID was dropped by the capset
    expect(statusBlock.decode(su.data).uid).toBe(0);
  });

  it('close() exits the model process: its fds are released for the next client', () => {
    const r = rig();
    r.session.close();
    const next = new Session(r.host, new FakeClient());
    helloRoot(next);
    const fd = 7;
    expect(request(next, { type: REQ_OPEN, fd, data: enc('/dev/vfio/1') }).ret).toBe(fd);
    // a frame of an unknown type is refused
    expect(next.handle(encodeFrame({ type: 99 })).byteLength).toBeGreaterThan(0);
    expect(request(next, { type: 99 }).ret).toBe(-EPROTO);
  });
});
