/** What a host's arm-smmu-v3 driver wrote for its first device, read back from host memory. */

import type { Host } from '../../src/host/host.ts';
import type { ArmSmmuV3 } from '../../src/iommu/arm-smmu-v3.ts';
import { decodeSte, type SteFields } from '../../src/smmu/index.ts';

/** The physical STE of the host's first device (its 16 words in the host stream table). */
export function physicalSte(host: Host): SteFields {
  const at = (host.iommu as ArmSmmuV3).steAddress(host.devices[0].rid);
  return decodeSte(Array.from({ length: 16 }, (_, i) => host.phys.readU32(at + 4 * i)));
}
