/**
 * The shadow's predictions for a group-opened vfio-pci device fd over the edu, written from the
 * answers real kernels gave (test/oracle/local-answers/<config>/y6-device-api.jsonl, cited by seq),
 * not from src/. Only what needs no interrupt, ioeventfd or power state is predicted; the rest is
 * uncertain and re-read by the runner.
 */

import { type DeviceFacts, EFAULT, EINVAL, ENODEV, ENOTTY } from './facts.ts';
import { type ArgView, certain, diff, type Prediction, u32, uncertain } from './shadow.ts';

const DEVICE_BASE = 0x3b6b;
const GET_INFO = DEVICE_BASE;
const GET_REGION_INFO = DEVICE_BASE + 1;
const GET_IRQ_INFO = DEVICE_BASE + 2;
const SET_IRQS = DEVICE_BASE + 3;
const RESET = DEVICE_BASE + 4;
const HOT_RESET_INFO = DEVICE_BASE + 5;
const HOT_RESET = DEVICE_BASE + 6;
const IOEVENTFD = DEVICE_BASE + 9;
const FEATURE = DEVICE_BASE + 10;

/** The edu's regions as GET_REGION_INFO reports them (seq 11-21): flags and size; VGA and above EINVAL. */
const REGIONS: readonly { flags: number; size: bigint }[] = [
  { flags: 7, size: 0x100000n },
  ...Array.from({ length: 6 }, () => ({ flags: 0, size: 0n })),
  { flags: 3, size: 256n },
];
/** GET_INFO's num_regions (seq 5-10): BARs 0-5, ROM, config and VGA, whether present or not. */
export const NUM_REGIONS = 9;
/** Per IRQ index: GET_IRQ_INFO's flags and count (seq 23-28); ERR (3) is EINVAL on conventional PCI. */
const IRQS: readonly ({ flags: number; count: number } | null)[] = [
  { flags: 7, count: 1 },
  { flags: 9, count: 1 },
  { flags: 9, count: 0 },
  null,
  { flags: 9, count: 1 },
];
const FEATURE_GET = 1 << 16;
const FEATURE_SET = 1 << 17;
const FEATURE_PROBE = 1 << 18;

/**
 * mmap(MAP_SHARED) of the device fd (O y12-device-mmap): a page-aligned piece of BAR0 inside its 1 MiB
 * maps (0 here: the address is the model's to choose); anything else is EINVAL.
 */
export function deviceMmap(d: DeviceFacts | null, offset: number, len: number): Prediction {
  if (d === null) return uncertain('the device fd on 3.19');
  const pages = Math.ceil(len / 4096) * 4096;
  const bar0 = Number(REGIONS[0].size);
  return certain(len > 0 && offset % 4096 === 0 && offset + pages <= bar0 ? 0 : -EINVAL); // seq 5-20
}

export function deviceIoctl(d: DeviceFacts | null, req: number, arg: ArgView): Prediction {
  if (d === null) return uncertain('the device fd on 3.19');
  switch (req) {
    case GET_INFO: {
      // seq 5-10: minsz 16; flags PCI (no reset), 9 regions, 5 IRQs; 16 bytes back.
      const b = arg.read(16);
      if (typeof b === 'number') return certain(b);
      if (u32(b, 0) < 16) return certain(-EINVAL);
      if (!arg.canWrite(16)) return certain(-EFAULT);
      const argsz = u32(b, 0);
      return certain(0, () => {
        const o = arg.read(16) as Uint8Array;
        return diff(
          'DEVICE_GET_INFO',
          [argsz, 2, NUM_REGIONS, 5],
          [0, 4, 8, 12].map((i) => u32(o, i)),
        );
      });
    }
    case GET_REGION_INFO: {
      const b = arg.read(32);
      if (typeof b === 'number') return certain(b);
      const index = u32(b, 8);
      if (u32(b, 0) < 32 || index >= REGIONS.length) return certain(-EINVAL);
      if (!arg.canWrite(32)) return certain(-EFAULT);
      const r = REGIONS[index];
      return certain(0, () => {
        const o = arg.read(32) as Uint8Array;
        return diff(
          'DEVICE_GET_REGION_INFO',
          [r.flags, index, r.size, BigInt(index) << 40n],
          [
            u32(o, 4),
            u32(o, 8),
            BigInt(u32(o, 16)) + (BigInt(u32(o, 20)) << 32n),
            BigInt(u32(o, 24)) + (BigInt(u32(o, 28)) << 32n),
          ],
        );
      });
    }
    case GET_IRQ_INFO: {
      const b = arg.read(16);
      if (typeof b === 'number') return certain(b);
      const index = u32(b, 8);
      const irq = IRQS[index];
      if (u32(b, 0) < 16 || irq === undefined || irq === null) return certain(-EINVAL);
      if (!arg.canWrite(16)) return certain(-EFAULT);
      return certain(0, () => {
        const o = arg.read(16) as Uint8Array;
        return diff('DEVICE_GET_IRQ_INFO', [irq.flags, index, irq.count], [u32(o, 4), u32(o, 8), u32(o, 12)]);
      });
    }
    case SET_IRQS:
      return setIrqs(arg);
    case RESET:
      return certain(-EINVAL); // seq 49: no FLR or PM reset
    case HOT_RESET_INFO: {
      const b = arg.read(12);
      if (typeof b === 'number') return certain(b);
      return certain(u32(b, 0) < 12 ? -EINVAL : -ENODEV); // seq 50, 67
    }
    case HOT_RESET: {
      // seq 68-71, 134-137: header, the group-fd rule, then no slot or bus reset (ENODEV) before the
      // group fds are read (any count, any fd).
      const b = arg.read(12);
      if (typeof b === 'number') return certain(b);
      if (u32(b, 0) < 12 || u32(b, 4) !== 0) return certain(-EINVAL);
      if (d.hotResetNeedsFds && u32(b, 8) === 0) return certain(-EINVAL);
      return certain(-ENODEV);
    }
    case IOEVENTFD:
      return ioeventfd(d, arg);
    case FEATURE:
      return feature(arg);
    default:
      // seq 72-73: vfio_pci_core_ioctl's default; the cdev-only BIND/ATTACH/DETACH_IOMMUFD_PT on a
      // group-opened fd land there too, before any copy (y8-group-fd-cdev-ioctls seq 5-16).
      return certain(-ENOTTY);
  }
}

