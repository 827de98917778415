/**
 * VMSAv8-64 translation-table geometry: granules, levels, start levels, concatenation, address sizes.
 *
 * Everything derives from the granule (as log2 bytes, 12/14/16) and the level, as in Linux
 * `io-pgtable-arm.c` (ARM_LPAE_LVL_SHIFT and friends) and the Arm ARM walk pseudocode. Sizes that
 * are log2 end in `Lg2`. Address arithmetic stays in plain numbers: powers of two come from tables,
 * never from `1 << n` (which is 32-bit in JS).
 */

export const GRANULE_4K = 12;
export const GRANULE_16K = 14;
export const GRANULE_64K = 16;

/** 2^k and 2^-k for k in 0..64, exact doubles. */
export const POW2: readonly number[] = Array.from({ length: 65 }, (_, k) => 2 ** k);
export const INV_POW2: readonly number[] = Array.from({ length: 65 }, (_, k) => 2 ** -k);

/** Index of the highest set bit of a positive integer < 2^53 (floor(log2(x))). */
export function fls(x: number): number {
  const hi = Math.floor(x / 4294967296);
  if (hi > 0) return 63 - Math.clz32(hi);
  return 31 - Math.clz32(x >>> 0);
}

/**
 * Count of trailing zero bits of a non-negative integer that is exact as a double (64 for zero):
 * a page-aligned u64 above 2^53 qualifies.
 */
export function ctz(x: number): number {
  if (x === 0) return 64;
  const lo = x >>> 0;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Math.floor(x / 4294967296) % 4294967296;
  return hi === 0 ? 64 : 63 - Math.clz32(hi & -hi);
}

/** Address bits resolved by one table level: a table is one granule of 8-byte descriptors. */
export function strideLg2(granuleLg2: number): number {
  return granuleLg2 - 3;
}

/** First input-address bit resolved at `level` (reference §1.1; QEMU `level_shift`). */
export function levelShift(granuleLg2: number, level: number): number {
  return granuleLg2 + (3 - level) * (granuleLg2 - 3);
}

/** Stage-1 (and Linux) start level for an input size: 4 - ceil((IS - granule) / stride) (§1.2). */
export function startLevelForInput(granuleLg2: number, inputBits: number): number {
  return 4 - Math.ceil((inputBits - granuleLg2) / (granuleLg2 - 3));
}

/** Log2 of the number of entries the start level resolves (more than a stride when concatenated). */
export function startTableBits(granuleLg2: number, startLevel: number, inputBits: number): number {
  return inputBits - levelShift(granuleLg2, startLevel);
}

/** Number of concatenated start-level tables (1 when the start table fits in one granule). */
export function concatenatedTables(granuleLg2: number, startLevel: number, inputBits: number): number {
  const bits = startTableBits(granuleLg2, startLevel, inputBits) - strideLg2(granuleLg2);
  return bits > 0 ? POW2[bits] : 1;
}

/**
 * Output/physical address size encodings shared by SMMU_IDR5.OAS, CD.IPS, STE.S2PS and TCR.PS
 * (reference §1.5). 0b111 is Reserved and behaves as 0b110 in SMMUv3.1-3.3 (IHI 0070 CD.IPS).
 */
export const PA_SIZE_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52, 52];

export function paSizeBits(encoding: number): number {
  return PA_SIZE_BITS[encoding & 7];
}

/** Inverse of `paSizeBits`, or -1 when `bits` is not an architected size. */
export function paSizeEncoding(bits: number): number {
  return PA_SIZE_BITS.indexOf(bits);
}

/**
 * Largest output address a descriptor can express: 52 bits only with the 64KB granule (FEAT_LPA),
 * 48 otherwise (no FEAT_LPA2 here). Arm ARM AArch64.PhysicalAddressSize with DS = 0.
 */
export function effectiveOutputBits(granuleLg2: number, paBits: number): number {
  return granuleLg2 === GRANULE_64K ? paBits : Math.min(paBits, 48);
}

/**
 * Whether a block descriptor is valid at `level` (Arm ARM AArch64.BlockDescSupported, DS = 0):
 * 4KB at levels 1-2, 16KB at level 2, 64KB at level 2 and at level 1 only with a 52-bit PA.
 */
export function blockAllowed(granuleLg2: number, level: number, paMaxBits: number): boolean {
  if (level === 2) return true;
  if (level !== 1) return false;
  if (granuleLg2 === GRANULE_4K) return true;
  return granuleLg2 === GRANULE_64K && paMaxBits >= 52;
}

/**
 * Linux `pgsize_bitmap` after `arm_lpae_restrict_pgsizes`: 4K -> 4K|2M|1G, 16K -> 16K|32M,
 * 64K -> 64K|512M (+4T when the output size exceeds 48 bits). A number, not a 32-bit mask.
 */
export function pgsizeBitmap(granuleLg2: number, oasBits = 48): number {
  let bitmap = 0;
  for (const lg2 of pageSizesLg2(granuleLg2, oasBits)) bitmap += POW2[lg2];
  return bitmap;
}

