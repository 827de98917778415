/** The command line run in this process, its stdout and stderr captured (for the CLI and scenario tests). */

import { main } from '../../src/cli/main.ts';

/** A writer that keeps what it is given. */
export function capture() {
  const chunks: string[] = [];
  return {
    write(s: string): void {
      chunks.push(s);
    },
    get text(): string {
      return chunks.join('');
    },
  };
}

/** `vfio-nest ...argv`: its exit status and what it wrote. */
export async function runCli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = capture();
  const err = capture();
  const code = await main(argv, out, err);
  return { code, out: out.text, err: err.text };
}
