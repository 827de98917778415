/**
 * Reading a scenario file (YAML, or JSON, which YAML 1.2 reads too) into plain values, and turning
 * any problem into one message that names the file, line, column and field path. Numbers are kept
 * as the text written (`0x100000`, `4096`) so that probe steps echo them exactly as the probe does,
 * and 64-bit values never pass through a double.
 */

import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';

export class ScenarioError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    /** Field path, e.g. `steps[3].iova`. */
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${file}:${line}:${col}: ${field ? `${field}: ` : ''}${detail}`);
    this.name = 'ScenarioError';
  }
}

export type Plain = string | boolean | null | Plain[] | { [k: string]: Plain };

/** A parsed file: its plain value and a way back from a field path to a position. */
export interface LoadedDocument {
  file: string;
  value: Plain;
  /** Line and column (1-based) of the node at `path`, or of its nearest existing ancestor. */
  position(path: (string | number)[]): { line: number; col: number };
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

function toPlain(node: unknown): Plain {
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === 'number' || typeof v === 'bigint') return node.source ?? String(v);
    if (typeof v === 'boolean' || v === null) return v;
    return String(v);
  }
  if (isSeq(node)) return node.items.map(toPlain);
  if (isMap(node)) {
    const out: { [k: string]: Plain } = {};
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      out[k] = toPlain(pair.value);
    }
    return out;
  }
  return null;
}

export function loadDocument(text: string, file: string): LoadedDocument {
  const lc = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lc,
    intAsBigInt: true,
    uniqueKeys: true,
    prettyErrors: false,
  });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const pos = lc.linePos(e.pos[0]);
    const msg =
      e.code === 'DUPLICATE_KEY'
        ? 'a key appears twice in this mapping'
        : e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw new ScenarioError(file, pos.line, pos.col, '', msg);
  }
  const position = (path: (string | number)[]): { line: number; col: number } => {
    for (let n = path.length; n >= 0; n--) {
      const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as Node | undefined;
      if (node?.range) return lc.linePos(node.range[0]);
    }
    return { line: 1, col: 1 };
  };
  return { file, value: toPlain(doc.contents), position };
}