/** The page and block sizes (log2) of a granule, smallest first. */
export function pageSizesLg2(granuleLg2: number, oasBits = 48): number[] {
  if (granuleLg2 === GRANULE_4K) return [12, 21, 30];
  if (granuleLg2 === GRANULE_16K) return [14, 25];
  return oasBits > 48 ? [16, 29, 42] : [16, 29];
}

/** The set bits of a page-size bitmap (a number that may exceed 32 bits), as log2 sizes. */
export function bitmapLg2s(bitmap: number): number[] {
  const out: number[] = [];
  for (let k = 0; k <= 52; k++) if (Math.floor(bitmap / POW2[k]) % 2 === 1) out.push(k);
  return out;
}

/** VMSA TCR/VTCR.TG0 encodings (also CD.TG0, STE.S2TG): 0 4KB, 1 64KB, 2 16KB, 3 Reserved. */
export function tg0ToGranule(tg0: number): number {
  return tg0 === 0 ? GRANULE_4K : tg0 === 1 ? GRANULE_64K : tg0 === 2 ? GRANULE_16K : -1;
}

export function granuleToTg0(granuleLg2: number): number {
  return granuleLg2 === GRANULE_4K ? 0 : granuleLg2 === GRANULE_64K ? 1 : 2;
}

/** TCR.TG1 / CD.TG1 use a different encoding: 0 Reserved, 1 16KB, 2 4KB, 3 64KB (§1.2). */
export function tg1ToGranule(tg1: number): number {
  return tg1 === 1 ? GRANULE_16K : tg1 === 2 ? GRANULE_4K : tg1 === 3 ? GRANULE_64K : -1;
}

/**
 * Stage-2 start level selected by SL0 (reference §1.3; Arm ARM AArch64.S2StartLevel, SL2 = 0):
 * 4KB 0->2, 1->1, 2->0, 3->3; 16KB/64KB 0->3, 1->2, 2->1, 3->0.
 */
export function s2StartLevel(granuleLg2: number, sl0: number): number {
  if (granuleLg2 === GRANULE_4K) return sl0 === 3 ? 3 : 2 - sl0;
  return 3 - sl0;
}

/** The SL0 value Linux programs for a start level (inverse of `s2StartLevel`). */
export function s2Sl0ForStartLevel(granuleLg2: number, startLevel: number): number {
  if (granuleLg2 === GRANULE_4K) return startLevel === 3 ? 3 : 2 - startLevel;
  return 3 - startLevel;
}

/**
 * Arm ARM AArch64.S2InvalidSL for DS = 0 and no FEAT_TTST: SL0 = 3 is reserved for every granule
 * here; level 0 (4KB) needs a PA size >= 44, level 1 needs >= 42 (16KB) or >= 44 (64KB).
 */
export function s2InvalidSl0(granuleLg2: number, sl0: number, paMaxBits: number): boolean {
  if (sl0 === 3) return true;
  if (sl0 !== 2) return false;
  if (granuleLg2 === GRANULE_16K) return paMaxBits < 42;
  return paMaxBits < 44;
}

/**
 * Arm ARM AArch64.S2InconsistentSL: the input size must need at least one bit at the start level
 * and at most a full table plus 4 bits of concatenation (16 tables).
 */
export function s2InconsistentSl(granuleLg2: number, startLevel: number, inputBits: number): boolean {
  const stride = granuleLg2 - 3;
  const minBits = (3 - startLevel) * stride + granuleLg2 + 1;
  const maxBits = minBits + (stride - 1) + 4;
  return inputBits < minBits || inputBits > maxBits;
}

/** Linux `ARM_LPAE_S2_MAX_CONCAT_PAGES`. */
export const S2_MAX_CONCAT_PAGES = 16;

export interface LpaeGeometry {
  granuleLg2: number;
  startLevel: number;
  /** Log2 of the entries in the start table (concatenated tables included). */
  pgdBitsLg2: number;
  /** Bytes of the start table (a multiple of the granule when concatenated). */
  pgdBytes: number;
}

/**
 * Table geometry Linux chooses for an input size (`arm_lpae_alloc_pgtable`): the fewest levels that
 * cover IAS; at stage 2 a level-0 start whose table has at most 16 entries becomes concatenated
 * level-1 tables (`arm_64_lpae_alloc_pgtable_s2`).
 */
export function lpaeGeometry(stage: 1 | 2, granuleLg2: number, ias: number): LpaeGeometry {
  const stride = granuleLg2 - 3;
  const vaBits = ias - granuleLg2;
  const levels = Math.ceil(vaBits / stride);
  let startLevel = 4 - levels;
  let pgdBitsLg2 = vaBits - stride * (levels - 1);
  if (stage === 2 && startLevel === 0 && POW2[pgdBitsLg2] <= S2_MAX_CONCAT_PAGES) {
    pgdBitsLg2 += stride;
    startLevel = 1;
  }
  // A start table of fewer than eight entries still takes 64 bytes: that is its minimum alignment.
  return { granuleLg2, startLevel, pgdBitsLg2, pgdBytes: Math.max(8 * POW2[pgdBitsLg2], 64) };
}