/** seq 31-48, 100-114: the validation of vfio_set_irqs_validate_and_prepare, then who handles it. */
function setIrqs(arg: ArgView): Prediction {
  const b = arg.read(20);
  if (typeof b === 'number') return certain(b);
  const [argsz, flags, index, start, count] = [0, 4, 8, 12, 16].map((o) => u32(b, o));
  if (argsz < 20 || index >= 5 || count >= 0xffff_ffff - start || flags & ~0x3f) return certain(-EINVAL);
  const max = IRQS[index]?.count ?? 0;
  if (start >= max || start + count > max) return certain(-EINVAL);
  const size = [0, 0, 1, 0, 4][flags & 7];
  if (size === undefined || (flags & 7) === 0 || (flags & 7) === 3) return certain(-EINVAL);
  if (argsz - 20 < count * size) return certain(-EINVAL);
  // The data is copied in before the handler is chosen.
  if (size > 0 && typeof arg.read(count * size, 20) === 'number') return certain(-EFAULT);
  const action = flags & 0x38;
  const handled = index === 0 ? action === 8 || action === 16 || action === 32 : action === 32;
  if (!handled) return certain(-ENOTTY); // seq 45: no handler for the index and action
  return uncertain('the device interrupt state');
}

/** seq 59-66: header, flags, size, BAR and range checks; then the registered list decides. */
function ioeventfd(d: DeviceFacts, arg: ArgView): Prediction {
  const b = arg.read(28);
  if (typeof b === 'number') return certain(b);
  const flags = u32(b, 4);
  const offset = BigInt(u32(b, 8)) + (BigInt(u32(b, 12)) << 32n);
  const fd = u32(b, 24) | 0;
  const size = flags & 0xf;
  // fd below -1: y11-eventfd-syscalls seq 27.
  if (u32(b, 0) < 28 || flags & ~0xf || (size & (size - 1)) !== 0 || size === 0 || fd < -1)
    return certain(-EINVAL);
  const bar = offset >> 40n;
  const pos = offset & ((1n << 40n) - 1n);
  if (bar > 5n || pos + BigInt(size) > (bar === 0n ? 0x100000n : 0n)) return certain(-EINVAL);
  if (size === 8 && !d.ioeventfdQword) return certain(-EINVAL);
  return uncertain('the registered ioeventfds');
}

/** seq 52-58, 115-133: flag checks; only the power-management features (3-5, SET) exist. */
function feature(arg: ArgView): Prediction {
  const b = arg.read(8);
  if (typeof b === 'number') return certain(b);
  const argsz = u32(b, 0);
  const flags = u32(b, 4);
  if (argsz < 8 || flags & ~0x7ffff) return certain(-EINVAL);
  if (!(flags & FEATURE_PROBE) && flags & FEATURE_SET && flags & FEATURE_GET) return certain(-EINVAL);
  const f = flags & 0xffff;
  if (f < 3 || f > 5) return certain(-ENOTTY);
  if (flags & FEATURE_GET) return certain(-EINVAL);
  if (flags & FEATURE_PROBE) return certain(0);
  if (!(flags & FEATURE_SET)) return certain(-EINVAL);
  if (f === 4 && argsz - 8 < 8) return certain(-EINVAL);
  return uncertain('the device power state');
}
