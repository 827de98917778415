/**
 * Field tables for the 64-byte STE and CD: name, 32-bit word, first bit, width (IHI 0070 §5.2,
 * §5.4). Absolute bit n of a structure is bit n % 32 of word n / 32. Address fields spanning two
 * words are handled by `getAddr` / `setAddr`.
 */

export type FieldSpec = readonly [name: string, word: number, lsb: number, width: number];
/** An address spanning a word pair: name, first word, first bit, its bits in the next word. */
export type AddrSpec = readonly [name: string, word: number, lsb: number, hiBits: number];

export function getField(words: ArrayLike<number>, word: number, lsb: number, width: number): number {
  const v = words[word] >>> lsb;
  return width >= 32 ? v >>> 0 : v & ((1 << width) - 1);
}

export function setField(words: Uint32Array, word: number, lsb: number, width: number, value: number): void {
  const mask = width >= 32 ? 0xffffffff : ((1 << width) - 1) << lsb;
  words[word] = ((words[word] & ~mask) | ((value << lsb) & mask)) >>> 0;
}

/**
 * An address held in bits [hiBits + 31 : lsb] of a word pair: word `w` bits [31:lsb] are address
 * bits [31:lsb], word `w + 1` bits [hiBits - 1 : 0] are address bits [hiBits + 31 : 32].
 */
export function getAddr(words: ArrayLike<number>, w: number, lsb: number, hiBits: number): number {
  const lo = (words[w] & ~((1 << lsb) - 1)) >>> 0;
  const hi = hiBits >= 32 ? words[w + 1] >>> 0 : words[w + 1] & ((1 << hiBits) - 1);
  return hi * 4294967296 + lo;
}

export function setAddr(words: Uint32Array, w: number, lsb: number, hiBits: number, addr: number): void {
  const loMask = ~((1 << lsb) - 1) >>> 0;
  words[w] = ((words[w] & ~loMask) | ((addr % 4294967296) & loMask)) >>> 0;
  const hiMask = hiBits >= 32 ? 0xffffffff : (1 << hiBits) - 1;
  words[w + 1] = ((words[w + 1] & ~hiMask) | (Math.floor(addr / 4294967296) & hiMask)) >>> 0;
}

export function decodeFields(words: ArrayLike<number>, specs: readonly FieldSpec[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, w, lsb, width] of specs) out[name] = getField(words, w, lsb, width);
  return out;
}

export function encodeFields(
  words: Uint32Array,
  specs: readonly FieldSpec[],
  values: Record<string, number>,
): void {
  for (const [name, w, lsb, width] of specs) {
    const v = values[name];
    if (v !== undefined) setField(words, w, lsb, width, v);
  }
}

/** A 64-byte structure's fields: the bit fields, then the addresses. */
export function decodeStructFields(
  words: ArrayLike<number>,
  specs: readonly FieldSpec[],
  addrs: readonly AddrSpec[],
): Record<string, number> {
  const out = decodeFields(words, specs);
  for (const [name, w, lsb, hiBits] of addrs) out[name] = getAddr(words, w, lsb, hiBits);
  return out;
}

/** The 16 words of a structure from its fields (unnamed bits zero). */
export function encodeStructFields(
  specs: readonly FieldSpec[],
  addrs: readonly AddrSpec[],
  values: Record<string, number>,
): Uint32Array {
  const w = new Uint32Array(16);
  encodeFields(w, specs, values);
  for (const [name, word, lsb, hiBits] of addrs) {
    const v = values[name];
    if (v !== undefined) setAddr(w, word, lsb, hiBits, v);
  }
  return w;
}

export function hexWords64(words: ArrayLike<number>): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < words.length; i += 2) {
    out.push(
      `0x${(words[i + 1] >>> 0).toString(16).padStart(8, '0')}${(words[i] >>> 0).toString(16).padStart(8, '0')}`,
    );
  }
  return out;
}
