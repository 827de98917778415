/**
 * `vfio-nest serve`: the model behind a Unix socket, for real programs run with the interposer
 * (build/libvfio-nest-preload.so, native/preload.c). The server itself is src/server/.
 */

import { parseArgs } from 'node:util';
import { Host, HostConfigError } from '../host/host.ts';
import { startServer } from '../server/index.ts';
import { HOST_OPTION_HELP, HOST_OPTION_SPEC, hostConfigMessage, hostOptionsFrom } from './host-options.ts';
import { EXIT_FAILED, EXIT_OK, type Out, UsageError } from './style.ts';

export const SERVE_HELP = `Usage: vfio-nest serve [--socket PATH] [options]

Serves the model on a Unix socket. Programs run with the interposer talk to it instead of the
kernel: their open/ioctl/pread/pwrite/close on /dev/vfio/* go to the model, their memory is what
the model pins and what a device's DMA reads and writes. One host for all clients; each client is
one process of it. Stops on SIGINT or SIGTERM.

  --socket PATH   where to listen (default: $VFIO_NEST_SOCKET, else /tmp/vfio-nest-$UID.sock)
  --trace         print one line per request answered (to stderr)
  --timeout MS    how long to wait for a client's answer to a callback (default 10000)

${HOST_OPTION_HELP}

Examples:
  vfio-nest serve --socket /tmp/vn.sock --config 6.12-intel
  npm run build:preload
  VFIO_NEST_SOCKET=/tmp/vn.sock LD_PRELOAD=$PWD/build/libvfio-nest-preload.so ./my-vmm`;

export async function serveCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    strict: true,
    options: {
      ...HOST_OPTION_SPEC,
      socket: { type: 'string' },
      trace: { type: 'boolean' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out.write(`${SERVE_HELP}\n`);
    return EXIT_OK;
  }
  const opts = hostOptionsFrom(values);
  if (values.timeout !== undefined && !/^\d+$/.test(values.timeout))
    throw new UsageError(`--timeout: '${values.timeout}' is not a number of milliseconds`);
  try {
    // The host is built in the model's thread; build it here first so a bad one is a usage error.
    new Host(opts.host);
  } catch (e) {
    if (e instanceof HostConfigError) throw new UsageError(hostConfigMessage(e));
    throw e;
  }
  const uid = process.getuid?.() ?? 0;
  const socket = values.socket ?? process.env.VFIO_NEST_SOCKET ?? `/tmp/vfio-nest-${uid}.sock`;
  const log = (line: string): void => err.write(`${line}\n`);
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({
      socket,
      host: opts.host,
      timeoutMs: values.timeout === undefined ? undefined : Number(values.timeout),
      trace: values.trace ?? false,
      log,
    });
  } catch (e) {
    if (e instanceof HostConfigError) throw new UsageError(hostConfigMessage(e));
    throw new UsageError((e as Error).message);
  }
  const h = opts.host;
  const what = [
    `kernel ${h.kernel ?? '6.12'}`,
    `iommu ${h.iommu ?? 'intel'}`,
    ...Object.entries(h.params ?? {}).map(([k, v]) => `${k}=${v}`),
  ];
  log(`vfio-nest serve: listening on ${socket} (${what.join(', ')})`);
  const why = await Promise.race([
    server.stopped,
    new Promise<undefined>((resolve) => {
      process.once('SIGINT', () => resolve(undefined));
      process.once('SIGTERM', () => resolve(undefined));
    }),
  ]);
  await server.close();
  if (why !== undefined) {
    log(`vfio-nest serve: ${why}`);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}
