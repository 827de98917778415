/**
 * Ioctl request numbers back to their names, for traces. VFIO numbers are shared between fd kinds
 * (`_IO(';', 112)` is VFIO_IOMMU_GET_INFO on a container and VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on a
 * device: vfio-type1.md §1), so the name depends on the file the request went to. iommufd's requests
 * (`/dev/iommu`) share the type byte, from 0x80 up.
 */

import * as iommufd from './iommufd.ts';
import * as vfio from './vfio.ts';
import { VFIO_TYPE } from './vfio.ts';
import * as ext from './vfio-nest-ext.ts';

const BY_NUMBER = new Map<number, string[]>();
for (const mod of [vfio, ext, iommufd] as Record<string, unknown>[])
  for (const [name, v] of Object.entries(mod))
    if (
      typeof v === 'number' &&
      /^(VFIO|IOMMU)_/.test(name) &&
      ((v >>> 8) & 0xff) === VFIO_TYPE &&
      v >>> 16 === 0
    ) {
      const names = BY_NUMBER.get(v) ?? [];
      names.push(name);
      BY_NUMBER.set(v, names);
    }

const PREFIX: Record<string, RegExp> = {
  'vfio-container': /^VFIO_(GET_API|CHECK_EXT|SET_IOMMU|IOMMU_)/,
  'vfio-group': /^VFIO_GROUP_/,
  'vfio-device': /^VFIO_DEVICE_/,
  'vfio-device-cdev': /^VFIO_DEVICE_/,
  iommufd: /^IOMMU_/,
};

/** `VFIO_IOMMU_MAP_DMA`, or the number in hex when it is not a VFIO or iommufd request. */
export function ioctlName(request: number, fileKind?: string): string {
  const names = BY_NUMBER.get(request >>> 0);
  if (names === undefined) return `0x${(request >>> 0).toString(16)}`;
  const want = fileKind === undefined ? undefined : PREFIX[fileKind];
  return (want && names.find((n) => want.test(n))) ?? names.join('|');
}
