/**
 * The descriptor table of a modelled process. Asked of the oracle
 * (test/oracle/local-answers/{6.1,6.12,6.18}-intel/y4-emfile-open.jsonl: a local `fill_fds` op opens
 * /dev/null until EMFILE, 1020 beside stdio; 1024 descriptors, RLIMIT_NOFILE's default): once the
 * table is full, open(2) is EMFILE before the path is even looked up — /dev/vfio/vfio, a path that does
 * not exist and the group all answered EMFILE — as do_sys_open takes a descriptor first.
 */

import { describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.ts';
import { EMFILE, ENOENT } from '../../src/uapi/errno.ts';

describe('a full descriptor table', () => {
  it('open(2) is EMFILE before the path is looked up; a close frees a slot', () => {
    const host = new Host();
    const p = host.spawn();
    expect(p.open('/dev/vfio/nonexistent')).toBe(-ENOENT);
    let last = -1;
    for (let fd = p.eventfd(); fd >= 0; fd = p.eventfd()) last = fd;
    expect(last).toBe(1023);
    expect(p.eventfd()).toBe(-EMFILE);
    expect(p.open('/dev/vfio/vfio')).toBe(-EMFILE);
    expect(p.open('/dev/vfio/nonexistent')).toBe(-EMFILE);
    expect(p.open(`/dev/vfio/${host.groups[0].id}`)).toBe(-EMFILE);
    expect(p.close(last)).toBe(0);
    expect(p.open(`/dev/vfio/${host.groups[0].id}`)).toBe(last);
  });
});
