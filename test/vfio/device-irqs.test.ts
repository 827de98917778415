/**
 * vfio-pci's interrupt types and ioeventfds over the edu, as behaviour: what an eventfd sees when the
 * device raises its interrupt, and what a signalled ioeventfd writes. The answers' errnos are replayed
 * line for line from test/oracle/local-answers/<config>/y6-device-api.jsonl (test/recordings.test.ts);
 * these tests cover what a probe line cannot show: the eventfd counters and the BAR after the write.
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import type { Process } from '../../src/host/process.ts';
import {
  openContainer,
  openGroup,
  type VfioContainerHandle,
  type VfioGroupHandle,
} from '../../src/host/vfio-api.ts';
import { EBUSY, EEXIST, EINVAL, ENODEV } from '../../src/uapi/errno.ts';
import { VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_SET_IRQS } from '../../src/uapi/vfio.ts';
import {
  IRQ_SET_SIZE,
  regionOffset,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
} from '../../src/uapi/vfio-device.ts';

function device(kernel: '6.1' | '6.12' | '6.18' = '6.12') {
  const host = new Host({ kernel, iommu: 'intel' });
  const proc = host.spawn();
  const c = openContainer(proc) as VfioContainerHandle;
  const g = openGroup(proc, 1) as VfioGroupHandle;
  g.setContainer(c);
  c.setIommu(3);
  const dfd = g.getDeviceFd(host.devices[0].name);
  return { host, proc, g, dfd };
}

function setIrqs(proc: Process, dfd: number, flags: number, index: number, fds: number[]): number {
  const b = new Uint8Array(IRQ_SET_SIZE + 4 * fds.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.byteLength, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, index, true);
  v.setUint32(16, flags & VFIO_IRQ_SET_DATA_EVENTFD ? fds.length : (fds[0] ?? 0), true);
  for (const [i, fd] of fds.entries())
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) v.setInt32(IRQ_SET_SIZE + 4 * i, fd, true);
  return proc.ioctl(dfd, VFIO_DEVICE_SET_IRQS, b);
}

const readCount = (proc: Process, fd: number): bigint => {
  const b = new Uint8Array(8);
  return proc.read(fd, b) === 8 ? new DataView(b.buffer).getBigUint64(0, true) : 0n;
};

/** The edu raises its interrupt: INTERRUPT_RAISE (BAR0 0x60) with a status bit. */
function raise(proc: Process, dfd: number): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, 1, true);
  proc.pwrite(dfd, b, regionOffset(0) + 0x60);
}

const TRIGGER_EVENTFD = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

