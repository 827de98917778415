/**
 * The probe's operations and the arguments each reads (probe/vfioprobe.c and iommufd_ops.inc):
 * `number` arguments go through parse_u64, `string` ones are used as text. `required` lists the
 * arguments the README writes without brackets.
 */

export type ArgKind = 'number' | 'string';

export interface OpSpec {
  args: Record<string, ArgKind>;
  required?: string[];
  /** Only in a probe built with -DWITH_IOMMUFD (the 6.18-iommufd kernel's). */
  iommufd?: boolean;
  /**
   * In this project's x86 probe patch (scripts/oracle/x86-local-ops.patch), not in the shared probe:
   * answers in test/oracle/local-answers use them.
   */
  local?: boolean;
}

const n = 'number' as const;
const s = 'string' as const;

export const PROBE_OPS: Record<string, OpSpec> = {
  open_container: { args: { c: n, path: s } },
  close_container: { args: { c: n } },
  get_api_version: { args: { c: n } },
  check_extension: { args: { ext: n, c: n }, required: ['ext'] },
  set_iommu: { args: { type: n, c: n }, required: ['type'] },
  open_group: { args: { g: n, group: n } },
  close_group: { args: { g: n } },
  group_get_status: { args: { g: n, argsz: n } },
  group_set_container: { args: { g: n, c: n, fd: n } },
  group_unset_container: { args: { g: n } },
  get_info: { args: { c: n, argsz: n } },
  map: {
    args: { c: n, iova: n, size: n, off: n, vaddr: n, flags: n, argsz: n, vm: s, bufsize: n },
    required: ['iova', 'size'],
  },
  unmap: { args: { c: n, iova: n, size: n, flags: n, argsz: n, vm: s }, required: ['iova', 'size'] },
  map_loop: {
    args: {
      c: n,
      iova: n,
      size: n,
      count: n,
      iova_stride: n,
      off: n,
      off_stride: n,
      bufsize: n,
      flags: n,
      stop_on_error: n,
      vm: s,
    },
    required: ['iova', 'size', 'count'],
  },
  unmap_loop: {
    args: { c: n, iova: n, size: n, count: n, iova_stride: n },
    required: ['iova', 'size', 'count'],
  },
  buffer: { args: { size: n, touch: s }, required: ['size'] },
  setrlimit_memlock: { args: { cur: n, max: n } },
  drop_priv: { args: { uid: n, gid: n } },
  vm_status: { args: {} },
  sleep: { args: { ms: n }, required: ['ms'] },
  device_open: { args: { g: n, name: s, master: n } },
  device_close: { args: {} },
  edu_dma: {
    args: { iova: n, size: n, dir: n, edu_off: n, timeout_ms: n },
    required: ['iova', 'size', 'dir'],
  },
  fill: { args: { off: n, size: n, seed: n } },
  zero: { args: { off: n, size: n } },
  cmp_buf: { args: { off: n, off2: n, size: n } },
  // iommufd ops (probe built WITH_IOMMUFD)
  open_iommufd: { args: { path: s }, iommufd: true },
  open_cdev: { args: { path: s }, iommufd: true },
  bind_iommufd: { args: { fd: n, flags: n, argsz: n, master: n }, iommufd: true },
  get_hw_info: { args: { dev_id: n, data_len: n }, iommufd: true },
  ioas_alloc: { args: { a: n }, iommufd: true },
  ioas_map: {
    args: { a: n, iova: n, size: n, off: n, vaddr: n, flags: n, ioas_id: n },
    required: ['iova'],
    iommufd: true,
  },
  ioas_unmap: { args: { a: n, iova: n, size: n, ioas_id: n }, required: ['iova'], iommufd: true },
  hwpt_alloc: {
    args: {
      h: n,
      on: s,
      pt: n,
      pt_id: n,
      flags: n,
      dev_id: n,
      data_type: n,
      data_len: n,
      ste0: n,
      ste1: n,
      v: n,
      cfg: n,
      s1fmt: n,
      cd_ipa: n,
      s1cdmax: n,
    },
    iommufd: true,
  },
  viommu_alloc: { args: { v: n, hwpt: n, hwpt_id: n, type: n, flags: n, dev_id: n }, iommufd: true },
  vdevice_alloc: { args: { v: n, virt_id: n, d: n, viommu_id: n, dev_id: n }, iommufd: true },
  attach_pt: { args: { hwpt: n, ioas: n, pt_id: n }, iommufd: true },
  detach_pt: { args: {}, iommufd: true },
  destroy: { args: { hwpt: n, viommu: n, vdevice: n, ioas: n, veventq: n, id: n }, iommufd: true },
  raw: {
    args: { req: n, len: n, w0: n, w1: n, w2: n, w3: n, w4: n, w5: n, w6: n, w7: n, bad: n, arg: n },
    required: ['req'],
    iommufd: true,
  },
  invalidate: {
    args: {
      v: n,
      hwpt: n,
      hwpt_id: n,
      cmd: s,
      cmd2: s,
      cmd3: s,
      cmd4: s,
      asid: n,
      vmid: n,
      va: n,
      vsid: n,
      ssid: n,
      leaf: n,
      num: n,
      scale: n,
      tg: n,
      ttl: n,
      raw0: n,
      raw1: n,
      entry_num: n,
      entry_len: n,
      data_type: n,
    },
    required: ['cmd'],
    iommufd: true,
  },
  veventq_alloc: { args: { v: n, type: n, depth: n, flags: n, viommu_id: n }, iommufd: true },
  veventq_read: { args: { size: n, max: n, wait_ms: n, settle_ms: n }, iommufd: true },
  veventq_close: { args: {}, iommufd: true },
  cd_write: {
    args: {
      off: n,
      asid: n,
      ttb: n,
      t0sz: n,
      tg0: n,
      irgn: n,
      orgn: n,
      sh: n,
      epd0: n,
      epd1: n,
      v: n,
      ips: n,
      affd: n,
      aa64: n,
      hd: n,
      ha: n,
      s: n,
      r: n,
      a: n,
      aset: n,
      mair: n,
      raw0: n,
      raw1: n,
      raw2: n,
      raw3: n,
    },
    required: ['off'],
    iommufd: true,
  },
  s1_init: { args: { root: n, pool: n, pool_end: n, ipa_base: n }, iommufd: true },
  s1_map: {
    args: { va: n, ipa: n, size: n, ro: n, af: n, attr: n, ng: n, desc: n },
    required: ['va', 'ipa'],
    iommufd: true,
  },
  s1_set: {
    args: { va: n, level: n, desc: n, ipa: n, invalid: n, ro: n, af: n, attr: n, ng: n },
    required: ['va'],
    iommufd: true,
  },
  dump: { args: { off: n, n: n }, required: ['off'], iommufd: true },
  write_file: { args: { path: s, value: s }, required: ['path'], iommufd: true, local: true },
  read_file: { args: { path: s }, required: ['path'], iommufd: true, local: true },
  dev_raw: {
    args: {
      req: n,
      show: n,
      efd_at: n,
      // Only its presence counts (has("bad")).
      bad: s,
      ...Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`w${i}`, n])),
    },
    required: ['req'],
    local: true,
  },
  dev_rw: { args: { off: n, len: n, value: n }, required: ['off'], local: true },
  dirty: { args: { c: n, flags: n, iova: n, size: n, pgsize: n, bitmap_size: n }, local: true },
  efd_read: { args: { fd: n }, required: ['fd'], local: true },
  fill_fds: { args: {}, local: true },
  dev_mmap: { args: { off: n, len: n, prot: n, private: s }, required: ['off'], local: true },
  fd_rw: { args: { fd: s, how: s, off: n, len: n, value: n, whence: n }, required: ['fd'], local: true },
};
