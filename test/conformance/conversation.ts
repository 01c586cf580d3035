import net from 'node:net';
import { readResponse } from './raw-http.js';

// One connection's worth of raw bytes and what came back: every response, in order, and
// whether the server closed the connection. The bytes go out as given, in parts with
// pauses between them when asked; the client then waits for as many responses as
// requests it sent, or for the close, and a little longer to see whether the server
// closes or says more. A server still waiting for bytes (fewer answers, connection
// open) is given STUCK_MS before the connection counts as left open.

export interface Answer {
  status: number;
  reason: string;
  headers: [string, string][];
  body: Buffer;
}

export interface Conversation {
  answers: Answer[];
  /** The server closed (or reset) the connection. */
  closed: boolean;
  /** Bytes after the last complete response (a cut or unreadable answer). */
  rest: string;
}

/** The client goes away: its connection is reset, whatever it was sending or reading. */
export const VANISH = Symbol('vanish');

/** A part: bytes to write, a pause in milliseconds, or the client vanishing. */
export type Part = string | Buffer | number | typeof VANISH;

export interface ConverseOptions {
  /** How many requests the bytes hold: the answers to wait for (1 when absent). */
  requests?: number;
  /** Indexes of the answers that answer HEAD (they have no body). */
  heads?: readonly number[];
  /** Quiet time after the last answer due, to see the server close or say more. */
  settleMs?: number;
}

const SETTLE_MS = 100;
const STUCK_MS = 2_000;
/** After an answer that says "Connection: close", how long the close may take to arrive. */
const CLOSE_WAIT_MS = 3_000;
const LIMIT_MS = 15_000;

export function converse(port: number, parts: readonly Part[], options: ConverseOptions = {}): Promise<Conversation> {
  const requests = options.requests ?? 1;
  const heads = new Set(options.heads ?? []);
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const answers: Answer[] = [];
    let sent = false;
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    const finish = (closed: boolean, reset = false): void => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(limit);
      if (reset) socket.resetAndDestroy();
      else socket.destroy();
      if (closed) {
        // A close ends a response that runs to the close.
        const last = readResponse(data, heads.has(answers.length), true);
        if (last !== null && last.used > 0) {
          answers.push(last);
          data = data.subarray(last.used);
        }
      }
      resolve({ answers, closed, rest: data.toString('latin1') });
    };
    const limit = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(
        new Error(
          `no end within ${LIMIT_MS} ms; answers ${answers.map((a) => a.status).join(',')}, ` +
            `rest ${JSON.stringify(data.toString('latin1').slice(0, 200))}`,
        ),
      );
    }, LIMIT_MS);
    const wait = (): void => {
      if (!sent || done) return;
      clearTimeout(quiet);
      const closing =
        answers.at(-1)?.headers.some(([k, v]) => k.toLowerCase() === 'connection' && /close/i.test(v)) === true;
      const ms = closing ? CLOSE_WAIT_MS : answers.length >= requests ? (options.settleMs ?? SETTLE_MS) : STUCK_MS;
      quiet = setTimeout(() => finish(false), ms);
    };
    socket.on('connect', () => {
      void (async () => {
        for (const part of parts) {
          if (done || socket.destroyed) return;
          if (part === VANISH) {
            // What the server said before is kept; the server did not close.
            finish(false, true);
            return;
          }
          if (typeof part === 'number') await new Promise((r) => setTimeout(r, part));
          else socket.write(typeof part === 'string' ? Buffer.from(part, 'latin1') : part);
        }
        sent = true;
        wait();
      })();
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        const next = readResponse(data, heads.has(answers.length), false);
        if (next === null) break;
        answers.push(next);
        data = data.subarray(next.used);
      }
      wait();
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    // A reset is a close too.
    socket.on('error', () => finish(true));
  });
}
