import type { Duplex } from 'node:stream';
import { rawErrorResponse } from './error-page.js';
import { LARGE_BUFFER } from './head-size.js';
import { requestBeingRead, responseBeingWritten } from './internals/node-http.js';
import { bodyUnreadable, isClosing, linger, lingerAfterBytes } from './lingering-close.js';
import { NGINX_UNIQUE_HEADERS } from './request-headers.js';
import type { ProxyCounters } from './stats.js';

// Requests Node's HTTP parser refuses (its 'clientError'), answered as nginx answers
// them. Node stops at the first byte it does not take, before our code sees the
// request; the error says why (err.code) and where (err.rawPacket, the bytes being read,
// and err.bytesParsed, how far it got in them). nginx's answer sometimes depends on more
// than the reason (the line too long is 414 if it is the request line, a bad version
// 505 or 400 by its digits), so the request's first line and head are read back from
// those bytes where they are all there, as they are when the head came in one read.

/**
 * What to do about a refused request: answer with a status (and first read and drop the
 * `bodyBytes` of the body the request declared that are still to come), close without
 * an answer, or leave it to the answer in flight.
 */
export type ErrorAnswer = { status: number; bodyBytes?: number } | 'close' | 'ignore';

const CLOSE = 'close';
const BAD_REQUEST = { status: 400 };

/**
 * Where the head being read starts in `packet`: after the last empty line before `at`, or null when it began in an
 * earlier read.
 */
function headStart(packet: Buffer, at: number, firstRead: boolean): number | null {
  for (let i = at - 1; i > 0; i--) {
    if (packet[i] === 0x0a && (packet[i - 1] === 0x0a || (packet[i - 1] === 0x0d && i >= 3 && packet[i - 2] === 0x0a)))
      return i + 1;
  }
  if (!firstRead) return null;
  // nginx, as Node, skips empty lines before a request line.
  let start = 0;
  while (start < at && (packet[start] === 0x0d || packet[start] === 0x0a)) start++;
  return start;
}

/** The request line from `start`: its length with the line end, or up to `at` if it has not ended there. */
function requestLine(packet: Buffer, start: number, at: number): { length: number; ended: boolean } {
  const lf = packet.indexOf(0x0a, start);
  const ended = lf >= 0 && lf < at;
  return { length: (ended ? lf + 1 : at) - start, ended };
}

/**
 * nginx's answer to the version of a request line (`HTTP/...`, to the end of the line):
 * 505 from a first major digit of 2 or more (or a major number above 1), 400 for anything
 * else it cannot read. (Node refuses HTTP/1.2 to HTTP/1.999, which nginx serves as
 * HTTP/1.1: none of nginx's answers fits those.)
 */
export function versionStatus(version: string): number {
  const m = /^HTTP\/([0-9]+)/.exec(version);
  if (m === null) return 400;
  const major = m[1] as string;
  if (major[0] === '0') return 400;
  return (major[0] as string) > '1' || major.length > 1 ? 505 : 400;
}

/** The last word of the line that `at` is in, up to the end of that line: where a request line has its version. */
function versionAt(packet: Buffer, at: number): string {
  let from = at;
  while (from > 0 && packet[from - 1] !== 0x20 && packet[from - 1] !== 0x0a) from--;
  let to = at;
  while (to < packet.length && packet[to] !== 0x0d && packet[to] !== 0x0a) to++;
  return packet.subarray(from, to).toString('latin1');
}

/**
 * nginx's answer to a head whose Transfer-Encoding Node refuses before passing the request
 * on (with a Content-Length, or a coding after "chunked"), in nginx's order: a header
 * repeated that it takes once, no Host in HTTP/1.1, a Content-Length that is no number
 * are 400; then, the Content-Length read, any Transfer-Encoding in HTTP/1.0 and "chunked"
 * alone with a Content-Length are 400, any other coding 501, and nginx reads the body
 * the Content-Length declares before it closes. `head` ends with its last header line;
 * `bodyIn`: how much of the body came with it.
 */
function transferEncodingAnswer(head: string, bodyIn: number): ErrorAnswer {
  const lines = head.split(/\r?\n/);
  const fields = (name: string): string[] =>
    lines
      .filter((l) => l.slice(0, name.length + 1).toLowerCase() === `${name}:`)
      .map((l) => l.slice(name.length + 1).trim());
  if (NGINX_UNIQUE_HEADERS.some((name) => fields(name).length > 1)) return BAD_REQUEST;
  const http11 = / HTTP\/1\.1$/.test(lines[0] ?? '');
  if (http11 && fields('host').length === 0) return BAD_REQUEST;
  const length = fields('content-length')[0];
  if (length !== undefined && !/^[0-9]+$/.test(length)) return BAD_REQUEST;
  const status =
    !http11 || (fields('transfer-encoding')[0]?.toLowerCase() === 'chunked' && length !== undefined) ? 400 : 501;
  const bodyBytes = length === undefined ? 0 : Number(length) - bodyIn;
  return bodyBytes > 0 ? { status, bodyBytes } : { status };
}

