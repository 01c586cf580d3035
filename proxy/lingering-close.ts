import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { lastOnConnection, onServerClose } from './internals/node-http.js';

// nginx's lingering close: after an answer that ends the connection (400, 413, 414, ...),
// nginx shuts its side and goes on reading, and dropping, what the client still sends,
// until the client closes, or sends nothing for lingering_timeout (5 s), or at most for
// lingering_time (30 s). Closing at once instead would reset the connection while the
// client is still sending its head or body, and a reset can destroy the answer before the
// client has read it.

export const LINGERING_TIMEOUT_MS = 5_000;
export const LINGERING_TIME_MS = 30_000;

const CLOSING = Symbol('closing');
const LINGERING = Symbol('lingering');
const UNREADABLE_BODY = Symbol('unreadable body');

interface Lingering {
  [CLOSING]?: true;
  [LINGERING]?: true;
  [UNREADABLE_BODY]?: () => void;
}

/** Marks `socket` as closing: nothing read on it from now on is answered. */
export function markClosing(socket: Duplex): void {
  (socket as Duplex & Lingering)[CLOSING] = true;
}

/** Whether `socket` is closing after an answer: nothing read on it from now on is answered. */
export function isClosing(socket: Duplex): boolean {
  return (socket as Duplex & Lingering)[CLOSING] === true;
}

/**
 * Shuts `socket` for writing once what was written leaves, and drops what it reads,
 * then closes it. If the HTTP server still reads it, its parser does the reading (a
 * body being read is dropped by Node, requests read after it are not answered).
 */
export function linger(socket: Duplex): void {
  const s = socket as Duplex & Lingering;
  markClosing(socket);
  if (s[LINGERING] === true || socket.destroyed) return;
  s[LINGERING] = true;
  socket.end();
  const timer = setTimeout(() => socket.destroy(), LINGERING_TIME_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  if ('setTimeout' in socket && typeof socket.setTimeout === 'function') {
    (socket as Duplex & { setTimeout(ms: number, cb: () => void): void }).setTimeout(LINGERING_TIMEOUT_MS, () =>
      socket.destroy(),
    );
  }
  // A socket no parser reads (an upgrade refused) is read here, and what comes is dropped.
  if (socket.listenerCount('data') === 0) socket.on('data', () => {});
  socket.resume();
}

/**
 * What the HTTP server does to end a connection after its last answer: on `socket`, it
 * lingers instead. Requests read from now on are not answered.
 */
export function lingerAfterAnswer(socket: Duplex): void {
  markClosing(socket);
  onServerClose(socket, () => linger(socket));
}

/**
 * Answers `req` with `res` as the connection's last answer, after which it lingers.
 * Marked on the request's socket: `res` has none yet while it waits behind the answers
 * to earlier pipelined requests, and the requests read behind it must go unanswered.
 */
export function lastAnswer(req: IncomingMessage, res: ServerResponse): void {
  lastOnConnection(res);
  lingerAfterAnswer(req.socket);
}

/**
 * Answers with `res` as the connection's last answer, but, as nginx does with a request
 * it refuses after reading its head, reads the body the request declares (Node drops it)
 * before closing: when it has come, or after LINGERING_TIMEOUT_MS without a byte of it.
 */
export function lastAnswerAfterBody(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  lastOnConnection(res);
  const s = socket as Duplex & Lingering;
  markClosing(socket);
  // A body that cannot be read (a bad chunk) ends the wait: nginx stops reading it too.
  let unreadable = false;
  s[UNREADABLE_BODY] = () => {
    unreadable = true;
  };
  onServerClose(socket, () => {
    if (req.complete || unreadable) {
      linger(socket);
      return;
    }
    s[UNREADABLE_BODY] = () => linger(socket);
    socket.setTimeout(LINGERING_TIMEOUT_MS, () => socket.destroy());
    req.once('end', () => linger(socket));
  });
}

/** The body being read after a connection's last answer turned out unreadable: closes without waiting for the rest. */
export function bodyUnreadable(socket: Duplex): void {
  (socket as Duplex & Lingering)[UNREADABLE_BODY]?.();
}

/**
 * Lingers on `socket` once `bytes` more have come (the rest of a body nginx reads and drops
 * before it closes), or after LINGERING_TIMEOUT_MS without a byte of them.
 */
export function lingerAfterBytes(socket: Duplex, bytes: number): void {
  markClosing(socket);
  if (bytes <= 0 || socket.destroyed) {
    linger(socket);
    return;
  }
  let left = bytes;
  const timeout = (): void => {
    socket.destroy();
  };
  const count = (chunk: Buffer): void => {
    left -= chunk.length;
    if (left > 0) return;
    socket.off('data', count);
    linger(socket);
  };
  socket.on('data', count);
  (socket as Duplex & { setTimeout(ms: number, cb: () => void): void }).setTimeout(LINGERING_TIMEOUT_MS, timeout);
  socket.resume();
}
