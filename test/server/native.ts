/**
 * Helpers for the tests that run real programs against `vfio-nest serve`: build the interposer (with
 * package.json's build:preload command) and C programs into a temp dir, start the server as the CLI
 * does, run a client under LD_PRELOAD.
 */

import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '../..');

export function haveGcc(): boolean {
  return spawnSync('gcc', ['--version'], { stdio: 'ignore' }).status === 0;
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'vfio-nest-serve-'));
}

/** Builds the interposer into `dir` with package.json's own build:preload command. */
export function buildPreload(dir: string): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const cmd = pkg.scripts['build:preload']
    .replaceAll('build/', `${dir}/`)
    .replace('mkdir -p build', `mkdir -p ${dir}`);
  execFileSync('sh', ['-c', cmd], { cwd: ROOT, stdio: 'pipe' });
  return join(dir, 'libvfio-nest-preload.so');
}

/** Compiles one C program (dynamically linked, so LD_PRELOAD applies). */
export function buildC(dir: string, source: string, name: string): string {
  const out = join(dir, name);
  execFileSync('gcc', ['-O2', '-o', out, join(ROOT, source)], { stdio: 'pipe' });
  return out;
}

export interface Serve {
  socket: string;
  proc: ChildProcess;
  /** What the server printed on stderr so far. */
  readonly log: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `vfio-nest serve` (src/cli/main.ts under tsx) and waits for it to listen. */
export function startServe(socket: string, args: string[]): Promise<Serve> {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--socket', socket, ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const serve: Serve = {
    socket,
    proc,
    get log() {
      return log;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in 20 s:\n${log}`)), 20_000);
    proc.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('listening on')) {
        clearTimeout(timer);
        resolve(serve);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code}):\n${log}`));
    });
  });
}

export interface ClientResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a program with the interposer; stdin is /dev/null (a valid, non-VFIO fd 0). */
export function runClient(
  bin: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<ClientResult> {
  const t0 = performance.now();
  const p = spawn(bin, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  p.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    }),
  );
}

export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