/**
 * The answer to a request Node refused with `code`, for a head (not a body: the request
 * is then already being answered). `firstRead`: `packet` is the first read of the connection.
 */
export function parseErrorAnswer(
  code: string | undefined,
  packet: Buffer | undefined,
  parsedAt: number,
  firstRead: boolean,
): ErrorAnswer {
  // nginx closes a connection that did not send its head in time, and says nothing.
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return CLOSE;
  // Bytes after a request that said "Connection: close": nginx answers that request,
  // closes, and never reads them.
  if (code === 'HPE_CLOSED_CONNECTION') return 'ignore';
  if (code === undefined || !code.startsWith('HPE_')) return CLOSE;
  if (packet === undefined) return BAD_REQUEST;
  const at = Math.min(Math.max(parsedAt, 0), packet.length);
  const start = headStart(packet, at, firstRead);
  const line = start === null ? null : requestLine(packet, start, at);
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      // Node counts the head as a whole, and stops past anything nginx takes: 414 if the
      // request line is too long, else a header is (400, "Request Header Or Cookie Too
      // Large"). Node stops at the end of the part it was reading: when the head began in
      // an earlier read, a version right there says it was the request line's target.
      if (line !== null) return !line.ended || line.length > LARGE_BUFFER ? { status: 414 } : BAD_REQUEST;
      return /^ +HTTP\//.test(packet.subarray(at, at + 16).toString('latin1')) ? { status: 414 } : BAD_REQUEST;
    case 'HPE_INVALID_VERSION':
      // Node stops in the version, at the end of the request line.
      if ((line === null && at > LARGE_BUFFER) || (line !== null && line.length > LARGE_BUFFER)) return { status: 414 };
      return { status: versionStatus(versionAt(packet, at)) };
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_INVALID_CONTENT_LENGTH': {
      // Node stops in the Transfer-Encoding or Content-Length it refuses, or at the end of
      // the head; nginx reads the head whole, then decides by the coding.
      const end = packet.indexOf('\r\n\r\n', Math.max(0, at - 4));
      const from = end < 0 ? null : headStart(packet, end + 2, firstRead);
      if (from === null) return code === 'HPE_INVALID_TRANSFER_ENCODING' ? { status: 501 } : BAD_REQUEST;
      const head = packet.subarray(from, end + 2).toString('latin1');
      return /\ntransfer-encoding:/i.test(head) ? transferEncodingAnswer(head, packet.length - end - 4) : BAD_REQUEST;
    }
    default:
      return BAD_REQUEST;
  }
}

/** A server connection's socket: a net.Socket, whose bytesRead says how much it has read. */
interface ServerSocket extends Duplex {
  bytesRead?: number;
}

const answered = new WeakSet<Duplex>();

/** Runs `then` once no response is being written on `socket` (nginx answers pipelined requests in order). */
function afterResponses(socket: ServerSocket, then: () => void): void {
  const res = responseBeingWritten(socket);
  if (res === null || socket.destroyed) {
    then();
    return;
  }
  const next = (): void => {
    res.off('finish', next);
    res.off('close', next);
    // Node hands the socket to the next response queued when this one finishes.
    setImmediate(() => afterResponses(socket, then));
  };
  res.on('finish', next);
  res.on('close', next);
}

/** Handles Node's 'clientError' for `socket`: answers as nginx would, after the responses already due. */
export function answerClientError(
  err: NodeJS.ErrnoException & { rawPacket?: Buffer; bytesParsed?: number },
  duplex: Duplex,
  stats: ProxyCounters,
): void {
  const socket = duplex as ServerSocket;
  // Node may report again on the same socket: the first report decides; and nothing is
  // answered on a connection closing after its last answer.
  if (answered.has(socket) || isClosing(socket)) {
    bodyUnreadable(socket);
    return;
  }
  answered.add(socket);
  const incoming = requestBeingRead(socket);
  if (incoming !== null && !incoming.complete) {
    // The body of a request already being answered (or a coding found wrong after its
    // head was read): nginx reads a body before it answers, so a body it cannot read is
    // 400 and no pod sees the request. Here the request is on its way: unless its answer
    // started, the client gets the 400; the pod sees its request cut.
    const res = responseBeingWritten(socket);
    if (res?.writableEnded === true) return;
    if (res !== null && res.headersSent) {
      socket.destroy();
      return;
    }
    stats.answered(400);
    socket.write(rawErrorResponse(400));
    linger(socket);
    return;
  }
  const firstRead = err.rawPacket !== undefined && socket.bytesRead === err.rawPacket.length;
  const answer = parseErrorAnswer(err.code, err.rawPacket, err.bytesParsed ?? 0, firstRead);
  if (answer === 'ignore') return;
  afterResponses(socket, () => {
    if (answer === CLOSE || !socket.writable) {
      socket.destroy();
      return;
    }
    stats.answered(answer.status);
    socket.write(rawErrorResponse(answer.status));
    lingerAfterBytes(socket, answer.bodyBytes ?? 0);
  });
}
