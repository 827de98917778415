/**
 * Terminal conventions (clig.dev): colour only on a TTY, never with NO_COLOR, FORCE_COLOR honoured;
 * data on stdout, messages on stderr; exit 0 success, 1 an expectation failed, 2 bad input.
 */

import { styleText } from 'node:util';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface Out {
  write(text: string): void;
  isTTY?: boolean;
}

type Style = Parameters<typeof styleText>[0];

export function useColor(stream: Out): boolean {
  const env = process.env;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

/** A painter that styles only when `stream` wants colour. */
export function painter(stream: Out): (style: Style, text: string) => string {
  const on = useColor(stream);
  return (style, text) => (on ? styleText(style, text, { validateStream: false }) : text);
}

/** An error for the user: printed as `vfio-nest <cmd>: message` with exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