describe('vfio-pci interrupts', () => {
  it('INTx signals its eventfd once until unmasked; MSI cannot be enabled while INTx is', () => {
    const { proc, dfd } = device();
    const efd = proc.eventfd();
    expect(setIrqs(proc, dfd, TRIGGER_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [efd])).toBe(0);
    raise(proc, dfd);
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(1n); // automasked after the first
    expect(
      setIrqs(proc, dfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, [1]),
    ).toBe(0);
    raise(proc, dfd);
    // The 1 is the unmask sending the still-asserted INTx again (the edu was never acknowledged: y6
    // seq 165-167); the raise after it met the mask that left on.
    expect(readCount(proc, efd)).toBe(1n);
    // One interrupt type at a time (y6 seq 42-43: EINVAL for MSI while INTx is on).
    const msi = proc.eventfd();
    expect(setIrqs(proc, dfd, TRIGGER_EVENTFD, VFIO_PCI_MSI_IRQ_INDEX, [msi])).toBe(-EINVAL);
    // INTx off (DATA_NONE, count 0), then MSI takes the interrupt.
    expect(
      setIrqs(proc, dfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, [0]),
    ).toBe(0);
    expect(setIrqs(proc, dfd, TRIGGER_EVENTFD, VFIO_PCI_MSI_IRQ_INDEX, [msi])).toBe(0);
    // An MSI is a memory write: lost while bus mastering is off (y6 seq 195-201), delivered once it is on.
    raise(proc, dfd);
    expect(readCount(proc, msi)).toBe(0n);
    const cmd = new Uint8Array(2);
    proc.pread(dfd, cmd, regionOffset(7) + 4);
    cmd[0] |= 0x04;
    proc.pwrite(dfd, cmd, regionOffset(7) + 4);
    raise(proc, dfd);
    raise(proc, dfd);
    expect(readCount(proc, msi)).toBe(2n); // MSI is not masked (seq 212-217)
    expect(readCount(proc, efd)).toBe(0n);
  });

  it('an unmask eventfd (virqfd) unmasks INTx when signalled; one at a time; dropped with INTx', () => {
    const { proc, dfd } = device();
    const efd = proc.eventfd();
    const unmask = proc.eventfd();
    const UNMASK_EVENTFD = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;
    // Before INTx is on there is nothing to unmask (vfio_pci_set_intx_unmask's is_intx check: from
    // source; y6 asks unmask only with INTx on).
    expect(setIrqs(proc, dfd, UNMASK_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [unmask])).toBe(-EINVAL);
    expect(setIrqs(proc, dfd, TRIGGER_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [efd])).toBe(0);
    expect(setIrqs(proc, dfd, UNMASK_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [unmask])).toBe(0);
    expect(setIrqs(proc, dfd, UNMASK_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [efd])).toBe(-EBUSY);
    raise(proc, dfd);
    raise(proc, dfd); // masked
    expect(readCount(proc, efd)).toBe(1n);
    const one = new Uint8Array(8);
    one[0] = 1;
    proc.write(unmask, one);
    expect(readCount(proc, unmask)).toBe(0n); // consumed by the kernel's handler
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(1n);
    // fd -1 drops the virqfd: a signal no longer unmasks.
    expect(setIrqs(proc, dfd, UNMASK_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [-1])).toBe(0);
    proc.write(unmask, one);
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(0n);
    expect(readCount(proc, unmask)).toBe(1n);
  });

  it("the edu's INTx shows in PCI_STATUS while it is pending (Interrupt Status), until acknowledged", () => {
    const { proc, dfd } = device();
    const status = (): number => {
      const b = new Uint8Array(2);
      proc.pread(dfd, b, regionOffset(7) + 6);
      return b[0] | (b[1] << 8);
    };
    expect(status() & 0x08).toBe(0);
    raise(proc, dfd);
    expect(status() & 0x08).toBe(0x08);
    const ack = new Uint8Array(4);
    ack[0] = 1;
    proc.pwrite(dfd, ack, regionOffset(0) + 0x64);
    expect(status() & 0x08).toBe(0);
  });

  it("INTx is level: an unmask while the edu still asserts sends it again; the user's INTx disable masks", () => {
    const { proc, dfd } = device();
    const efd = proc.eventfd();
    expect(setIrqs(proc, dfd, TRIGGER_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [efd])).toBe(0);
    const unmask = () =>
      setIrqs(proc, dfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, [1]);
    const ack = () => proc.pwrite(dfd, Uint8Array.of(1, 0, 0, 0), regionOffset(0) + 0x64);
    const command = (intxDisable: boolean) => {
      const b = new Uint8Array(2);
      proc.pread(dfd, b, regionOffset(7) + 4);
      b[1] = intxDisable ? b[1] | 0x04 : b[1] & ~0x04;
      proc.pwrite(dfd, b, regionOffset(7) + 4);
    };
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(1n);
    expect(unmask()).toBe(0); // still asserted: sent again, still masked (vfio_pci_intx_unmask)
    expect(readCount(proc, efd)).toBe(1n);
    ack();
    expect(unmask()).toBe(0); // no longer asserted: unmasked
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(1n);
    ack();
    unmask();
    // The user's INTx disable (virtualised by vfio-pci) masks: nothing while it is set...
    command(true);
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(0n);
    expect(unmask()).toBe(0); // ...not even an unmask...
    expect(readCount(proc, efd)).toBe(0n);
    command(false); // ...and clearing it unmasks, sending the pending interrupt.
    expect(readCount(proc, efd)).toBe(1n);
  });

  it('the last close drops every interrupt: a new open starts with none', () => {
    const { proc, dfd, g, host } = device();
    const efd = proc.eventfd();
    expect(setIrqs(proc, dfd, TRIGGER_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, [efd])).toBe(0);
    raise(proc, dfd);
    expect(readCount(proc, efd)).toBe(1n);
    // Acknowledged and unmasked: a trigger that outlived the close would fire at the next raise.
    proc.pwrite(dfd, Uint8Array.of(1, 0, 0, 0), regionOffset(0) + 0x64);
    expect(
      setIrqs(proc, dfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, [1]),
    ).toBe(0);
    expect(proc.close(dfd)).toBe(0);
    const again = g.getDeviceFd(host.devices[0].name);
    raise(proc, again);
    expect(readCount(proc, efd)).toBe(0n);
    // Unmasking needs INTx on again (is_intx, from source: no recording unmasks with INTx off).
    expect(
      setIrqs(proc, again, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, [1]),
    ).toBe(-EINVAL);
  });
});

describe('VFIO_DEVICE_IOEVENTFD', () => {
  const ioeventfd = (proc: Process, dfd: number, off: number, data: number, fd: number): number => {
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    v.setUint32(0, 32, true);
    v.setUint32(4, 4, true); // 4 bytes
    v.setBigUint64(8, BigInt(regionOffset(0) + off), true);
    v.setBigUint64(16, BigInt(data), true);
    v.setInt32(24, fd, true);
    return proc.ioctl(dfd, VFIO_DEVICE_IOEVENTFD, b);
  };
  const liveness = (proc: Process, dfd: number): number => {
    const b = new Uint8Array(4);
    proc.pread(dfd, b, regionOffset(0) + 4);
    return new DataView(b.buffer).getUint32(0, true);
  };

  it('a signal writes the data to the BAR (the edu inverts it), consumed; fd -1 removes it', () => {
    const { proc, dfd } = device();
    const efd = proc.eventfd();
    expect(ioeventfd(proc, dfd, 4, 0x12345678, efd)).toBe(0);
    expect(ioeventfd(proc, dfd, 4, 0x12345678, efd)).toBe(-EEXIST);
    expect(liveness(proc, dfd)).toBe(0); // nothing written yet (y7 seq 10)
    const one = new Uint8Array(8);
    one[0] = 1;
    expect(proc.write(efd, one)).toBe(8);
    expect(liveness(proc, dfd)).toBe(0xedcba987);
    expect(readCount(proc, efd)).toBe(0n); // the kernel's handler consumed the count
    expect(ioeventfd(proc, dfd, 4, 0x12345678, -1)).toBe(0);
    expect(ioeventfd(proc, dfd, 4, 0x12345678, -1)).toBe(-ENODEV); // y6 seq 59
    proc.pwrite(dfd, new Uint8Array(4), regionOffset(0) + 4);
    expect(proc.write(efd, one)).toBe(8);
    expect(liveness(proc, dfd)).toBe(0xffffffff);
    expect(readCount(proc, efd)).toBe(1n);
  });
});
