/**
 * Expectations: a partial, recursive match of what a step produced against what the scenario
 * expects. Numbers compare by value whatever their spelling (`0x1000`, `4096`, `"0x1000"`), so an
 * expectation can be written as naturally as the probe prints it. Returns the differences, one line
 * each, empty when everything held.
 */

import type { Plain } from './load.ts';
import { isProbeNumber, parseU64 } from './probe/parse.ts';

function asNumber(v: unknown): bigint | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt.asUintN(64, BigInt(v));
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (typeof v === 'string' && isProbeNumber(v)) return parseU64(v);
  return undefined;
}

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x)) ?? 'undefined';
}

export function diff(actual: unknown, expected: Plain, path = ''): string[] {
  if (expected === null)
    return actual === null || actual === undefined
      ? []
      : [`${path || 'value'}: expected null, got ${show(actual)}`];
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual))
      return [`${path}: expected a list of ${expected.length}, got ${show(actual)}`];
    if (actual.length !== expected.length)
      return [`${path}: expected ${expected.length} item(s), got ${actual.length}: ${show(actual)}`];
    return expected.flatMap((e, i) => diff(actual[i], e, `${path}[${i}]`));
  }
  if (typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual))
      return [`${path}: expected ${show(expected)}, got ${show(actual)}`];
    return Object.entries(expected).flatMap(([k, e]) =>
      diff((actual as Record<string, unknown>)[k], e, path ? `${path}.${k}` : k),
    );
  }
  if (typeof expected === 'boolean')
    return actual === expected ? [] : [`${path}: expected ${expected}, got ${show(actual)}`];
  const en = asNumber(expected);
  const an = asNumber(actual);
  if (en !== undefined && an !== undefined)
    return en === an ? [] : [`${path}: expected ${expected}, got ${show(actual)}`];
  if (expected === '-1' && actual === -1) return [];
  return String(actual) === expected ? [] : [`${path}: expected ${show(expected)}, got ${show(actual)}`];
}
