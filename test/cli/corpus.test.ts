/**
 * Bad input at the surface (issue 9): a corpus of broken probe files (broken-probes/, each with its
 * message in messages.yaml) and of CLI invocations (invocations.yaml), each with its exact message
 * and exit status, nothing on stdout and nothing run. The broken scenario files are the third part
 * of the corpus (test/scenario/broken/, checked by test/scenario/scenarios.test.ts).
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli } from './run.ts';

const ROOT = join(import.meta.dirname, '../..');
const PROBES = join(import.meta.dirname, 'broken-probes');
const MESSAGES = parse(readFileSync(join(PROBES, 'messages.yaml'), 'utf8')) as Record<string, string>;
const INVOCATIONS = parse(readFileSync(join(import.meta.dirname, 'invocations.yaml'), 'utf8')) as {
  args: string[];
  exit: number;
  stderr: string;
  stdout?: string;
}[];

// Paths in the corpus are relative to the repository root, vitest's cwd.
const run = (args: string[]) => runCli(...args);

describe('the bad-input corpus', () => {
  it('runs from the repository root', () => {
    expect(process.cwd()).toBe(ROOT);
  });

  const probes = readdirSync(PROBES).filter((f) => f.endsWith('.txt'));

  it('has at least 30 broken scenarios, 30 broken probe files and 30 CLI invocations, each with its message', () => {
    const scenarios = readdirSync(join(ROOT, 'test/scenario/broken')).filter((f) => f !== 'messages.yaml');
    expect(scenarios.length).toBeGreaterThanOrEqual(30);
    expect(probes.length).toBeGreaterThanOrEqual(30);
    expect(INVOCATIONS.length).toBeGreaterThanOrEqual(30);
    expect(Object.keys(MESSAGES).sort()).toEqual([...probes].sort());
  });

  it.each(probes)('probe %s: file:line: field: message, exit 2, nothing run', async (name) => {
    const path = `test/cli/broken-probes/${name}`;
    const r = await run(['probe', path]);
    expect(r.err).toBe(`vfio-nest probe: ${path}:${MESSAGES[name]}\n`);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
  });

  it.each(INVOCATIONS.map((c) => [c.args.join(' '), c] as const))('vfio-nest %s', async (_name, c) => {
    const r = await run(c.args);
    expect(r.err).toBe(`${c.stderr}\n`);
    expect(r.code).toBe(c.exit);
    expect(r.out).toBe(c.stdout ?? '');
  });
});
