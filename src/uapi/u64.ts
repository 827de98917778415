/** A __u64 field as a caller may give it: a number (exact below 2^53) or a bigint. */
export type U64 = number | bigint;
