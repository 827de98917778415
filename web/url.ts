/**
 * The playground's state in the URL fragment, so a link reopens the same scenario at the same step:
 * `#file=demo.yaml&step=6&tab=walk`, or for edited text `#yaml=<deflate-raw, base64url>&name=...&step=3`,
 * plus the explored translation (`iova=0x3000000&write=1`). `step` is the index of the last step run,
 * as `vfio-nest run` numbers them; without it no step has run.
 */

export const TABS = ['walk', 'vfio', 'smmu', 'guest'] as const;
export type Tab = (typeof TABS)[number];

export interface UrlState {
  /** An examples/ file by name (`demo.yaml`). */
  file?: string;
  /** Scenario text that is not an unchanged example. */
  yaml?: string;
  /** The name messages give edited text (the example it was edited from: `examples/demo.yaml`). */
  name?: string;
  /** Steps run (0: none). */
  position: number;
  tab?: Tab;
  /** The explorer's translation. */
  iova?: number;
  write?: boolean;
  sid?: number;
  cold?: boolean;
}

function toBase64Url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array {
  const s = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

async function pipe(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const out = new Response(new Blob([bytes as BlobPart]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}

export async function packText(text: string): Promise<string> {
  return toBase64Url(await pipe(new TextEncoder().encode(text), new CompressionStream('deflate-raw')));
}

/** The text a `yaml=` value holds, or null when it is damaged. */
export async function unpackText(packed: string): Promise<string | null> {
  try {
    const bytes = await pipe(fromBase64Url(packed), new DecompressionStream('deflate-raw'));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

const hex = (v: number): string => `0x${v.toString(16)}`;

/** A number as the URL writes it (`0x3000000`, `4096`); undefined when it is not one. */
export function parseNumber(text: string | null | undefined): number | undefined {
  if (text === null || text === undefined) return undefined;
  const t = text.trim();
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : undefined;
}

export async function encodeState(s: UrlState): Promise<string> {
  const p = new URLSearchParams();
  if (s.yaml !== undefined) {
    p.set('yaml', await packText(s.yaml));
    if (s.name !== undefined) p.set('name', s.name);
  } else if (s.file !== undefined) p.set('file', s.file);
  if (s.position > 0) p.set('step', String(s.position - 1));
  if (s.tab !== undefined && s.tab !== 'walk') p.set('tab', s.tab);
  if (s.iova !== undefined) p.set('iova', hex(s.iova));
  if (s.write) p.set('write', '1');
  if (s.sid !== undefined) p.set('sid', hex(s.sid));
  if (s.cold) p.set('cold', '1');
  return p.toString();
}

/** Reads a fragment (with or without `#`). Unknown or damaged parts are left out, never thrown. */
export async function decodeState(hash: string): Promise<UrlState & { damaged?: string }> {
  const p = new URLSearchParams(hash.replace(/^#/, ''));
  const out: UrlState & { damaged?: string } = { position: 0 };
  const yaml = p.get('yaml');
  if (yaml !== null) {
    const text = await unpackText(yaml);
    if (text === null) out.damaged = 'the scenario in this link is damaged (cut short?)';
    else out.yaml = text;
  }
  const name = p.get('name');
  if (out.yaml !== undefined && name !== null && /^[\w./-]{1,200}$/.test(name)) out.name = name;
  const file = p.get('file');
  if (file !== null && out.yaml === undefined) out.file = file;
  const step = parseNumber(p.get('step'));
  if (step !== undefined) out.position = step + 1;
  const tab = p.get('tab');
  if (tab !== null && (TABS as readonly string[]).includes(tab)) out.tab = tab as Tab;
  const iova = parseNumber(p.get('iova'));
  if (iova !== undefined) out.iova = iova;
  if (p.get('write') === '1') out.write = true;
  const sid = parseNumber(p.get('sid'));
  if (sid !== undefined) out.sid = sid;
  if (p.get('cold') === '1') out.cold = true;
  return out;
}
