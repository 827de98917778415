/**
 * Host memory and process address spaces: untouched memory costs nothing, huge pages are one folio,
 * pins are counted per folio, and the rlimit rules of setrlimit(2).
 */

import { describe, expect, it } from 'vitest';
import { MmStruct, PROT_READ } from '../../src/mm/mm.ts';
import { PhysMem } from '../../src/mm/physmem.ts';
import { CAP_FULL_SET, CAP_IPC_LOCK, Task } from '../../src/mm/task.ts';
import { EFAULT, EINVAL, ENOMEM, EPERM } from '../../src/uapi/errno.ts';

describe('PhysMem', () => {
  it('reads zeros from untouched frames without allocating bytes', () => {
    const m = new PhysMem({ size: 2 ** 40 });
    expect(m.readU32(0x12345678)).toBe(0);
    const buf = new Uint8Array(8192).fill(7);
    m.readBytes(2 ** 39, buf, 0, buf.length);
    expect(buf.every((b) => b === 0)).toBe(true);
    expect(m.touchedFrames).toBe(0);
  });

  it('keeps written bytes little-endian, across a page boundary', () => {
    const m = new PhysMem();
    m.writeU32(0x1000, 0x11223344);
    const b = new Uint8Array(4);
    m.readBytes(0x1000, b, 0, 4);
    expect([...b]).toEqual([0x44, 0x33, 0x22, 0x11]);
    m.writeBytes(0x1ffe, new Uint8Array([1, 2, 3, 4]), 0, 4);
    expect(m.readU32(0x2000)).toBe(0x0403);
    expect(m.touchedFrames).toBe(2);
  });

  it("wordsAt gives a written frame's words in place, and nothing for an untouched frame", () => {
    const m = new PhysMem();
    expect(m.wordsAt(0x5000)).toBeUndefined();
    m.writeU32(0x5ff8, 0xdeadbeef);
    m.writeU32(0x5ffc, 0x12345678);
    const w = m.wordsAt(0x5ff8)!;
    expect([w[0x3fe], w[0x3ff]]).toEqual([0xdeadbeef, 0x12345678]);
    m.writeU32(0x5000, 7); // the same frame: the words seen are the memory, not a copy
    expect(w[0]).toBe(7);
  });

  it('writes whole pages from one buffer again and again: each write copies what the buffer holds now', () => {
    const m = new PhysMem();
    const src = new Uint8Array(3 * 4096 + 8);
    const back = new Uint8Array(4096);
    for (const fill of [0x11, 0x22]) {
      src.fill(fill);
      src[4096] = fill + 1; // first byte of the second page
      m.writeBytes(0x10000, src, 4096, 4096); // a page-aligned offset
      m.writeBytes(0x20000, src, 8, 4096); // an unaligned one
      m.readBytes(0x10000, back, 0, 4096);
      expect([back[0], back[4095]]).toEqual([fill + 1, fill]);
      m.readBytes(0x20000, back, 0, 4096);
      expect([back[0], back[4088], back[4095]]).toEqual([fill, fill + 1, fill]);
    }
  });

  it('allocates naturally aligned frames, reuses freed ones zeroed, and says -1 when full', () => {
    const m = new PhysMem({ size: 4 * 2 ** 30 });
    const a = m.allocFrame(12);
    const g = m.allocFrame(30);
    expect(g % 2 ** 30).toBe(0);
    m.writeU32(g + 0x123000, 5);
    m.freeFrame(g, 30);
    expect(m.allocFrame(30)).toBe(g);
    expect(m.readU32(g + 0x123000)).toBe(0);
    expect(m.allocated).toBe(2 ** 30 + 4096);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(m.allocFrame(30)).not.toBe(-1);
    expect(m.allocFrame(30)).not.toBe(-1);
    expect(m.allocFrame(30)).toBe(-1); // 4 GiB: the top 4 KiB frame spoils the last 1 GiB slot
  });
});

