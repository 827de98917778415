/**
 * `vfio-nest serve`'s transport: a Unix socket server on the main thread, and the model on a worker
 * thread (model-worker.ts) so that the model can wait, synchronously, for a client's answer to a
 * callback while the main thread keeps reading sockets. One Host per server: clients share its
 * groups and device, as programs on one machine do.
 */

import { existsSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import type { HostOptions } from '../host/host.ts';
import type { FromWorker, ToWorker, WorkerData } from './model-worker.ts';
import { CB_REPLY, decodeFrame, FrameReader, MAX_FRAME } from './protocol.ts';

/** The model thread's wait word (ctrl[0]): waiting for an answer, answer ready, client gone. */
export const STATE_WAITING = 0;
export const STATE_ANSWERED = 1;
export const STATE_GONE = 2;

export interface ServeOptions {
  /** Path of the Unix socket. */
  socket: string;
  host: HostOptions;
  /** How long the model waits for a client's answer to a callback (default 10 s). */
  timeoutMs?: number;
  /** Receives one line per request answered, and the server's notices. */
  log?: (line: string) => void;
  /** Log every request (to `log`). */
  trace?: boolean;
}

export interface VfioNestServer {
  readonly socket: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Settles when the server stops: undefined after close(), else why it failed (the model thread died). */
  readonly stopped: Promise<string | undefined>;
  /** Stops listening, drops the clients, ends the model thread and removes the socket file. */
  close(): Promise<void>;
}

/** Refuses to take over a socket somebody still listens on; removes a stale one. */
async function claimSocketPath(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path}: another server is listening there`);
  unlinkSync(path);
}

/** The model worker, loaded through tsx's loader when the process runs under tsx. */
function startWorker(data: WorkerData): Worker {
  const entry = new URL('./model-worker.ts', import.meta.url).href;
  let api: string | undefined;
  try {
    api = import.meta.resolve('tsx/esm/api');
  } catch {
    api = undefined;
  }
  if (api === undefined) return new Worker(new URL(entry), { workerData: data });
  const boot = `const m = await import(${JSON.stringify(api)}); m.register(); await import(${JSON.stringify(entry)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData: data });
}

export async function startServer(options: ServeOptions): Promise<VfioNestServer> {
  const log = options.log ?? ((): void => {});
  const ctrlBuf = new SharedArrayBuffer(8);
  const answerBuf = new SharedArrayBuffer(MAX_FRAME);
  const ctrl = new Int32Array(ctrlBuf);
  const answer = new Uint8Array(answerBuf);
  const worker = startWorker({
    host: options.host,
    ctrl: ctrlBuf,
    answer: answerBuf,
    timeoutMs: options.timeoutMs ?? 10_000,
    trace: options.trace ?? false,
  });
  const toWorker = (m: ToWorker, transfer: ArrayBuffer[] = []): void => worker.postMessage(m, transfer);

  const conns = new Map<number, Socket>();
  /** The connection whose callback the model is waiting on, or -1. */
  let pending = -1;
  let nextConn = 1;
  let accepted = 0;
  let closing = false;

  const wake = (state: number): void => {
    Atomics.store(ctrl, 0, state);
    Atomics.notify(ctrl, 0);
    pending = -1;
  };

  await new Promise<void>((resolve, reject) => {
    const onMessage = (m: FromWorker): void => {
      if (m.t === 'ready') {
        worker.off('message', onMessage);
        worker.off('error', reject);
        resolve();
      } else if (m.t === 'error') reject(new Error(m.message));
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
  });

  worker.on('message', (m: FromWorker) => {
    if (m.t === 'send') {
      const sock = conns.get(m.conn);
      if (m.callback) {
        if (sock === undefined || sock.destroyed) {
          wake(STATE_GONE);
          return;
        }
        pending = m.conn;
      }
      sock?.write(m.frame);
    } else if (m.t === 'log') log(m.line);
  });
  try {
    await claimSocketPath(options.socket);
  } catch (e) {
    await worker.terminate();
    throw e;
  }
  const server: Server = createServer((sock) => {
    const conn = nextConn++;
    accepted++;
    conns.set(conn, sock);
    toWorker({ t: 'open', conn });
    const reader = new FrameReader();
    const drop = (why: string): void => {
      log(`connection ${conn}: ${why}`);
      sock.destroy();
    };
    sock.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      for (;;) {
        let frame: Uint8Array | undefined;
        try {
          frame = reader.next();
        } catch (e) {
          drop((e as Error).message);
          return;
        }
        if (frame === undefined) return;
        const f = decodeFrame(frame);
        if (f.type === CB_REPLY) {
          if (pending !== conn) {
            drop('answer to no callback');
            return;
          }
          answer.set(frame);
          Atomics.store(ctrl, 1, frame.byteLength);
          wake(STATE_ANSWERED);
        } else if (pending === conn) {
          drop('request while a callback is pending');
          return;
        } else {
          toWorker({ t: 'req', conn, frame }, [frame.buffer as ArrayBuffer]);
        }
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      conns.delete(conn);
      if (pending === conn) wake(STATE_GONE);
      toWorker({ t: 'close', conn });
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.socket, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await worker.terminate();
    throw e;
  }

  let stop: (why: string | undefined) => void = () => {};
  const stopped = new Promise<string | undefined>((resolve) => {
    stop = resolve;
  });
  let failure = '';
  worker.on('error', (e) => {
    failure = e.stack ?? e.message;
    log(`model thread failed: ${failure}`);
  });
  worker.on('exit', (code) => {
    for (const s of conns.values()) s.destroy();
    if (closing) return;
    closing = true;
    server.close();
    if (existsSync(options.socket)) unlinkSync(options.socket);
    stop(`the model thread exited (${code})${failure ? `: ${failure}` : ''}`);
  });

  return {
    socket: options.socket,
    get connections() {
      return accepted;
    },
    stopped,
    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      for (const s of conns.values()) s.destroy();
      if (pending !== -1) wake(STATE_GONE);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await worker.terminate();
      if (existsSync(options.socket)) unlinkSync(options.socket);
      stop(undefined);
    },
  };
}
