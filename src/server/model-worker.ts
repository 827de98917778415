/**
 * The model's thread: one Host, one Session per client connection. It runs each request to the end
 * synchronously; when the model needs the client's memory (or a new fd number) mid-call, it posts a
 * callback frame to the main thread and sleeps on a shared word (Atomics.wait) until the main
 * thread has put the client's answer in shared memory. The main thread (server.ts) does all I/O.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { Host, type HostOptions } from '../host/host.ts';
import { EIO } from '../uapi/errno.ts';
import type { ClientChannel } from './client-memory.ts';
import { decodeFrame, encodeReply, type Frame } from './protocol.ts';
import { STATE_ANSWERED, STATE_WAITING } from './server.ts';
import { Session } from './session.ts';

export interface WorkerData {
  host: HostOptions;
  /** Int32Array over it: [0] state (server.ts STATE_*), [1] answer length. */
  ctrl: SharedArrayBuffer;
  /** The answer frame. */
  answer: SharedArrayBuffer;
  timeoutMs: number;
  trace: boolean;
}

/** Main thread -> worker. */
export type ToWorker =
  | { t: 'open'; conn: number }
  | { t: 'req'; conn: number; frame: Uint8Array }
  | { t: 'close'; conn: number };

/** Worker -> main thread. */
export type FromWorker =
  | { t: 'ready' }
  | { t: 'error'; message: string }
  | { t: 'send'; conn: number; frame: Uint8Array; callback: boolean }
  | { t: 'log'; line: string };

const port = parentPort!;
const data = workerData as WorkerData;
const ctrl = new Int32Array(data.ctrl);
const answer = new Uint8Array(data.answer);
const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

let host: Host;
try {
  host = new Host(data.host);
} catch (e) {
  post({ t: 'error', message: e instanceof Error ? e.message : String(e) });
  throw e;
}

const sessions = new Map<number, { session: Session; gone: boolean }>();

function channelFor(conn: number): ClientChannel {
  return {
    call(frame: Uint8Array): Frame | undefined {
      const s = sessions.get(conn);
      if (s === undefined || s.gone) return undefined;
      Atomics.store(ctrl, 0, STATE_WAITING);
      post({ t: 'send', conn, frame, callback: true }, [frame.buffer as ArrayBuffer]);
      const r = Atomics.wait(ctrl, 0, STATE_WAITING, data.timeoutMs);
      if (r === 'timed-out' || Atomics.load(ctrl, 0) !== STATE_ANSWERED) {
        s.gone = true;
        if (r === 'timed-out')
          post({ t: 'log', line: `connection ${conn}: no answer in ${data.timeoutMs} ms` });
        return undefined;
      }
      return decodeFrame(answer.slice(0, Atomics.load(ctrl, 1)));
    },
  };
}

const trace = data.trace ? (line: string): void => post({ t: 'log', line }) : undefined;

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'open':
      sessions.set(m.conn, { session: new Session(host, channelFor(m.conn), trace), gone: false });
      break;
    case 'req': {
      const s = sessions.get(m.conn);
      if (s === undefined) break;
      let reply: Uint8Array;
      try {
        reply = s.session.handle(m.frame);
      } catch (e) {
        // A bug in the model: say so, answer EIO, keep serving the other clients.
        post({ t: 'log', line: `model error (pid ${s.session.pid}): ${(e as Error).stack ?? String(e)}` });
        reply = encodeReply(-EIO);
      }
      if (!s.gone)
        post({ t: 'send', conn: m.conn, frame: reply, callback: false }, [reply.buffer as ArrayBuffer]);
      break;
    }
    case 'close': {
      const s = sessions.get(m.conn);
      if (s === undefined) break;
      s.gone = true;
      s.session.close();
      sessions.delete(m.conn);
      break;
    }
  }
});

post({ t: 'ready' });
