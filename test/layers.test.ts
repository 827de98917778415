/**
 * DESIGN.md's layer rule as a test: data flows down, nothing imports upward, no import cycles
 * between layers, and the core (below scenario/) imports nothing outside the project but node:
 * built-ins it is allowed to use in the browser too (none).
 */

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../src');
/** The playground: layer `web`, a folder of its own beside src/ (it is also the Vite root). */
const WEB = resolve(import.meta.dirname, '../web');

/** Rank of each layer: a file may import only from layers of lower or equal rank (equal = itself). */
const RANK: Record<string, number> = {
  uapi: 0,
  mm: 1,
  pgtable: 2,
  smmu: 3,
  iommu: 4,
  device: 5,
  vfio: 6,
  iommufd: 6,
  host: 7,
  guest: 8,
  // The VMM owns guest RAM and presents the virtual SMMU the guest drives: it sits just above the guest.
  vmm: 8.5,
  scenario: 9,
  cli: 10,
  web: 10,
  // Below cli: the `serve` command (cli/serve.ts) parses its options with cli/host-options.ts and calls it.
  server: 9.5,
};
const CORE_MAX_RANK = 8.5;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]);
}

const layerOf = (file: string): string => relative(SRC, file).split('/')[0];

describe('layers', () => {
  const all = files(SRC);

  it('every folder under src/ is a known layer', () => {
    const unknown = [...new Set(all.map(layerOf))].filter((l) => RANK[l] === undefined && !l.endsWith('.ts'));
    expect(unknown).toEqual([]);
  });

  it('no file imports from a higher layer or from a sibling layer of the same rank', () => {
    const bad: string[] = [];
    for (const f of all) {
      const from = layerOf(f);
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const to = layerOf(resolve(dirname(f), spec));
        if (to === from) continue;
        if (RANK[to] === undefined || RANK[to] >= RANK[from]) bad.push(`${relative(SRC, f)} -> ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the core has no runtime dependencies (only relative imports)', () => {
    const bad: string[] = [];
    for (const f of all) {
      if ((RANK[layerOf(f)] ?? 99) > CORE_MAX_RANK) continue;
      for (const spec of imports(f)) if (!spec.startsWith('.')) bad.push(`${relative(SRC, f)} -> ${spec}`);
    }
    expect(bad).toEqual([]);
  });
});

describe('layers: web/ (the playground)', () => {
  // vite.config.ts is the build's configuration, run by Node, not part of the page.
  const page = files(WEB).filter((f) => !f.endsWith('vite.config.ts'));

  it('is found', () => {
    expect(page.map((f) => relative(WEB, f))).toContain('main.ts');
  });

  it('imports only web/ itself and layers below it in src/, never cli or server', () => {
    const bad: string[] = [];
    for (const f of page)
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = resolve(dirname(f), spec);
        if (!relative(WEB, target).startsWith('..')) continue;
        const to = relative(SRC, target).startsWith('..') ? '(outside src)' : layerOf(target);
        if (RANK[to] === undefined || RANK[to] >= RANK.web || to === 'server')
          bad.push(`web/${relative(WEB, f)} -> ${spec}`);
      }
    expect(bad).toEqual([]);
  });

  it("runs in a browser: no node: built-ins, no packages but the scenario layer's yaml and zod", () => {
    const bad: string[] = [];
    for (const f of page)
      for (const spec of imports(f))
        if (!spec.startsWith('.') && spec !== 'yaml' && spec !== 'zod')
          bad.push(`web/${relative(WEB, f)} -> ${spec}`);
    expect(bad).toEqual([]);
  });
});