describe('MmStruct', () => {
  it('1 GiB huge pages are folios: pinning 2 GiB allocates two frames, the run spans both when contiguous', () => {
    const phys = new PhysMem({ size: 2 ** 36 });
    const mm = new MmStruct(phys);
    const va = mm.mmap(2 ** 31, { hugeLg2: 30 });
    expect(va % 2 ** 30).toBe(0);
    expect(mm.pinRun(va, 2 ** 19, true)).toBe(2 ** 19);
    expect(phys.allocated).toBe(2 ** 31);
    expect(phys.touchedFrames).toBe(0);
    expect(mm.pinnedPages).toBe(2 ** 19);
    mm.unpin(mm.runPa, 2 ** 19);
    expect(mm.pinnedPages).toBe(0);
  });

  it('4 KiB pages faulted one after another are not physically contiguous (runs of one page)', () => {
    const mm = new MmStruct(new PhysMem());
    const va = mm.mmap(0x4000);
    expect(mm.pinRun(va, 4, true)).toBe(1);
  });

  it('pins keep a folio alive after munmap, and it is freed on the last unpin', () => {
    const phys = new PhysMem();
    const mm = new MmStruct(phys);
    const va = mm.mmap(0x4000);
    expect(mm.pinRun(va, 1, true)).toBe(1);
    const pa = mm.runPa;
    mm.munmap(va, 0x4000);
    expect(phys.allocated).toBe(4096);
    mm.unpin(pa, 1);
    expect(phys.allocated).toBe(0);
  });

  // Unmapped vaddr -> EFAULT: vfio-type1.md §4 (the write pin of read-only memory has no source there).
  it('a write pin of read-only memory is EFAULT; unmapped memory is EFAULT', () => {
    const mm = new MmStruct(new PhysMem());
    const ro = mm.mmap(0x1000, { prot: PROT_READ });
    expect(mm.pinRun(ro, 1, true)).toBe(-EFAULT);
    expect(mm.pinRun(ro, 1, false)).toBe(1);
    expect(mm.pinRun(0x1000, 1, false)).toBe(-EFAULT);
  });

  // vfio-type1.md §4 (shared zero page not charged); recorded: oracle/answers/6.1-*/x2-zero-page.jsonl
  // seq 9, a read-only map of untouched memory, leaves VmLck 0 (6.12 charges 16 kB).
  it('with the zero-page rule, a read pin of untouched memory pins nothing (6.1: not charged)', () => {
    const phys = new PhysMem();
    const mm = new MmStruct(phys, true);
    const va = mm.mmap(0x2000);
    expect(mm.pinRun(va, 2, false)).toBe(1);
    expect(mm.runReserved).toBe(true);
    expect(mm.runPa).toBe(phys.zeroPage);
    expect(mm.pinnedPages).toBe(0);
  });

  // vfio-type1.md §4: ENOMEM past the limit; CAP_IPC_LOCK bypasses it but the pages are still counted.
  it('charges locked_vm against RLIMIT_MEMLOCK unless CAP_IPC_LOCK (mm/util.c)', () => {
    const mm = new MmStruct(new PhysMem());
    expect(mm.accountLockedVm(16, true, false, 0x10000n)).toBe(0);
    expect(mm.accountLockedVm(1, true, false, 0x10000n)).toBe(-ENOMEM);
    expect(mm.accountLockedVm(1, true, true, 0x10000n)).toBe(0);
    expect(mm.lockedVm).toBe(17);
  });
});

describe('Task', () => {
  // Recorded (e-memlock seq 17, 18): cur above max is EINVAL, lowering cur succeeds; vfio-type1.md §4.
  // oracle/answers/*-intel/x15-memlock-limits.jsonl: root raises max (seq 2), uid 1000 raising it is
  // EPERM (seq 7), lowering cur is allowed (seq 10).
  it('setrlimit: cur above max is EINVAL; raising max needs CAP_SYS_RESOURCE (recorded e-memlock seq 17)', () => {
    const user = new Task({ uid: 1000 }, { cur: 0x10000n, max: 0x10000n });
    expect(user.setrlimitMemlock(0x20000n, 0x10000n)).toBe(-EINVAL);
    expect(user.setrlimitMemlock(0x20000n, 0x20000n)).toBe(-EPERM);
    expect(user.setrlimitMemlock(0x8000n, 0x10000n)).toBe(0);
    const root = new Task({ uid: 0 }, { cur: 0x10000n, max: 0x10000n });
    expect(root.setrlimitMemlock(0x20000n, 0x20000n)).toBe(0);
  });

  // Recorded: oracle/answers/6.1-smmuv3/x2-zero-page.jsonl seq 1 (root) and seq 8 (drop_priv to uid 1000).
  it('root has every capability (CapEff 000001ffffffffff); leaving uid 0 drops them all', () => {
    const t = new Task();
    expect(t.capEff).toBe(CAP_FULL_SET);
    expect(t.capEffHex).toBe('000001ffffffffff');
    expect(t.capable(CAP_IPC_LOCK)).toBe(true);
    expect(t.setuid(1000)).toBe(0);
    expect(t.capEffHex).toBe('0000000000000000');
    expect(t.setuid(0)).toBe(-EPERM);
  });
});
