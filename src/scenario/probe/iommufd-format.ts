/**
 * What probe/iommufd_ops.inc computes without the kernel: the raw SMMUv3 commands `invalidate` builds
 * from a name and its fields (build_cmd), and the decoding `veventq_read` prints for each record and
 * its summary (o_evt, the per-type groups), field for field.
 */

import { EVENT_NAMES } from '../../smmu/index.ts';
import type { ProbeRecord } from './runner.ts';

/** A 64-bit word with all 16 hex digits, as the probe prints commands, CDs and table words. */
export const hex16 = (v: bigint): string => `0x${BigInt.asUintN(64, v).toString(16).padStart(16, '0')}`;
const hex = (v: bigint): string => `0x${BigInt.asUintN(64, v).toString(16)}`;

/** build_cmd: the two command words for a name, or null for an unknown name (EINVAL, nothing sent). */
export function buildCmd(name: string, argu: (k: string, def: bigint) => bigint): [bigint, bigint] | null {
  const u = (v: bigint): bigint => BigInt.asUintN(64, v);
  const asid = argu('asid', 1n);
  const vmid = argu('vmid', 0n);
  const va = argu('va', 0n);
  const sid = argu('vsid', 0n);
  const ssid = argu('ssid', 0n);
  const leaf = argu('leaf', 1n);
  const num = argu('num', 0n);
  const scale = argu('scale', 0n);
  const tg = argu('tg', 0n);
  const ttl = argu('ttl', 0n);
  switch (name) {
    case 'nh_va':
    case 'nh_vaa': {
      const w0 =
        (name === 'nh_va' ? 0x12n : 0x13n) |
        u(num << 12n) |
        u(scale << 20n) |
        u(vmid << 32n) |
        (name === 'nh_va' ? u(asid << 48n) : 0n);
      const w1 = (leaf & 1n) | ((ttl & 3n) << 8n) | ((tg & 3n) << 10n) | (va & ~0xfffn);
      return [u(w0), u(w1)];
    }
    case 'nh_asid':
      return [u(0x11n | u(vmid << 32n) | u(asid << 48n)), 0n];
    case 'nh_all':
      return [u(0x10n | u(vmid << 32n)), 0n];
    case 'nsnh_all':
      return [0x30n, 0n];
    case 's12_vmall':
      return [u(0x28n | u(vmid << 32n)), 0n];
    case 's2_ipa':
      return [u(0x2an | u(vmid << 32n)), (leaf & 1n) | (va & 0xffffffffff000n)];
    case 'cfgi_cd':
      return [u(0x05n | u(ssid << 12n) | u(sid << 32n)), leaf & 1n];
    case 'cfgi_cd_all':
      return [u(0x06n | u(sid << 32n)), 0n];
    case 'cfgi_ste':
      return [u(0x03n | u(sid << 32n)), leaf & 1n];
    case 'atc_inv':
      return [u(0x40n | u(ssid << 12n) | u(sid << 32n)), 52n];
    case 'sync':
      return [0x46n, 0n];
    case 'raw':
      return [argu('raw0', 0n), argu('raw1', 0n)];
    default:
      return null;
  }
}

const CLASSES = ['CD', 'TT', 'IN', '3'];

const evtName = (t: number): string => EVENT_NAMES[t] ?? '?';

/** o_evt: the raw words and the decoded fields of one record, in the probe's order. */
function evtFields(e: bigint[], rec: ProbeRecord): void {
  const bit = (w: bigint, b: bigint): number => Number((w >> b) & 1n);
  rec.evt = e.map(hex16);
  const t = Number(e[0] & 0xffn);
  rec.type = `0x${t.toString(16).padStart(2, '0')}`;
  rec.name = evtName(t);
  rec.sid = Number(e[0] >> 32n);
  rec.ssv = bit(e[0], 11n);
  rec.s2 = bit(e[1], 39n);
  rec.class = CLASSES[Number((e[1] >> 40n) & 3n)];
  rec.rnw = bit(e[1], 35n);
  rec.pnu = bit(e[1], 33n);
  rec.ind = bit(e[1], 34n);
  rec.tt_read = bit(e[1], 44n);
  rec.input_addr = hex(e[2]);
  rec.ipa = hex(e[3] & 0x000f_ffff_ffff_f000n);
  rec.fetch_addr = hex(e[3] & 0x000f_ffff_ffff_fff8n);
}

/** veventq_read's output fields for the bytes one read() returned (n < 0: none). */
export function formatVeventqRead(bytes: Uint8Array, n: number, max: number): ProbeRecord {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: ProbeRecord[] = [];
  let p = 0;
  let k = 0;
  let lost = 0;
  const groups: { key: number; cnt: number; first: bigint; last: bigint; seq0: number; seq1: number }[] = [];
  while (n > 0 && p + 8 <= n) {
    const flags = v.getUint32(p, true);
    const sequence = v.getUint32(p + 4, true);
    p += 8;
    if (flags & 1) {
      lost++;
      if (records.length < max) records.push({ flags, sequence, lost_events: true });
      continue;
    }
    if (p + 32 > n) break;
    const ev = [0, 1, 2, 3].map((i) => v.getBigUint64(p + 8 * i, true));
    p += 32;
    k++;
    if (records.length < max) {
      const rec: ProbeRecord = { flags, sequence };
      evtFields(ev, rec);
      records.push(rec);
    }
    const key =
      Number(ev[0] & 0xffn) |
      (Number((ev[1] >> 39n) & 1n) << 8) |
      (Number((ev[1] >> 40n) & 3n) << 9) |
      (Number((ev[1] >> 35n) & 1n) << 11);
    let g = groups.find((x) => x.key === key);
    if (g === undefined && groups.length < 16) {
      g = { key, cnt: 0, first: ev[2], last: ev[2], seq0: sequence, seq1: sequence };
      groups.push(g);
    }
    if (g !== undefined) {
      g.cnt++;
      g.last = ev[2];
      g.seq1 = sequence;
    }
  }
  return {
    records,
    n_records: k,
    lost_headers: lost,
    summary: groups.map((g) => ({
      type: `0x${(g.key & 0xff).toString(16).padStart(2, '0')}`,
      name: evtName(g.key & 0xff),
      s2: (g.key >> 8) & 1,
      class: CLASSES[(g.key >> 9) & 3],
      rnw: (g.key >> 11) & 1,
      count: g.cnt,
      first_input_addr: hex(g.first),
      last_input_addr: hex(g.last),
      seq: [g.seq0, g.seq1],
    })),
  };
}
